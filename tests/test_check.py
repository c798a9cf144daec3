"""`redis-gateway check` against real servers: what it reports, and each problem it finds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from redis_gateway.auth import hash_token, new_token

from support import RedisCluster, RedisServer, free_port, redis_command


def run_check(tmp_path: Path, config: str) -> tuple[int, str, str]:
    path = tmp_path / "gateway.toml"
    path.write_text(f'tokens_file = "{tmp_path / "tokens.json"}"\n{config}')
    out = subprocess.run([sys.executable, "-m", "redis_gateway", "check", "--config",
                          str(path)], capture_output=True, text=True, timeout=60)
    return out.returncode, out.stdout, out.stderr


def token(name: str, rules: str, extra: str = "") -> str:
    return (f'[[tokens]]\nname = "{name}"\nhash = "{hash_token(new_token())}"\n'
            f'rules = "{rules}"\n{extra}\n')


def test_a_sound_configuration_is_described(redis: RedisServer, tmp_path: Path) -> None:
    code, out, err = run_check(tmp_path, f'redis = "{redis.url}"\n'
                               + token("dashboard", "read-only resetkeys ~app:*",
                                       "expires = 2099-01-01T00:00:00Z")
                               + token("jobs", "read-write resetkeys ~jobs:* %R~config:*")
                               + token("ops", "admin"))
    assert code == 0, err
    version = redis_command(redis.port, "INFO", "server")
    assert isinstance(version, bytes)
    number = version.split(b"redis_version:")[1].split()[0].decode()
    assert f"node {redis.url}/0: Redis {number}, primary" in out
    assert "enforcement: managed (the default)" in out
    assert "dashboard (backend 'default', expires 2099-01-01T00:00:00+00:00" in out
    assert "read-only, keys app:*, all channels, no scripts, no admin, " \
           "no dangerous commands" in out
    assert "read-write, keys jobs:*, config:* (read), all channels, " \
           "scripts (Redis checks what they run), no admin" in out
    assert "ops (backend 'default', never expires)" in out
    assert "unrestricted (admin)" in out
    assert out.rstrip().endswith("ok: no problem found")
    # Nothing was made or changed on the server.
    assert redis_command(redis.port, "ACL", "USERS") == [b"default"]


def test_wrong_password(tmp_path: Path) -> None:
    server = RedisServer("--requirepass", "right-password").start()
    try:
        code, _out, err = run_check(tmp_path, f'redis = "redis://:wrong@127.0.0.1:{server.port}"\n'
                                   + token("app", "read-write"))
    finally:
        server.close()
    assert code == 1
    assert "WRONGPASS" in err and "backend 'default'" in err
    assert "wrong" not in err.replace("WRONGPASS", "")  # the password is never printed


def test_unreachable_replica(redis: RedisServer, tmp_path: Path) -> None:
    dead = free_port()
    code, out, err = run_check(tmp_path, f"""
[backends.default]
url = "{redis.url}"
topology = "replicas"
replicas = ["redis://127.0.0.1:{dead}"]
""" + token("app", "read-write"))
    assert code == 1
    assert f"node {redis.url}/0: Redis" in out  # the primary answered
    assert f"node redis://127.0.0.1:{dead}/0" in err and "cannot reach Redis" in err
    assert err.count("cannot reach") == 1  # said once, in the report


def test_expired_token(redis: RedisServer, tmp_path: Path) -> None:
    code, _out, err = run_check(tmp_path, f'redis = "{redis.url}"\n'
                               + token("old", "read-only", "expires = 2020-01-01T00:00:00Z"))
    assert code == 1
    assert "token 'old' expired at 2020-01-01T00:00:00+00:00" in err


def test_mapped_users_missing_or_unmapped(redis: RedisServer, tmp_path: Path) -> None:
    code, out, err = run_check(tmp_path, f"""
[backends.default]
url = "{redis.url}"
enforcement = "mapped"
users."read-only" = {{ username = "no-such-user", password = "x" }}
""" + token("reader", "read-only") + token("writer", "read-write"))
    assert code == 1
    assert "enforcement: mapped (configured)" in out
    assert "the user 'no-such-user' mapped for the rules 'read-only' cannot log in" in err
    assert "no Redis user is mapped for the rules 'read-write'" in err


def test_managed_without_acl_rights(tmp_path: Path) -> None:
    server = RedisServer("--user", "gw", "on", ">gw-pass", "~*", "&*", "+@all", "-@admin",
                         "--user", "default", "off").start()
    try:
        code, out, err = run_check(
            tmp_path, f'redis = "redis://gw:gw-pass@127.0.0.1:{server.port}"\n'
            + token("app", "read-write"))
    finally:
        server.close()
    assert code == 1
    assert "managed enforcement needs ACL SETUSER" in err
    assert "gw-pass" not in out + err


def test_every_cluster_node_is_reported(cluster: RedisCluster, tmp_path: Path) -> None:
    code, out, err = run_check(tmp_path, f"""
[backends.default]
url = "{cluster.url}"
topology = "cluster"
""" + token("app", "read-write"))
    assert code == 0, err
    for node in cluster.nodes:
        assert f"node redis://127.0.0.1:{node.port}/0: Redis" in out
    assert out.count(", primary (cluster)") == 3
    assert out.count(", replica (cluster)") == 3
