"""Who enforces the tokens' rules on a backend, and as which Redis user commands run.

- ``managed`` (the default): every rule set runs as a Redis ACL user carrying exactly its
  rules (``acl.py``), which the gateway creates on each node before its first connection
  there, so Redis checks what the gateway cannot see (scripts, functions).
- ``mapped``: rule sets map to users that already exist (ElastiCache RBAC users, users an
  operator manages), named in ``backends.<name>.users`` by the token's rules as written.
- ``gateway``: the gateway's own check only; commands run as the gateway's own user, and
  whatever the gateway cannot see into is refused to restricted tokens (``checks.py``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable

from .acl import USER_PREFIX, RedisUser, acl_user, password_of
from .backends import Backend
from .backends.node import Node
from .errors import Forbidden, GatewayError, RedisUnavailable
from .policy import Policy
from .redis_types import pairs
from .settings import BackendSettings, MappedUser

log = logging.getLogger("redis_gateway.enforcement")


class Enforcement:
    def __init__(self, backend: str, settings: BackendSettings, db: int) -> None:
        self.backend = backend
        self.mode = settings.enforcement
        self._settings = settings
        self.db = db
        # The managed users' passwords derive from the gateway's own Redis password: every
        # gateway process with this configuration computes the same ones.
        self.secret = f"{settings.username or ''}:{settings.password or ''}".encode()
        self._users: dict[Policy, RedisUser] = {}

    @property
    def mapped(self) -> dict[str, MappedUser]:
        return self._settings.users

    @property
    def redis_enforces(self) -> bool:
        return self.mode != "gateway"

    def unguarded_pattern(self, policy: Policy) -> bytes | None:
        """A key pattern of ``policy`` with which its Redis user reaches the gateway's own
        keys: then only the gateway's check keeps them out, and it cannot see into scripts.
        A managed user writes ``*`` without them; a mapped user is taken to carry the
        token's patterns as they are."""
        if self.mode == "gateway":
            return None
        return policy.reaching_reserved(star_guarded=self.mode == "managed")

    def user(self, policy: Policy) -> RedisUser | None:
        """The Redis user ``policy``'s commands run as; None: the gateway's own."""
        if self.mode == "gateway":
            return None
        found = self._users.get(policy)
        if found is None:
            found = self._users[policy] = self._make(policy)
        return found

    def _make(self, policy: Policy) -> RedisUser:
        if self.mode == "managed":
            user = acl_user(policy, self.db, self.secret)
            return RedisUser(user.name, user.password, tuple(user.setuser()))
        mapped = self._settings.users.get(policy.text)
        if mapped is None:
            raise Forbidden(
                f"no Redis user is mapped for the rules '{policy.text}' on backend "
                f"'{self.backend}' (enforcement = \"mapped\"): add "
                f"[backends.{self.backend}.users.\"{policy.text}\"] with its username and "
                "password"
            )
        return RedisUser(mapped.username, mapped.password or "")


async def prepare(enforcement: Enforcement, backend: Backend, policies: Iterable[Policy]) -> None:
    """At start-up: say which mode is in force and why; in managed mode, make the users of
    the rule sets known now on every node known now, and remove the users of rule sets that
    are gone (made by a gateway with the same secret, so ours to remove)."""
    name, mode = enforcement.backend, enforcement.mode
    if mode == "gateway":
        log.warning("backend '%s': enforcement = \"gateway\": only the gateway checks token "
                    "rules; scripts and functions are refused to every token that is not "
                    "unrestricted (\"managed\" lets Redis enforce them)", name)
        return
    policies = list(policies)
    for policy in dict.fromkeys(policies):
        pattern = enforcement.unguarded_pattern(policy)
        if pattern is not None:
            log.warning("backend '%s': the rules '%s' have the key pattern '%s', which would "
                        "let their Redis user reach the gateway's own keys: their tokens may "
                        "not run scripts", name, policy.text,
                        pattern.decode("utf-8", "replace"))
    if mode == "mapped":
        users = ", ".join(f"'{r}' as {u.username}" for r, u in enforcement.mapped.items())
        log.info("backend '%s': enforcement = \"mapped\": Redis enforces token rules; tokens "
                 "run as existing users: %s", name, users or "none mapped")
        return
    wanted = {u.username: u for p in policies if (u := enforcement.user(p)) is not None}
    failures = []
    for node in backend.nodes():
        try:
            for user in wanted.values():
                await node.make_user(user)
            await _remove_stale(node, set(wanted), enforcement.secret)
        except GatewayError as exc:
            failures.append(exc.message)
    if failures:
        log.error("backend '%s': enforcement = \"managed\", but %s; requests of its tokens "
                  "fail with 503 until that is fixed (no weaker mode is chosen for you)",
                  name, "; ".join(dict.fromkeys(failures)))
        return
    log.info("backend '%s': enforcement = \"managed\": Redis enforces token rules through "
             "one ACL user per rule set (%d made on %d node(s))", name, len(wanted),
             len(backend.nodes()))


async def _remove_stale(node: Node, wanted: set[str], secret: bytes) -> None:
    (listing,) = await node.run([[b"ACL", b"USERS"]])
    if not isinstance(listing, list):
        raise RedisUnavailable(f"Redis at {node.label} did not list its users: {listing}")
    stale = [u.decode() for u in listing
             if u.startswith(USER_PREFIX.encode()) and u.decode() not in wanted]
    if not stale:
        return
    # Another gateway with other tokens may share this Redis and our secret: a user with
    # clients connected is someone's now, and removing it would cut them off at every
    # start of ours. One nobody is connected as is removed (a gateway that needs it again
    # makes it again). If we cannot see who is connected, nothing is removed.
    (clients,) = await node.run([[b"CLIENT", b"LIST"]])
    if not isinstance(clients, bytes | str):
        log.info("kept the ACL users %s on %s: CLIENT LIST did not show who uses them (%s)",
                 ", ".join(stale), node.label, clients)
        return
    text = clients.decode("latin-1") if isinstance(clients, bytes) else clients
    in_use = {field[5:] for line in text.splitlines() for field in line.split(" ")
              if field.startswith("user=")}
    for username in stale:
        if username in in_use:
            log.info("kept the ACL user %s on %s: no token of ours has its rules, but "
                     "clients are connected as it (another gateway's?)", username, node.label)
            continue
        (found,) = await node.run([[b"ACL", b"GETUSER", username.encode()]])
        ours = hashlib.sha256(password_of(username, secret).encode()).hexdigest().encode()
        passwords = pairs(found).get("passwords") if isinstance(found, list) else None
        if passwords == [ours]:  # made by a gateway sharing our secret: its rules are gone
            await node.run([[b"ACL", b"DELUSER", username.encode()]])
            log.info("removed the ACL user %s on %s: no token has its rules any more",
                     username, node.label)
