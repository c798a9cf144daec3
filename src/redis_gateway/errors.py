"""The one error model. Every front door maps these kinds to its own wire shape.

A Redis error reply (``-ERR ...``) is not an exception here: it is a value
(``hiredis.ReplyError``) that travels with the other replies, because inside a
pipeline it is one item among many. The exceptions below are what the gateway
itself refuses or fails at.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base class. ``kind`` names the error for every front door; ``status`` is its HTTP code."""

    kind = "InternalError"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(GatewayError):
    """The request is malformed: bad JSON, wrong shape, unknown command, wrong endpoint."""

    kind = "BadRequest"
    status = 400


class Unauthorized(GatewayError):
    """No token, an unknown token, or an expired or revoked one."""

    kind = "Unauthorized"
    status = 401


class Forbidden(GatewayError):
    """The token's rules do not allow this command or these keys."""

    kind = "Forbidden"
    status = 403


class NotFound(GatewayError):
    kind = "NotFound"
    status = 404


class MethodNotAllowed(GatewayError):
    kind = "MethodNotAllowed"
    status = 405


class LimitExceeded(GatewayError):
    """A configured limit was passed: body size, commands per batch, reply size."""

    kind = "LimitExceeded"
    status = 413


class RequestTimeout(GatewayError):
    """The client did not send the whole request in time; it was not run."""

    kind = "RequestTimeout"
    status = 408


class ReplyTooLarge(LimitExceeded):
    """A reply past ``max_reply_bytes``; ``seen``: the bytes Redis made for it (and the
    gateway read and dropped), which a token's reply budget is charged."""

    def __init__(self, seen: int, message: str) -> None:
        super().__init__(message)
        self.seen = seen


class TooManyRequests(GatewayError):
    """A token passed its own share: requests in flight, request rate, reserved connections.

    ``retry_after`` (seconds) is sent as ``Retry-After``.
    """

    kind = "TooManyRequests"
    status = 429

    def __init__(self, message: str, retry_after: float = 1.0,
                 reason: str = "concurrency") -> None:
        super().__init__(message)
        self.retry_after = retry_after
        # Which limit: concurrency, rate, reply_rate, body_rate, redis_time,
        # reserved, bodies_held (a metric label).
        self.reason = reason


class RedisUnavailable(GatewayError):
    """Redis cannot be reached, or no connection is free; the request was not run."""

    kind = "RedisUnavailable"
    status = 503


class CommandTimeout(GatewayError):
    """Redis did not answer in time; the command may or may not have run."""

    kind = "Timeout"
    status = 504


class RedisCommandError(GatewayError):
    """A single command's Redis error reply, raised where one reply is expected (status 400)."""

    kind = "RedisError"
    status = 400
