"""The pure-Python RESP readers (resp.TypedReader, resp.Framer) and encode_resp2.

Values are generated with their wire bytes (RESP2 and RESP3, nested), fed in random
chunks down to one byte at a time, and compared with what they were made from; hiredis
is the oracle for RESP2.
"""

from __future__ import annotations

import itertools
import tracemalloc
from typing import Any

import hiredis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from redis_gateway.resp import (
    MAX_DEPTH,
    NOT_ENOUGH_DATA,
    NULL_ARRAY,
    BigNumber,
    Double,
    Dropped,
    Map,
    ProtocolError,
    Push,
    ReplyError,
    Set,
    Status,
    Verbatim,
    encode_resp2,
)
from redis_gateway.resp_reader import Framer, TypedReader

Wire = tuple[bytes, Any]  # a reply's bytes and the value a reader must build from them

_line_text = st.binary(max_size=30).filter(lambda b: b"\r" not in b and b"\n" not in b)


def _bulk(data: bytes) -> Wire:
    return b"$%d\r\n%s\r\n" % (len(data), data), data


RESP2_SCALARS = st.one_of(
    st.binary(max_size=40).map(_bulk),  # CRLF inside included: the run reader must cope
    _line_text.map(lambda t: (b"+" + t + b"\r\n", Status(t))),
    # Error text as Redis writes it, UTF-8 (both readers replace bytes that are not).
    st.text(max_size=20).filter(lambda t: "\r" not in t and "\n" not in t).map(
        lambda t: (b"-" + t.encode() + b"\r\n", ReplyError(t))),
    st.integers(-(2**63), 2**63 - 1).map(lambda n: (b":%d\r\n" % n, n)),
    st.just((b"$-1\r\n", None)),
    st.just((b"*-1\r\n", NULL_ARRAY)),
)
RESP3_SCALARS = st.one_of(
    RESP2_SCALARS,
    st.just((b"_\r\n", None)),
    st.sampled_from([b"3.14", b"-0", b"inf", b"-inf", b"nan", b"1e+300"]).map(
        lambda t: (b"," + t + b"\r\n", Double(t))),
    st.booleans().map(lambda v: (b"#t\r\n" if v else b"#f\r\n", v)),
    st.integers(-(10**40), 10**40).map(lambda n: (b"(%d\r\n" % n, BigNumber(b"%d" % n))),
    st.tuples(st.sampled_from(["txt", "mkd"]), st.binary(max_size=20)).map(
        lambda fv: (b"=%d\r\n%s:%s\r\n" % (len(fv[1]) + 4, fv[0].encode(), fv[1]),
                    Verbatim(fv[1], fv[0]))),
    st.text(max_size=20).map(lambda e: e.encode()).map(
        lambda e: (b"!%d\r\n%s\r\n" % (len(e), e), ReplyError(e.decode()))),
)


def _array(items: list[Wire]) -> Wire:
    return b"*%d\r\n" % len(items) + b"".join(w for w, _ in items), [v for _, v in items]


def _resp3_aggregate(kind: str, items: list[Wire]) -> Wire:
    body = b"".join(w for w, _ in items)
    values = [v for _, v in items]
    if kind == "map":
        pairs = items[: len(items) // 2 * 2]
        return (b"%%%d\r\n" % (len(pairs) // 2) + b"".join(w for w, _ in pairs),
                Map(zip([v for _, v in pairs][::2], [v for _, v in pairs][1::2], strict=True)))
    if kind == "set":
        return b"~%d\r\n" % len(items) + body, Set(values)
    if kind == "push":
        return b">%d\r\n" % len(items) + body, Push(values)
    # an attribute (a map the reader reads and leaves out) before the last item
    if not items:
        return b"*0\r\n", []
    *head, (last_wire, last_value) = items
    attribute = b"|1\r\n+key\r\n:1\r\n"
    return (b"*%d\r\n" % len(items) + b"".join(w for w, _ in head) + attribute + last_wire,
            [*[v for _, v in head], last_value])


RESP2_VALUES = st.recursive(RESP2_SCALARS,
                            lambda inner: st.lists(inner, max_size=24).map(_array),
                            max_leaves=60)
RESP3_VALUES = st.recursive(
    RESP3_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=24).map(_array),
        st.tuples(st.sampled_from(["map", "set", "push", "attribute"]),
                  st.lists(inner, max_size=8)).map(lambda ki: _resp3_aggregate(*ki)),
    ),
    max_leaves=60,
)


def norm(value: Any) -> Any:
    """A comparable form that keeps every type apart (ReplyError has no ==)."""
    if isinstance(value, ReplyError):
        return ("error", str(value))
    if isinstance(value, Verbatim):
        return ("verbatim", value.format, bytes(value))
    if isinstance(value, Map):
        return ("map", [(norm(k), norm(v)) for k, v in value])
    if isinstance(value, list):
        return (type(value).__name__, [norm(v) for v in value])
    return (type(value).__name__, value)


def plain(value: Any) -> Any:
    """What hiredis makes of a RESP2 value: no status, no null array."""
    if isinstance(value, ReplyError):
        return ("error", str(value))
    if value is NULL_ARRAY:
        return None
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, bytes):
        return bytes(value)
    return value


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def read_all(reader: Any, pieces: list[bytes], budget: int | None = None) -> list[Any]:
    replies = []
    for piece in pieces:
        reader.feed(piece)
        while (reply := reader.gets(budget)) is not NOT_ENOUGH_DATA:
            replies.append(reply)
    assert not reader.pending
    return replies


@settings(max_examples=150, deadline=None)
@given(st.lists(RESP3_VALUES, min_size=1, max_size=4), st.lists(st.integers(0, 10**6)))
def test_typed_reader_reads_what_was_written_however_it_is_cut(
        values: list[Wire], cuts: list[int]) -> None:
    stream = b"".join(w for w, _ in values)
    replies = read_all(TypedReader(), split(stream, cuts))
    assert [norm(r) for r in replies] == [norm(v) for _, v in values]


@settings(max_examples=100, deadline=None)
@given(st.lists(RESP3_VALUES, min_size=1, max_size=3))
def test_byte_by_byte(values: list[Wire]) -> None:
    stream = b"".join(w for w, _ in values)
    pieces = [stream[i : i + 1] for i in range(len(stream))]
    assert [norm(r) for r in read_all(TypedReader(), pieces)] == [norm(v) for _, v in values]
    assert read_all(Framer(), pieces) == [w for w, _ in values]


@settings(max_examples=150, deadline=None)
@given(st.lists(RESP3_VALUES, min_size=1, max_size=4), st.lists(st.integers(0, 10**6)))
def test_framer_returns_each_reply_bytes(values: list[Wire], cuts: list[int]) -> None:
    stream = b"".join(w for w, _ in values)
    assert read_all(Framer(), split(stream, cuts)) == [w for w, _ in values]


@settings(max_examples=150, deadline=None)
@given(RESP2_VALUES, st.lists(st.integers(0, 10**6)))
def test_resp2_agrees_with_hiredis(value: Wire, cuts: list[int]) -> None:
    wire, _ = value
    oracle = hiredis.Reader(notEnoughData=NOT_ENOUGH_DATA)
    oracle.feed(wire)
    (typed,) = read_all(TypedReader(), split(wire, cuts))
    assert plain(typed) == plain(oracle.gets())
    assert encode_resp2(typed) == wire  # byte for byte, as Redis sent it


@settings(max_examples=150, deadline=None)
@given(st.lists(RESP3_VALUES, min_size=3, max_size=3), st.integers(0, 200),
       st.lists(st.integers(0, 10**6)))
def test_a_reply_past_its_budget_is_dropped_and_the_next_is_whole(
        values: list[Wire], budget: int, cuts: list[int]) -> None:
    stream = b"".join(w for w, _ in values)
    for reader in (TypedReader(), Framer()):
        replies = read_all(reader, split(stream, cuts), budget)
        for (wire, value), reply in zip(values, replies, strict=True):
            if len(wire) > budget:
                assert isinstance(reply, Dropped) and not reply.too_deep
                assert reply.size == len(wire)
            elif isinstance(reader, Framer):
                assert reply == wire
            else:
                assert norm(reply) == norm(value)


def nested(depth: int) -> bytes:
    return b"*1\r\n" * depth + b":7\r\n"


@pytest.mark.parametrize("make", [TypedReader, Framer])
def test_nesting_as_deep_as_hiredis_reads_is_read(make: type) -> None:
    oracle = hiredis.Reader()
    oracle.feed(nested(MAX_DEPTH))
    assert oracle.gets() is not False  # hiredis reads this depth...
    oracle = hiredis.Reader()
    oracle.feed(nested(MAX_DEPTH + 1))
    with pytest.raises(hiredis.ProtocolError):  # ... and refuses one more
        oracle.gets()
    (reply,) = read_all(make(), [nested(MAX_DEPTH)])
    assert not isinstance(reply, Dropped)


@pytest.mark.parametrize("make", [TypedReader, Framer])
@pytest.mark.parametrize("chunk", [1, 7, 65536])
def test_deeper_nesting_is_dropped_without_recursion(make: type, chunk: int) -> None:
    depth = 50_000 if chunk > 1 else 5_000  # byte by byte: one gets() per byte
    stream = nested(depth) + b"+after\r\n"
    pieces = [stream[i : i + chunk] for i in range(0, len(stream), chunk)]
    deep, after = read_all(make(), pieces)
    assert isinstance(deep, Dropped) and deep.too_deep and deep.size == len(nested(depth))
    assert after in (Status(b"after"), b"+after\r\n")


def test_dropping_holds_no_bytes() -> None:
    """A 32 MB string and a 4 MB status line past a 1 KB budget, in 64 KB chunks:
    the reader's memory stays near one chunk."""
    big = b"$%d\r\n" % (32 << 20) + b"x" * (32 << 20) + b"\r\n"
    line = b"+" + b"y" * (4 << 20) + b"\r\n"
    stream = big + line + b":1\r\n"
    for reader in (TypedReader(), Framer()):
        tracemalloc.start()
        try:
            replies = []
            for i in range(0, len(stream), 65536):
                reader.feed(stream[i : i + 65536])
                while (r := reader.gets(1024)) is not NOT_ENOUGH_DATA:
                    replies.append(r)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        first, second, last = replies
        assert isinstance(first, Dropped) and isinstance(second, Dropped)
        assert (first.size, second.size) == (len(big), len(line))
        assert last in (1, b":1\r\n")  # TypedReader, Framer
        assert peak < 4 * 65536, peak


def test_a_large_string_in_many_chunks_is_copied_once() -> None:
    """Within budget, a string arriving in 1 KB pieces is joined when complete: the
    reader's peak memory is about the string itself, not a multiple of chunks seen."""
    value = b"z" * (4 << 20)
    stream = b"$%d\r\n" % len(value) + value + b"\r\n"
    reader = TypedReader()
    tracemalloc.start()
    try:
        for i in range(0, len(stream), 1024):
            reader.feed(stream[i : i + 1024])
            reply = reader.gets()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert reply == value
    assert peak < 3 * len(value), peak


@pytest.mark.parametrize("garbage", [b"?what\r\n", b"$abc\r\n", b"*1\r\n$3\r\nabcde\r\n",
                                     b"$" + b"9" * 40, b"*x\r\n"])
@pytest.mark.parametrize("make", [TypedReader, Framer])
def test_bytes_no_reader_can_read_are_a_protocol_error(make: type, garbage: bytes) -> None:
    reader = make()
    reader.feed(garbage)
    with pytest.raises(ProtocolError):
        while reader.gets() is not NOT_ENOUGH_DATA:
            pass


def test_a_run_of_strings_holding_crlf_and_nulls() -> None:
    """The run reader splits on CRLF: strings holding CRLF, headers faked inside values,
    nulls and other types in the middle of a long array must still read exactly."""
    tricky = [b"a\r\n$1\r\nb", b"", b"\r\n", b"$5\r\n", None, 42, b"x" * 3000, b"\r"]
    items = [v for _ in range(40) for v in tricky]
    wire = b"*%d\r\n" % len(items) + b"".join(
        b"$-1\r\n" if v is None else b":%d\r\n" % v if isinstance(v, int) else _bulk(v)[0]
        for v in items)
    for chunk in (1, 3, 1000, 1 << 20):
        pieces = [wire[i : i + chunk] for i in range(0, len(wire), chunk)]
        (reply,) = read_all(TypedReader(), pieces)
        assert reply == items
        assert read_all(Framer(), pieces) == [wire]


@pytest.mark.parametrize("make", [TypedReader, Framer])
def test_the_budget_holds_when_chunks_end_between_elements(make: type) -> None:
    """Chunks of whole elements (the buffer runs dry exactly at an element's end) must
    not let a reply grow past its budget unnoticed: built memory stays near the budget."""
    element = b"$6\r\nmember\r\n"
    budget = 1 << 20
    reader = make()
    reader.feed(b"*%d\r\n" % 1_000_000)
    tracemalloc.start()
    try:
        for _ in range(1_000_000 // 5000):
            reader.feed(element * 5000)
            reply = reader.gets(budget)
            if reply is not NOT_ENOUGH_DATA:
                break
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(reply, Dropped) and reply.size == 10 + 1_000_000 * len(element)
    assert peak < 6 * budget, peak  # Python objects for ~87k short strings, not 1M
