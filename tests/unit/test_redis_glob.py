"""``may_match_under``: whether a key pattern reaches any key under a prefix, against a
brute force over ``glob_match`` (itself checked against Redis in test_acl_differential)."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from redis_gateway.redis_glob import _tokens, glob_match, may_match_under

ALPHABET = st.sampled_from([*b"ab*?[]^-\\:", 0x7F, 0x80, 0xFF, 0x00])


def reaches_by_brute_force(pattern: bytes, prefix: bytes) -> bool:
    """Some suffix makes prefix + suffix match. A matching suffix can be made of one byte
    per position of the pattern it meets, each any byte that position takes: so trying
    one byte of each position's set, up to as many bytes as there are positions, is
    exhaustive."""
    tokens = _tokens(pattern)
    witnesses = sorted({min(t) for t in tokens if t})
    return any(glob_match(pattern, prefix + bytes(suffix))
               for length in range(len(tokens) + 1)
               for suffix in itertools.product(witnesses, repeat=length))


@settings(max_examples=600, deadline=None)
@given(pattern=st.lists(ALPHABET, min_size=1, max_size=5).map(bytes),
       prefix=st.lists(st.sampled_from(b"ab:\x80"), min_size=1, max_size=4).map(bytes))
def test_reaching_a_prefix_agrees_with_matching(pattern: bytes, prefix: bytes) -> None:
    assert may_match_under(pattern, prefix) == reaches_by_brute_force(pattern, prefix)


def test_the_gateways_prefix() -> None:
    prefix = b"redis-gateway:"
    for reaches in (b"*", b"*:*", b"r*", b"**", b"?*", b"[a-z]*", b"redis-gateway:x",
                    b"\\r*", b"*y"):
        assert may_match_under(reaches, prefix), reaches
    for apart in (b"app:*", b"[^r]*", b"redis-gateway", b"red", b"re[]*", b"redis-gateway:[]"):
        assert not may_match_under(apart, prefix), apart
