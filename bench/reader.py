"""The pure-Python RESP readers (``resp.TypedReader``, ``resp.Framer``) against hiredis.

Feeds the same replies, cut into socket-sized chunks, to each reader in one run and
prints milliseconds per reply and the ratio to hiredis. No server is involved: this
measures parsing only.

    .venv/bin/python bench/reader.py [--elements 300000] [--chunk 65536] [--repeat 5]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import hiredis

from redis_gateway.resp import NOT_ENOUGH_DATA
from redis_gateway.resp_reader import Framer, TypedReader


def bulk_array(n: int) -> bytes:
    """SRANDMEMBER/LRANGE-like: one array of ``n`` short bulk strings."""
    items = [b"member:%d" % i for i in range(n)]
    return b"*%d\r\n" % n + b"".join(b"$%d\r\n%s\r\n" % (len(v), v) for v in items)


def stream_entries(n: int) -> bytes:
    """XRANGE-like: ``n // 5`` entries of [id, [field, value, field, value]] (n values)."""
    entries = n // 5
    one = [b"*2\r\n$15\r\n1700000000000-%d\r\n*4\r\n$1\r\na\r\n$3\r\none\r\n$1\r\nb\r\n:2\r\n"
           % (i % 10) for i in range(entries)]
    return b"*%d\r\n" % entries + b"".join(one)


def huge_bulk(n: int) -> bytes:
    """One bulk string of ``n * 40`` bytes (a large GET)."""
    size = n * 40
    return b"$%d\r\n" % size + b"x" * size + b"\r\n"


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def read_all(make: Callable[[], Any], pieces: list[bytes]) -> float:
    reader = make()
    started = time.perf_counter()
    for piece in pieces:
        reader.feed(piece)
        reply = reader.gets()
    elapsed = time.perf_counter() - started
    assert reply is not NOT_ENOUGH_DATA and reply is not False, "the reply did not complete"
    return elapsed


READERS: dict[str, Callable[[], Any]] = {
    "hiredis": lambda: hiredis.Reader(notEnoughData=NOT_ENOUGH_DATA),
    "TypedReader": TypedReader,
    "Framer": Framer,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--elements", type=int, default=300_000)
    parser.add_argument("--chunk", type=int, default=65536, help="bytes per feed()")
    parser.add_argument("--repeat", type=int, default=5, help="best of N")
    args = parser.parse_args()
    shapes = {"array of bulk strings": bulk_array, "stream entries (nested)": stream_entries,
              "one large bulk string": huge_bulk}
    print(f"{args.elements} elements, {args.chunk}-byte chunks, best of {args.repeat}")
    print(f"{'reply':<26} {'bytes':>11} " + " ".join(f"{n:>20}" for n in READERS))
    for label, shape in shapes.items():
        data = shape(args.elements)
        pieces = chunks(data, args.chunk)
        best = {name: min(read_all(make, pieces) for _ in range(args.repeat))
                for name, make in READERS.items()}
        base = best["hiredis"]
        cells = [f"{best[n] * 1e3:8.1f} ms ({best[n] / base:4.1f}x)" for n in READERS]
        print(f"{label:<26} {len(data):>11,} " + " ".join(f"{c:>20}" for c in cells))


if __name__ == "__main__":
    main()
