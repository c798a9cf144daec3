"""Instructions per single GET through the built-in server's request/response path, counted
with valgrind (callgrind), in-process against a private redis-server.

Used to check that a change (the streaming and WebSocket hooks, for one) does not slow the
request/response path: run it on both versions and compare. The count is the difference
between a run with N requests and one with none (same start-up and warm-up), divided by
N, so Python's start-up cancels out. Valgrind runs the gateway ~50x slower; keep N small.

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python bench/get_instructions.py 0      # and then with 500
    (or: .venv/bin/python bench/get_instructions.py --compare [--base <git rev>])
"""

from __future__ import annotations

import asyncio
import gc
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

GET = b"GET /get/bench-key HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer bench-token\r\n\r\n"


class Transport:
    """What HttpConnection needs of a transport; responses are counted, not sent."""

    def __init__(self) -> None:
        self.responses = 0
        self.waiter: asyncio.Future[None] | None = None

    def write(self, data: bytes) -> None:
        self.responses += 1
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


async def run(count: int) -> None:
    from redis_gateway import settings as settings_mod
    from redis_gateway.app import Gateway
    from redis_gateway.auth import TokenRecord, hash_token
    from redis_gateway.server import HttpConnection, ServerState

    from support import RedisServer

    server = RedisServer().start()
    try:
        settings = settings_mod.load(env={}, overrides={"redis": server.url})
        gateway = Gateway(settings, extra_tokens=[
            TokenRecord("bench", hash_token("bench-token"), "read-write")])
        await gateway.warm_up()
        conn = HttpConnection(ServerState(gateway, settings.limits))
        transport = Transport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        loop = asyncio.get_running_loop()
        for i in range(200 + count):  # warm-up, then the counted ones
            if i == 200:  # the same state for both runs, and no collection in between
                gc.collect()
                gc.disable()
            transport.waiter = loop.create_future()
            conn.data_received(GET)
            await transport.waiter
        gc.enable()
        await gateway.close()
    finally:
        server.close()


def instructions(count: int, source: Path) -> int:
    with tempfile.NamedTemporaryFile(suffix=".out") as out:
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out.name}",
                        sys.executable, __file__, str(count)], check=True,
                       capture_output=True, env={"PYTHONPATH": str(source / "src"),
                                                 "PYTHONHASHSEED": "0", "PATH": "/usr/bin:/bin"})
        text = Path(out.name).read_text(errors="replace")
    match = re.search(r"^summary: (\d+)", text, re.M) or re.search(r"^totals: (\d+)", text, re.M)
    assert match, "no callgrind summary"
    return int(match.group(1))


def compare(base: str, count: int = 500) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(f"git -C {ROOT} archive {base} src | tar -x -C {tmp}", shell=True,
                       check=True)
        for label, source in ((base, Path(tmp)), ("working tree", ROOT)):
            per = (instructions(count, source) - instructions(0, source)) / count
            print(f"{label}: {per / 1000:.1f}k instructions per single GET")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--compare"]:
        compare(sys.argv[3] if sys.argv[2:3] == ["--base"] else "HEAD")
    else:
        asyncio.run(run(int(sys.argv[1])))
