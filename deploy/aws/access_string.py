"""The ElastiCache access string of the RBAC user that a gateway rule set runs as.

    python deploy/aws/access_string.py "read-write"
    python deploy/aws/access_string.py "+@read -@dangerous ~app:*"

prints what goes into the ``AccessString`` of that rule set's ``AWS::ElastiCache::User`` in
template.yaml (docs/deploy-aws.md, "Adding a role"). It is the user the gateway would create
itself where it may (enforcement = "managed", acl.py): the rules, plus the gateway's own
boundaries for this deployment (database 0 only; no key under the token store's prefix,
since the template keeps tokens in Redis), spelled in the subset of ACL syntax ElastiCache
documents. tests/test_template.py checks every role user of the template against it.
"""

from __future__ import annotations

import sys

from redis_gateway.acl import acl_rules
from redis_gateway.auth import compile_rules
from redis_gateway.policy import RuleError
from redis_gateway.settings import Settings

# What the template's environment decides for the default backend: tokens live in Redis
# (so their keys are out of every token's reach) and the URL has no database number.
TEMPLATE_SETTINGS = Settings(token_store="redis")
DATABASE = 0
# ElastiCache documents the pattern forms, not Redis's flags that mean the same.
_ELASTICACHE_SPELLING = {"allkeys": "~*", "allchannels": "&*"}


def access_string(rules: str) -> str:
    """``on`` and the ACL rules of the user for ``rules`` (a token's rules, as written)."""
    policy = compile_rules(TEMPLATE_SETTINGS, rules, "default")
    return " ".join(["on", *(_ELASTICACHE_SPELLING.get(rule, rule)
                             for rule in acl_rules(policy, DATABASE))])


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    try:
        print(access_string(argv[0]))
    except RuleError as exc:
        print(f"access_string: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
