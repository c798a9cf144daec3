"""A browser's EventSource on a Redis Stream (GET /streams/<key>), in headless Chromium:
after a forced disconnect (the gateway killed, not drained) it reconnects with
Last-Event-ID and receives every entry exactly once, in order, those added while it was
away included.
"""

from __future__ import annotations

import importlib.util
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support import GatewayProcess, RedisServer, redis_command

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

try:
    from playwright.sync_api import Page, sync_playwright
except ImportError:  # pragma: no cover - the test extra installs it
    sync_playwright = None  # type: ignore[assignment]

pytestmark = [
    pytest.mark.skipif(sync_playwright is None or not Path(CHROMIUM).exists(),
                       reason="needs the playwright package and Debian's chromium"),
    pytest.mark.skipif(importlib.util.find_spec("redis_gateway.streams.redis_streams") is None,
                       reason="GET /streams/<key> (streams/redis_streams.py) is not merged yet"),
]


@pytest.fixture
def page() -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page()
        finally:
            browser.close()


def received(page: Page) -> list[list[str]]:
    got: list[list[str]] = page.evaluate("window.got")
    return got


def wait_for(page: Page, condition: Any, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}; received {received(page)}"
        page.wait_for_timeout(50)


def xadd(redis: RedisServer, key: str, n: int) -> str:
    reply = redis_command(redis.port, "XADD", key, "*", "n", str(n))
    assert isinstance(reply, bytes), reply
    return reply.decode()


def test_eventsource_resumes_with_last_event_id_after_a_forced_disconnect(
        page: Page) -> None:
    redis = RedisServer().start()
    gw = GatewayProcess(redis.url, rules={"reader": "read-only"},
                        config_extra="[streams]\nkeepalive_seconds = 0.5\n")
    try:
        gw.start()
        key = f"es:{uuid.uuid4().hex[:8]}"
        ids = [xadd(redis, key, n) for n in range(3)]  # before the browser connects
        # Same origin as the stream, as a page served by the gateway would be.
        page.goto(gw.url + "/healthz")
        page.evaluate("""([key, token]) => {
            window.got = []; window.errors = 0; window.opened = 0;
            const source = new EventSource(`/streams/${encodeURIComponent(key)}` +
                                           `?last_id=0&_token=${token}`);
            source.onopen = () => { window.opened += 1; };
            source.onerror = () => { window.errors += 1; };
            source.onmessage = (event) => window.got.push([event.lastEventId, event.data]);
            window.source = source;
        }""", [key, gw.tokens["reader"]])
        wait_for(page, lambda: len(received(page)) == 3, "the first entries")
        ids.append(xadd(redis, key, 3))
        wait_for(page, lambda: len(received(page)) == 4, "a live entry")

        # Forced disconnect: the gateway dies without a word (no drain, no final event).
        assert gw.process is not None
        gw.process.kill()
        gw.process.wait()
        wait_for(page, lambda: page.evaluate("window.errors") >= 1, "the lost connection")
        ids += [xadd(redis, key, n) for n in range(4, 8)]  # while the browser is away
        gw.start()  # same port, same tokens: EventSource reconnects by itself
        ids.append(xadd(redis, key, 8))
        wait_for(page, lambda: len(received(page)) >= 9, "the entries after reconnecting")
        page.wait_for_timeout(300)  # nothing more, no duplicates trailing in
        got = received(page)
        assert [event_id for event_id, _ in got] == ids  # no gap, no repeat, in order
        assert [data for _, data in got] == [f'["n","{n}"]' for n in range(9)]
        assert page.evaluate("window.opened") >= 2
        page.evaluate("window.source.close()")
    finally:
        gw.stop()
        redis.close()
