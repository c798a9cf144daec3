"""GraphQL requests built to stall or bloat the gateway, against a real gateway process.

Each attack runs from two threads while a victim on another connection reads a key over
REST; the victim's latency is measured before and during the attack (printed: run with
-s to see it) and must stay far below what the attacks cost before they were bounded
(10.8 s for the fragment document, 30 s for the 4 MB one): the bounds are generous
because the machine is shared, the numbers are the measurement. Where memory is the
point, the gateway's resident memory is read from /proc.
"""

from __future__ import annotations

import json
import multiprocessing
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from support import GatewayProcess, RedisServer

# Generous, for a shared 2-core machine: before they were bounded, these attacks held
# the gateway's event loop for 10-30 s at a time.
VICTIM_MEDIAN_BOUND = 0.25
VICTIM_MAX_BOUND = 5.0


@pytest.fixture(scope="module")
def own(redis_server: RedisServer) -> Iterator[GatewayProcess]:
    """Default GraphQL limits, a gateway of its own so its memory is this module's."""
    gw = GatewayProcess(redis_server.url, rules={"admin": "admin", "ro": "read-only"}).start()
    try:
        yield gw
    finally:
        gw.stop()


def post(client: httpx.Client, query: str, variables: Any = None) -> httpx.Response:
    body: dict[str, Any] = {"query": query}
    if variables is not None:
        body["variables"] = variables
    return client.post("/graphql", json=body)


class Victim:
    """Sequential REST GETs on a connection of their own, timed."""

    def __init__(self, gateway: GatewayProcess) -> None:
        self.client = gateway.client("ro")
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    def get(self) -> float:
        started = time.perf_counter()
        r = self.client.get("/get/gql:victim")
        elapsed = time.perf_counter() - started
        assert r.status_code == 200, r.text
        return elapsed

    def baseline(self, count: int = 40) -> list[float]:
        return [self.get() for _ in range(count)]

    def __enter__(self) -> Victim:
        def loop() -> None:
            try:
                while not self._stop.is_set():
                    self.latencies.append(self.get())
            except BaseException as exc:  # re-raised in the test's thread
                self._failure = exc

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread
        self._thread.join(30)
        self.client.close()
        if self._failure is not None:
            raise self._failure


def attack(gateway: GatewayProcess, send: Callable[[httpx.Client, int], None],
           requests: int, processes: int = 2) -> tuple[list[float], list[float], float]:
    """``requests`` attacks from each of ``processes`` clients while a victim reads;
    the victim's latencies before and during, and the attack's wall time. The attackers
    are processes of their own, so that building their requests does not hold up the
    victim's client (the GIL) and only the gateway's delays are measured."""
    victim = Victim(gateway)
    before = victim.baseline()

    def attacker(n: int) -> None:
        with gateway.client("admin") as client:
            for i in range(requests):
                send(client, n * requests + i)

    fork = multiprocessing.get_context("fork")
    started = time.perf_counter()
    with victim:
        workers = [fork.Process(target=attacker, args=(n,)) for n in range(processes)]
        try:
            for w in workers:
                w.start()
            for w in workers:
                w.join(300)
        finally:
            for w in workers:
                if w.is_alive():
                    w.kill()
                    w.join()
    assert [w.exitcode for w in workers] == [0] * processes, "an attacker failed (see above)"
    return before, victim.latencies, time.perf_counter() - started


def report(name: str, before: list[float], during: list[float], wall: float) -> None:
    def ms(values: list[float]) -> str:
        ordered = sorted(values)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return (f"median {statistics.median(values) * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms, "
                f"max {max(values) * 1e3:.1f} ms")

    print(f"\n[{name}] attack {wall:.2f} s; victim alone: {ms(before)}; "
          f"during ({len(during)} GETs): {ms(during)}")
    assert during, "the victim got no answer during the attack"
    assert statistics.median(during) < VICTIM_MEDIAN_BOUND, (name, statistics.median(during))
    assert max(during) < VICTIM_MAX_BOUND, (name, max(during))


def limit_error(r: httpx.Response, path: bool = False) -> str:
    """The one error of a refused request, AppSync-shaped: 200, data null, errorType;
    with ``path``, refused while it ran (the field's error), else before."""
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["data"] is None
    (error,) = body["errors"]
    assert error["errorType"] == "LimitExceeded", error
    assert (error["path"] is not None) == path, error
    message: str = error["message"]
    return message


def nested_spreads(levels: int, unique: int) -> str:
    return f"query Q{unique} {{ ...F0 }}\n" + "\n".join(
        f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(levels)
    ) + f"\nfragment F{levels} on Query {{ __typename }}"


def test_nested_fragment_spreads_are_measured_once(own: GatewayProcess) -> None:
    """The reproduction: 22 fragments each spreading the next twice, ~900 bytes."""
    assert len(nested_spreads(22, 0)) < 1000

    def send(client: httpx.Client, i: int) -> None:
        message = limit_error(post(client, nested_spreads(22, i)))  # distinct: not cached
        assert message.startswith(f"the operation resolves {2**22} fields"), message
        assert "(graphql.max_fields)" in message

    report("22 nested fragment spreads", *attack(own, send, requests=40))


def test_four_megabyte_document_is_refused_unparsed(own: GatewayProcess) -> None:
    """The reproduction: a 4 MB ``{ __typename … }``; it froze the loop for 30 s and the
    document cache kept its tree (RSS 660 MB -> 1.1 GB after two more)."""
    document = "{ " + "__typename " * (4 * 1024 * 1024 // 11) + "}"
    start_rss = own.memory() / 2**20

    def send(client: httpx.Client, i: int) -> None:
        message = limit_error(post(client, document + f"#{i}"))
        assert "the limit is 32768 bytes (graphql.max_document_bytes)" in message

    report("4 MB document", *attack(own, send, requests=4))
    grown = own.memory() / 2**20 - start_rss
    print(f"[4 MB document] gateway RSS grew {grown:.1f} MiB over 8 documents")
    assert grown < 100  # a few bodies in flight at most; nothing kept


def test_document_cache_is_bounded_in_bytes(own: GatewayProcess) -> None:
    """Distinct documents just small enough to be cached: the cache keeps 256 KiB of
    them, not 512 trees of ~1 MB each (the old cache's bound was 512 entries)."""
    def document(i: int) -> str:
        # ~15 KB and 1,400 tokens: under every limit but max_fields, so parsed and kept.
        return f"query Q{i} {{ " + "__typename " * 1400 + "}"

    with own.client("admin") as client:
        for i in range(3):  # warm up whatever the first requests allocate
            limit_error(post(client, document(1000 + i)))
        start_rss = own.memory() / 2**20
        for i in range(200):
            assert "(graphql.max_fields)" in limit_error(post(client, document(i)))
    grown = own.memory() / 2**20 - start_rss
    print(f"\n[document cache] gateway RSS grew {grown:.1f} MiB over 200 distinct "
          "15 KB documents")
    assert grown < 60  # unbounded by bytes, the cache would have kept ~170 MB of trees


def test_worst_documents_within_the_limits(own: GatewayProcess) -> None:
    """What is still accepted costs most when graphql-core's overlapping-fields rule
    compares same-named fields pairwise: ~2,000 tokens of the same field, each distinct."""
    def send(client: httpx.Client, i: int) -> None:
        r = post(client, f"query Q{i} {{ " + 'get(key: "gql:victim") ' * 330 + "}")
        assert r.status_code == 200 and r.json() == {"data": {"get": None}}, r.text[:300]

    report("2,000-token same-field documents (accepted)", *attack(own, send, requests=10))


def test_huge_variable_lists_are_refused_before_coercion(own: GatewayProcess) -> None:
    """600,000 keys: graphql-core would coerce them one by one (~2.5 s of the loop)."""
    keys = ["k"] * 600_000
    body = json.dumps({"query": "mutation($k: [String!]!) { del(keys: $k) }",
                       "variables": {"k": keys}})

    def send(client: httpx.Client, i: int) -> None:
        r = client.post("/graphql", content=body, headers={"content-type": "application/json"})
        assert limit_error(r) == ("the variables hold more than 10000 values "
                                  "(graphql.max_variable_values)")

    report("600,000 variable values", *attack(own, send, requests=3))
    with own.client("admin") as client:  # a list within the limit still works
        r = post(client, "mutation($k: [String!]!) { del(keys: $k) }",
                 {"k": [f"gql:none:{i}" for i in range(9_999)]})
        assert r.json() == {"data": {"del": 0}}


def test_long_list_replies_are_refused_before_completion(own: GatewayProcess,
                                                          redis_server: RedisServer) -> None:
    """A tiny query, a big reply: graphql-core completes a typed list item by item on the
    event loop (300k strings: ~0.7 s; 100k stream entries: ~4.5 s)."""
    from support import redis_commands

    key = f"gql:long:{uuid.uuid4().hex[:6]}"
    redis_commands(redis_server.port, [
        ("RPUSH", f"{key}:l", *(["x"] * 100_000)),
        *(("XADD", f"{key}:s", "*", "f", "v") for _ in range(20_000))])
    try:
        def send(client: httpx.Client, i: int) -> None:
            query = ("query($k: String!) { lrange(key: $k) }" if i % 2 else
                     "query($k: String!) { xrange(key: $k) { id } }")
            r = post(client, query, {"k": f"{key}:l" if i % 2 else f"{key}:s"})
            message = limit_error(r, path=True)
            assert message.startswith("the reply has more than 10000 elements "
                                      "(graphql.max_list_items)"), message

        report("100k-item list and 20k-entry stream", *attack(own, send, requests=6))
        with own.client("ro") as client:  # a bounded range, or the whole reply as AWSJSON
            page = post(client, "query($l: String!, $s: String!) { lrange(key: $l, stop: 9) "
                                "xrange(key: $s, count: 5) { id } }",
                        {"l": f"{key}:l", "s": f"{key}:s"}).json()["data"]
            assert page["lrange"] == ["x"] * 10 and len(page["xrange"]) == 5
            whole = post(client, 'query($l: String!) { command(args: ["LRANGE", $l, "0", "-1"]) }',
                         {"l": f"{key}:l"})
            assert json.loads(whole.json()["data"]["command"]) == ["x"] * 100_000
    finally:
        redis_commands(redis_server.port, [("DEL", f"{key}:l", f"{key}:s")])


NASTY = [
    # (what, body, status): nothing here may be a 500.
    ("deep JSON variables", '{"query": "{ __typename }", "variables": {"a": '
     + "[" * 100_000 + "]" * 100_000 + "}}", 400),
    ("deep JSON envelope", "[" * 100_000 + "]" * 100_000, 400),
    ("deeply nested selections", json.dumps({"query": "{ a" * 1500 + " }" * 1500}), 200),
    ("deep list literal", json.dumps({"query": '{ get(key: ' + "[" * 900 + "]" * 900
                                      + ") }"}), 200),
    ("deep object literal", json.dumps({"query": "{ get(key: " + "{a: " * 600 + "1"
                                        + "}" * 600 + ") }"}), 200),
    ("fragment cycle", json.dumps({"query": "{ ...A } fragment A on Query { ...B get(key: "
                                   '"k") } fragment B on Query { ...A ...B }'}), 200),
    ("lone surrogate", '{"query": "{ get(key: \\"\\ud800\\") }"}', 400),
    ("query not a string", '{"query": ["{ __typename }"]}', 400),
    ("variables not an object", '{"query": "{ __typename }", "variables": [1]}', 400),
]


@pytest.mark.parametrize(("what", "body", "status"), NASTY, ids=[n[0] for n in NASTY])
def test_nasty_input_gets_an_appsync_shaped_error(own: GatewayProcess, what: str,
                                                  body: str, status: int) -> None:
    with own.client("admin") as client:
        r = client.post("/graphql", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, (what, r.status_code, r.text[:300])
    errors = r.json()["errors"]
    assert errors and all(e["errorType"] and e["message"] for e in errors), errors
    assert all(e["errorType"] != "InternalError" for e in errors), errors


def test_deep_variables_in_a_get_request(own: GatewayProcess) -> None:
    with own.client("admin") as client:
        r = client.get("/graphql", params={"query": "{ __typename }",
                                           "variables": "[" * 5000 + "]" * 5000})
    assert r.status_code == 400
    assert r.json()["errors"][0]["errorType"] == "MalformedHttpRequestException"


def test_limits_are_settings(redis_server: RedisServer) -> None:
    """Every bound is configurable; a tighter one is applied as configured."""
    gw = GatewayProcess(redis_server.url, rules={"admin": "admin"}, config_extra=(
        "[graphql]\nmax_document_bytes = 100\nmax_tokens = 30\nmax_fields = 2\n"
        "max_variable_values = 2\n"))
    try:
        gw.start()
        with gw.client("admin") as client:
            assert "limit is 100 bytes" in limit_error(post(client, "{ " + "x" * 100 + " }"))
            assert "more than 30 tokens" in limit_error(post(client, "{ " + "a " * 30 + "}"))
            assert "resolves 3 fields" in limit_error(post(
                client, '{ a: get(key: "1") b: get(key: "2") ttl(key: "3") }'))
            assert "more than 2 values" in limit_error(post(
                client, "query($k: [String!]!) { mget(keys: $k) }", {"k": ["1", "2"]}))
            ok = post(client, "query($k: [String!]!) { mget(keys: $k) }", {"k": ["1"]})
            assert ok.json() == {"data": {"mget": [None]}}
    finally:
        gw.stop()
