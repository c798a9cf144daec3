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

from dataclasses import dataclass

from .acl import acl_user
from .errors import Forbidden
from .policy import Policy
from .settings import BackendSettings


@dataclass(frozen=True)
class RedisUser:
    """A Redis user connections authenticate as."""

    username: str
    password: str
    # ACL SETUSER that makes it exist with its rules (managed); None: it must exist already.
    create: tuple[bytes, ...] | None = None


class Enforcement:
    def __init__(self, backend: str, settings: BackendSettings, db: int) -> None:
        self.backend = backend
        self.mode = settings.enforcement
        self._settings = settings
        self._db = db
        # The managed users' passwords derive from the gateway's own Redis password: every
        # gateway process with this configuration computes the same ones.
        self._secret = f"{settings.username or ''}:{settings.password or ''}".encode()
        self._users: dict[Policy, RedisUser] = {}

    @property
    def redis_enforces(self) -> bool:
        return self.mode != "gateway"

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
            user = acl_user(policy, self._db, self._secret)
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
