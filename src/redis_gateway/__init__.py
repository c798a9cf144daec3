"""redis-gateway: a front door for Redis over HTTP, with scoped tokens."""

__version__ = "0.1.0"
