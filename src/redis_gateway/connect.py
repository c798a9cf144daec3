"""Where and how to reach one Redis server, and opening a connection to it.

An ``Address`` is parsed from a backend's URL (``redis://``, ``rediss://``, ``unix://``);
``open_connection`` connects, speaks TLS if asked, authenticates, selects the database
and checks that the server answers, all within one timeout, then hands back a
``connection.Connection`` ready to share.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import unquote, urlsplit

import hiredis

from .connection import Connection
from .errors import RedisUnavailable

ProtocolT = TypeVar("ProtocolT", bound=asyncio.Protocol)


@dataclass(frozen=True)
class Address:
    """Where and how to reach one Redis server, parsed from its URL."""

    host: str = "127.0.0.1"
    port: int = 6379
    unix_path: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @classmethod
    def parse(cls, url: str) -> Address:
        parts = urlsplit(url)
        query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        if parts.scheme == "unix":
            return cls(
                unix_path=parts.path, db=int(query.get("db", 0)), username=username,
                password=password,
            )
        path = parts.path.strip("/")
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 6379,
            db=int(path) if path else int(query.get("db", 0)),
            username=username,
            password=password,
            tls=parts.scheme == "rediss",
        )

    def display(self) -> str:
        """The address without its secret, safe for logs."""
        where = self.unix_path or f"{self.host}:{self.port}"
        user = f"{self.username}:***@" if self.username else ("***@" if self.password else "")
        scheme = "unix" if self.unix_path else ("rediss" if self.tls else "redis")
        return f"{scheme}://{user}{where}/{self.db}"


@dataclass(frozen=True)
class TlsFiles:
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    check_hostname: bool = True

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file)
        context.check_hostname = self.check_hostname
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context


async def open_connection(
    address: Address,
    *,
    tls: TlsFiles,
    timeout: float,
    typed: bool = False,
    resp3: bool = False,
    reply_limit: int | None = None,
) -> Connection:
    """Connect, authenticate and select the database, all within ``timeout`` seconds.

    ``reply_limit`` is the byte budget of each batch's replies unless ``send`` is given
    one (``limits.max_reply_bytes``); None leaves replies unbounded.
    """
    label = address.display()
    try:
        async with asyncio.timeout(timeout):
            conn = await connect_protocol(
                address, tls, lambda: Connection(label, typed=typed, reply_limit=reply_limit))
            await _handshake(conn, address, timeout, resp3)
    except TimeoutError:
        raise RedisUnavailable(
            f"cannot reach Redis at {label}: no answer within {timeout:g} s"
        ) from None
    except (OSError, ssl.SSLError) as exc:
        raise RedisUnavailable(f"cannot reach Redis at {label}: {exc}") from None
    return conn


async def connect_protocol(address: Address, tls: TlsFiles,
                           factory: Callable[[], ProtocolT]) -> ProtocolT:
    """The protocol ``factory`` makes, connected to ``address`` (over TLS when it says
    so); the caller bounds the time and says what a failure means."""
    loop = asyncio.get_running_loop()
    if address.unix_path:
        _, conn = await loop.create_unix_connection(factory, address.unix_path)
    else:
        _, conn = await loop.create_connection(
            factory, address.host, address.port,
            ssl=tls.context() if address.tls else None,
            server_hostname=address.host if address.tls else None)
    return conn


async def _handshake(conn: Connection, address: Address, timeout: float, resp3: bool) -> None:
    commands: list[Sequence[bytes | str | int]] = []
    if resp3:
        hello: list[bytes | str | int] = ["HELLO", 3]
        if address.password is not None:
            hello += ["AUTH", address.username or "default", address.password]
        commands.append(hello)
    elif address.password is not None:
        commands.append(
            ["AUTH", address.username, address.password] if address.username
            else ["AUTH", address.password]
        )
    if address.db:
        commands.append(["SELECT", address.db])
    # A round trip even when there is nothing to set up: a server that accepts the TCP
    # connection but is stuck (SIGSTOP, overloaded) must fail the connect, not the
    # requests queued on it later.
    commands.append(["PING"])
    payload = b"".join(hiredis.pack_command(tuple(c)) for c in commands)  # type: ignore[arg-type]
    try:
        replies = await conn.send(payload, len(commands), timeout)
    except RedisUnavailable:  # e.g. TLS refused after the handshake: no command ran
        raise RedisUnavailable(
            f"cannot reach Redis at {address.display()}: {conn.lost_reason}"
        ) from None
    *setup, ping = replies
    # A server running a long script answers BUSY to PING: it is reachable, and SCRIPT KILL
    # is what one may need to send it.
    if isinstance(ping, hiredis.ReplyError) and str(ping).startswith("BUSY "):
        ping = b"PONG"
    for reply in [*setup, ping]:
        if isinstance(reply, hiredis.ReplyError):
            conn.close()
            raise RedisUnavailable(f"Redis at {address.display()} refused the gateway: {reply}")
