"""Reading a cluster's layout (CLUSTER SHARDS, CLUSTER SLOTS), hash slots and redirects:
pure functions, fed replies shaped as hiredis returns Redis 7's."""

from __future__ import annotations

from binascii import crc_hqx

from hypothesis import given
from hypothesis import strategies as st

from redis_gateway.backends.cluster.layout import ShardLayout, parse_shards, parse_slots
from redis_gateway.backends.cluster.redirect import Redirect, parse_redirect
from redis_gateway.backends.slots import SLOTS, key_slot
from redis_gateway.resp import ReplyError


def node(port: int, role: str, *, health: str = "online", ip: str = "10.0.0.1",
         endpoint: str | None = None, tls_port: int | None = None) -> list[object]:
    fields: list[object] = [b"id", b"%040d" % port, b"port", port, b"ip", ip.encode(),
                            b"endpoint", (ip if endpoint is None else endpoint).encode(),
                            b"role", role.encode(), b"replication-offset", 42,
                            b"health", health.encode()]
    if tls_port is not None:
        fields += [b"tls-port", tls_port]
    return fields


def shard(slots: list[int], *nodes: list[object]) -> list[object]:
    return [b"slots", slots, b"nodes", list(nodes)]


def test_shards_give_ranges_primary_and_healthy_replicas() -> None:
    reply = [
        shard([5461, 10922], node(7002, "master"), node(7005, "replica"),
              node(7008, "replica", health="loading")),
        shard([0, 100, 200, 5460], node(7001, "master"), node(7004, "replica", health="fail")),
        shard([], node(7009, "master")),  # a primary just added: no slots yet
        shard([10923, 16383], node(7006, "replica"), node(7003, "master")),
    ]
    assert parse_shards(reply, tls=False, asked_host="seed") == [
        ShardLayout(((5461, 10922),), ("10.0.0.1", 7002), (("10.0.0.1", 7005),)),
        ShardLayout(((0, 100), (200, 5460)), ("10.0.0.1", 7001), ()),
        ShardLayout(((10923, 16383),), ("10.0.0.1", 7003), (("10.0.0.1", 7006),)),
    ]
    assert parse_shards(reply, tls=False, asked_host="seed")[1].first_slot == 0


def test_shard_endpoints_tls_ports_and_unknown_hosts() -> None:
    reply = [shard([0, 16383],
                   node(7001, "master", endpoint="cache-1.example", tls_port=8001),
                   node(7002, "replica", endpoint="?", ip="10.0.0.2", tls_port=8002),
                   node(7003, "replica", endpoint="", ip=""))]
    plain = parse_shards(reply, tls=False, asked_host="seed")[0]
    assert plain.primary == ("cache-1.example", 7001)
    # "?" means the endpoint is unknown: the ip; nothing at all: the node that was asked.
    assert plain.replicas == (("10.0.0.2", 7002), ("seed", 7003))
    tls = parse_shards(reply, tls=True, asked_host="seed")[0]
    # A node without a TLS port is reached on its port.
    assert (tls.primary, tls.replicas) == (("cache-1.example", 8001),
                                           (("10.0.0.2", 8002), ("seed", 7003)))


def test_slots_are_grouped_by_primary() -> None:
    reply = [
        [0, 99, [b"10.0.0.1", 7001, b"id1"], [b"10.0.0.4", 7004, b"id4"]],
        [100, 199, [b"10.0.0.2", 7002, b"id2"]],
        [200, 5460, [b"10.0.0.1", 7001, b"id1"], [b"10.0.0.4", 7004, b"id4"],
         [b"", 7007, b"id7"]],
        [5461, 5461, [b"?", 7003, b"id3"]],
        [5462, 5463],  # no node serves it: left out
    ]
    assert parse_slots(reply, asked_host="seed") == [
        ShardLayout(((0, 99), (200, 5460)), ("10.0.0.1", 7001),
                    (("10.0.0.4", 7004), ("seed", 7007))),
        ShardLayout(((100, 199),), ("10.0.0.2", 7002), ()),
        ShardLayout(((5461, 5461),), ("seed", 7003), ()),
    ]


def test_key_slot_is_the_crc16_of_the_cluster_specification() -> None:
    assert crc_hqx(b"123456789", 0) == 0x31C3  # the spec's check value
    assert key_slot(b"123456789") == 0x31C3 % SLOTS
    assert key_slot(b"{user1000}.following") == key_slot(b"user1000")
    assert key_slot(b"foo{}{bar}") == crc_hqx(b"foo{}{bar}", 0) % SLOTS  # empty tag: all
    assert key_slot(b"foo{{bar}}zap") == key_slot(b"{bar")  # the first '{' to the first '}'


@given(before=st.binary().filter(lambda b: b"{" not in b),
       tag=st.binary(min_size=1).filter(lambda b: b"}" not in b), after=st.binary())
def test_a_hash_tag_decides_the_slot(before: bytes, tag: bytes, after: bytes) -> None:
    assert key_slot(before + b"{" + tag + b"}" + after) == key_slot(tag) < SLOTS


def test_redirects_are_parsed_into_values() -> None:
    assert parse_redirect(ReplyError("MOVED 3999 127.0.0.1:6381"), "seed") == \
        Redirect(False, 3999, ("127.0.0.1", 6381))
    assert parse_redirect(ReplyError("ASK 0 cache-2.example:7000"), "seed") == \
        Redirect(True, 0, ("cache-2.example", 7000))
    # An empty host: the node that answered. IPv6 hosts keep their colons.
    assert parse_redirect(ReplyError("MOVED 16383 :7002"), "10.0.0.9") == \
        Redirect(False, 16383, ("10.0.0.9", 7002))
    assert parse_redirect(ReplyError("MOVED 1 ::1:7002"), "seed") == \
        Redirect(False, 1, ("::1", 7002))


def test_what_is_not_a_redirect() -> None:
    for text in ("ERR unknown command", "MOVED 3999", "MOVED 16384 h:1", "MOVED -1 h:1",
                 "ASK x h:1", "MOVED 1 h:port", "MOVED 1 h:70000", "MOVED 1 h:1 extra",
                 "moved 1 h:1", "MOVED \u0661 h:1", "MOVED +1 h:1", "MOVED 1_0 h:1",
                 "CROSSSLOT Keys in request don't hash to the same slot"):
        assert parse_redirect(ReplyError(text), "seed") is None, text
    assert parse_redirect(b"MOVED 1 h:1", "seed") is None  # a value, not an error reply


@given(ask=st.booleans(), slot=st.integers(0, SLOTS - 1),
       host=st.from_regex(r"[a-z0-9.\-]{0,20}", fullmatch=True), port=st.integers(0, 65535))
def test_any_redirect_round_trips(ask: bool, slot: int, host: str, port: int) -> None:
    reply = ReplyError(f"{'ASK' if ask else 'MOVED'} {slot} {host}:{port}")
    assert parse_redirect(reply, "asked") == Redirect(ask, slot, (host or "asked", port))
