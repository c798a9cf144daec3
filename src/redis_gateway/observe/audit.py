"""The audit trail: who ran which command that writes or administers, on which keys.

An entry holds the token's name, the time, the request id, the backend, the command's
name (from the command table), its key names (from the server's key specs; never an
argument that is not a key) and its outcome ("ok" or the error's class: "ERR",
"NOPERM", "CommandTimeout", ...). Never a value.

Entries leave the request's path at once: they queue (bounded) and a background task
writes them in batches, to a Redis Stream under the gateway's reserved prefix
(``XADD redis-gateway:audit MAXLEN ~ N``, tokens cannot touch it) or to a JSONL file.
When the queue is full or the store fails, entries are dropped, counted in
``redis_gateway_audit_entries_total{outcome="dropped"}`` and logged once.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import logging
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from ..auth import RESERVED_PREFIX
from ..backends import Backend
from ..commands import CommandInfo
from ..errors import GatewayError
from ..resp import ReplyError
from . import metrics

log = logging.getLogger("redis_gateway.audit")

AUDIT_KEY = RESERVED_PREFIX + b"audit"
_AUDITED_FLAGS = frozenset({"write", "admin"})
_AUDITED_CATEGORIES = frozenset({"dangerous", "scripting", "admin", "write"})


def audited(info: CommandInfo) -> bool:
    """Commands that write or administer, by the server's own flags and categories."""
    return bool(info.flags & _AUDITED_FLAGS or info.categories & _AUDITED_CATEGORIES)


def key_names(info: CommandInfo, argv: Sequence[bytes]) -> list[str] | None:
    """The key names in ``argv`` by the command's key specs; None when only the server
    could say (``SORT ... STORE``, ``MIGRATE``): asking it would cost a round trip."""
    if info.keys_need_server:
        return None
    return [k.decode("utf-8", "backslashreplace") for k, _ in info.keys(argv)]


def outcome(reply: Any) -> str:
    """"ok", or the class of the error: an error reply's first word, a gateway error's kind."""
    if isinstance(reply, ReplyError):
        return str(reply).split(" ", 1)[0] or "ERR"
    if isinstance(reply, GatewayError):
        return reply.kind
    if isinstance(reply, BaseException):
        return type(reply).__name__
    return "ok"


@dataclass(frozen=True)
class AuditEntry:
    time: float  # seconds since the epoch
    request_id: str
    token: str
    backend: str
    command: str
    keys: list[str] | None
    outcome: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), ensure_ascii=False)

    def stream_fields(self) -> list[bytes]:
        return [b"time", b"%.6f" % self.time, b"request_id", self.request_id.encode(),
                b"token", self.token.encode(), b"backend", self.backend.encode(),
                b"command", self.command.encode(),
                b"keys", json.dumps(self.keys, ensure_ascii=False).encode(),
                b"outcome", self.outcome.encode()]

    @classmethod
    def from_stream(cls, fields: Sequence[bytes]) -> AuditEntry:
        data = {k.decode(): v.decode("utf-8", "replace")
                for k, v in zip(fields[::2], fields[1::2], strict=True)}
        return cls(float(data["time"]), data["request_id"], data["token"], data["backend"],
                   data["command"], json.loads(data["keys"]), data["outcome"])

    @classmethod
    def from_json(cls, line: str) -> AuditEntry:
        return cls(**json.loads(line))

    def matches(self, token: str | None = None, key: str | None = None,
                since: float | None = None) -> bool:
        """``key`` is a glob pattern, as in Redis's KEYS."""
        if since is not None and self.time < since:
            return False
        if token is not None and self.token != token:
            return False
        return key is None or any(fnmatch.fnmatchcase(k, key) for k in self.keys or ())


class AuditStore(Protocol):
    async def write(self, entries: Sequence[AuditEntry]) -> None: ...
    def close(self) -> None: ...


class RedisAuditStore:
    """A capped Redis Stream in the default backend, written as the gateway's own user."""

    def __init__(self, backend: Backend, max_entries: int) -> None:
        self._backend = backend
        self._cap = b"%d" % max_entries

    async def write(self, entries: Sequence[AuditEntry]) -> None:
        replies = await self._backend.run(
            [[b"XADD", AUDIT_KEY, b"MAXLEN", b"~", self._cap, b"*", *e.stream_fields()]
             for e in entries])
        failed = [r for r in replies if isinstance(r, ReplyError)]
        if failed:
            raise GatewayError(f"Redis refused {len(failed)} audit entries: {failed[0]}")

    def close(self) -> None:
        pass


class FileAuditStore:
    """One JSON object a line, appended; rotate it with logrotate's copytruncate."""

    def __init__(self, path: str) -> None:
        self._path = Path(path)
        self._file: IO[str] | None = None

    async def write(self, entries: Sequence[AuditEntry]) -> None:
        if self._file is None:
            self._file = self._path.open("a", encoding="utf-8")
        # A few hundred bytes a line, flushed per batch: short enough to do in the loop.
        self._file.write("".join(e.to_json() + "\n" for e in entries))
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class AuditWriter:
    """Entries queued by requests, written by one background task in batches."""

    BATCH = 256

    def __init__(self, store: AuditStore, queue_size: int) -> None:
        self._store = store
        self._queue: deque[AuditEntry] = deque()
        self._queue_size = queue_size
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._warned = False

    def add(self, entry: AuditEntry) -> None:
        if len(self._queue) >= self._queue_size:
            self._dropped(1, f"the audit queue is full ({self._queue_size} entries: "
                             "audit_queue); entries are dropped")
            return
        self._queue.append(entry)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        self._wake.set()

    def _dropped(self, count: int, why: str) -> None:
        metrics.sink.audit("dropped", count)
        if not self._warned:  # once: a flood of the same line helps nobody
            self._warned = True
            log.error("%s (counted in redis_gateway_audit_entries_total{outcome=\"dropped\"}; "
                      "logged once)", why)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        while self._queue:
            batch = [self._queue.popleft() for _ in range(min(self.BATCH, len(self._queue)))]
            try:
                await self._store.write(batch)
            except (GatewayError, OSError) as exc:
                message = exc.message if isinstance(exc, GatewayError) else str(exc)
                self._dropped(len(batch), f"audit entries could not be written: {message}")
            else:
                metrics.sink.audit("written", len(batch))

    async def close(self) -> None:
        """Write what is queued, then stop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()
        self._store.close()


# reading (the `redis-gateway audit` command) -------------------------------------------
async def read_stream(backend: Backend, since: float | None, count: int = 1000
                      ) -> list[AuditEntry]:
    """Entries from ``since`` (seconds since the epoch) on, oldest first, by pages."""
    start = b"%d-0" % int(since * 1000) if since is not None else b"-"
    found: list[AuditEntry] = []
    while True:
        (page,) = await backend.run([[b"XRANGE", AUDIT_KEY, start, b"+", b"COUNT",
                                      b"%d" % count]])
        if isinstance(page, ReplyError):
            raise GatewayError(f"reading the audit stream failed: {page}")
        found += [AuditEntry.from_stream(fields) for _, fields in page]
        if len(page) < count:
            return found
        start = b"(" + page[-1][0]


def read_file(path: str) -> Iterator[AuditEntry]:
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                yield AuditEntry.from_json(line)


def select(entries: Iterable[AuditEntry], token: str | None, key: str | None,
           since: float | None) -> Iterator[AuditEntry]:
    return (e for e in entries if e.matches(token, key, since))
