"""The GraphQL front door: one schema file, resolvers shared with the Lambda handler."""
