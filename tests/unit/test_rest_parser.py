"""The REST front door's argument parsing: JSON commands and batches, and path style.
Pure: no gateway, no Redis."""

from __future__ import annotations

import json
from typing import Any, cast
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from redis_gateway.errors import BadRequest
from redis_gateway.http import Request
from redis_gateway.rest import RestApi, _parse_batch, _parse_command

# JSON scalars an Upstash client sends as arguments (no lone surrogates: not UTF-8).
scalars = st.one_of(st.text(st.characters(blacklist_categories=["Cs"])), st.booleans(),
                    st.integers(-(2**63), 2**64))


def as_bytes(value: str | bool | int) -> bytes:
    """What Redis must receive for a JSON argument: its text, true/false for booleans."""
    if isinstance(value, bool):
        return b"true" if value else b"false"
    return value.encode() if isinstance(value, str) else str(value).encode()


@given(st.lists(scalars, min_size=1))
def test_a_command_is_its_arguments_as_bytes(command: list[Any]) -> None:
    assert _parse_command(json.dumps(command).encode()) == [as_bytes(v) for v in command]


@given(st.lists(st.lists(scalars, min_size=1), min_size=1, max_size=5))
def test_a_batch_is_its_commands(batch: list[list[Any]]) -> None:
    assert _parse_batch(json.dumps(batch).encode()) == [[as_bytes(v) for v in c] for c in batch]


def test_numbers_keep_the_text_they_were_sent_as() -> None:
    assert _parse_command(b'["SET", "k", 1e3, 1.50, -0.0, 12]') == \
        [b"SET", b"k", b"1e3", b"1.50", b"-0.0", b"12"]
    assert _parse_batch(b'[["INCRBYFLOAT", "k", 0.1], ["GET", "k"]]') == \
        [[b"INCRBYFLOAT", b"k", b"0.1"], [b"GET", b"k"]]


@pytest.mark.parametrize(("body", "message"), [
    (b"", "the request body is empty"),
    (b"  \n", "the request body is empty"),
    (b"[\"GET\", ", "not valid JSON"),
    (b'["SET", "k", NaN]', "NaN is not allowed"),
    (b'{"cmd": "GET"}', "the command must be a JSON array"),
    (b"[]", "the command is an empty array"),
    (b'["SET", "k", null]', "the command, element 3, is null"),
    (b'["SET", "k", ["v"]]', "the command, element 3, is an array"),
    (b'["SET", "k", {"v": 1}]', "the command, element 3, is an object"),
    (b'["SET", "k", "\\ud800"]', "element 3, is not valid Unicode"),
])
def test_a_malformed_command_says_what_is_wrong(body: bytes, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        _parse_command(body)


@pytest.mark.parametrize(("body", "message"), [
    (b'["GET", "k"]', "expected an array of command arrays"),
    (b'[["GET", "k"], "PING"]', "expected an array of command arrays"),
    (b'[["GET", "k"], []]', "command 2 is an empty array"),
    (b'[["GET", "k"], ["SET", "k", null]]', "command 2, element 3, is null"),
])
def test_a_malformed_batch_names_the_command(body: bytes, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        _parse_batch(body)


def path_command(raw_path: bytes, *, method: str = "GET", query: bytes = b"",
                 body: bytes = b"", base_path: str = "") -> list[bytes]:
    api = RestApi(cast(Any, None), 1 << 20, base_path)  # parsing needs no executor
    request = Request(method, "", raw_path, query, [], body)
    return api._path_command(request)


def test_path_style_segments_body_and_query() -> None:
    assert path_command(b"/set/k/v") == [b"set", b"k", b"v"]
    # %2F is a slash inside one segment; an empty segment is an empty argument.
    assert path_command(b"/set/a%2Fb/%20c%E2%82%AC/") == [b"set", b"a/b", b" c\xe2\x82\xac",
                                                           b""]
    # The body (POST, PUT) is the last argument as raw bytes, then the query pairs, a
    # bare key adding one argument; the token never reaches Redis.
    assert path_command(b"/set/k", method="POST", body=b"\x00\xff",
                        query=b"EX=100&_token=secret&NX") == \
        [b"set", b"k", b"\x00\xff", b"EX", b"100", b"NX"]
    assert path_command(b"/get/k", body=b"ignored") == [b"get", b"k"]
    assert path_command(b"/gw/get/k", base_path="/gw") == [b"get", b"k"]


@given(st.lists(st.binary(), min_size=1, max_size=5))
def test_any_bytes_survive_percent_encoding(argv: list[bytes]) -> None:
    raw = "/" + "/".join(quote(a, safe="") for a in argv)
    assert path_command(raw.encode()) == argv
