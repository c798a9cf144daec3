// The SDK's Redis class, as the tests import it from the SDK's source tree: here the
// published package's (a requester passed to it is used as the HTTP client).
export { Redis } from "@upstash/redis";
