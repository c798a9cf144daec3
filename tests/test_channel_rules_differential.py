"""Channel rules decide SUBSCRIBE, PSUBSCRIBE and SSUBSCRIBE exactly as Redis's ACL does.

Hypothesis generates channel rules (``&pattern``, ``allchannels``, ``resetchannels``) and
channel names or patterns from an alphabet rich in glob syntax; the streaming hub's check
(``Policy.denied_channel``, what ``Hub.subscribe`` asks) is compared with ``ACL DRYRUN``
for a user carrying the same rules.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_acl_differential import Oracle

from redis_gateway.acl import acl_rules
from redis_gateway.policy import RuleError, parse

from support import RedisServer

ALPHABET = st.sampled_from([*b"ab*?[]^-\\:.", 0x80, 0x00])
TEXT = st.lists(ALPHABET, min_size=1, max_size=6).map(bytes)
RULE = st.one_of(
    st.sampled_from(["allchannels", "resetchannels"]),
    TEXT.filter(lambda p: b" " not in p and b"\x00" not in p).map(
        lambda p: "&" + p.decode("latin-1")),
)


@pytest.fixture(scope="module")
def oracle() -> Iterator[Oracle]:
    server = RedisServer().start()
    try:
        yield Oracle(server)
    finally:
        server.close()


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(rules=st.lists(RULE, min_size=1, max_size=3),
       names=st.lists(TEXT, min_size=1, max_size=3),
       kind=st.sampled_from(["SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE"]))
def test_subscriptions_decided_as_redis_decides(oracle: Oracle, rules: list[str],
                                                names: list[bytes], kind: str) -> None:
    try:
        policy = parse("+@all allkeys " + " ".join(rules))
    except RuleError:
        return  # a rule after allchannels: Redis refuses it too
    if not oracle.user("channels", acl_rules(policy, 0)):
        return
    gateway = policy.denied_channel(names, patterns=kind == "PSUBSCRIBE") is None
    redis = oracle.allows("channels", [kind.encode(), *names])
    assert gateway == redis, (rules, names, kind)
