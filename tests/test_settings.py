"""Configuration is validated at start-up with messages that name the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from redis_gateway.settings import SettingsError, load


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gw.toml"
    path.write_text(text)
    return path


def test_defaults_without_file() -> None:
    settings = load(env={})
    assert settings.port == 8079
    assert settings.backends["default"].url == ""
    assert settings.limits.max_commands == 1000


def test_file_env_and_overrides_in_that_order(tmp_path: Path) -> None:
    path = write(tmp_path, 'port = 9000\nredis = "redis://a:1"\n[limits]\ncommand_timeout = 3\n')
    settings = load(path, env={"REDIS_GATEWAY_PORT": "9100",
                               "REDIS_GATEWAY_LIMITS__MAX_COMMANDS": "7",
                               "REDIS_GATEWAY_CORS_ORIGINS": "https://a.example, https://b"},
                    overrides={"port": 9200})
    assert settings.port == 9200
    assert settings.limits.command_timeout == 3.0
    assert settings.limits.max_commands == 7
    assert settings.cors_origins == ["https://a.example", "https://b"]
    assert settings.backends["default"].url == "redis://a:1"


@pytest.mark.parametrize(("text", "message"), [
    ("prot = 1", "prot: unknown setting; allowed here: host, port"),
    ("[limits]\nmax_body = 1", "limits.max_body: unknown setting; allowed here: max_body_bytes"),
    ('port = "http"', "port: expected int, got 'http'"),
    ("port = 70000", "port: 70000 is not between 1 and 65535"),
    ("[limits]\ncommand_timeout = -1", "limits.command_timeout: must be greater than 0"),
    ('redis = "http://x"', "backends.default.url: 'http://x' must start with redis://"),
    ('token_store = "etcd"', "token_store: 'etcd' is not one of file, redis"),
    ('token_store = "redis"', "token_store_secret: is required"),
    ('base_path = "api/"', "base_path: must start with '/'"),
    ("[[tokens]]\nname = \"x\"\nhash = \"abc\"", "tokens[0].hash: must be 'sha256:"),
    ("[[tokens]]\nname = \"x\"\nhash = \"sha256:" + "0" * 64 + "\"\nbackend = \"nope\"",
     "tokens[0].backend: 'nope' is not one of default"),
    ("[[tokens]]\nname = \"x\"\nhash = \"sha256:" + "0" * 64 + "\"\nexpires = \"soon\"",
     "tokens[0].expires: expected an ISO 8601 time"),
    ("[backends.cache]\nconnections = 2", "backends.cache.url: is required"),
    ("[backends.cache]\nurl = \"redis://x\"\ntls_check_hostname = \"maybe\"",
     "backends.cache.tls_check_hostname: expected true or false"),
    ("port = [", "is not valid TOML"),
    # topologies (replicas, Sentinel, Cluster)
    ('redis = "redis://a:1"\n[backends.default]\ntopology = "replicas"',
     'backends.default.replicas: list the read replicas, e.g. ["redis://10.0.0.6:6379"]'),
    ('redis = "redis://a:1"\n[backends.default]\ntopology = "replicas"\nreplicas = ["b"]',
     "backends.default.replicas[0]: 'b' must be redis://host:port or rediss://host:port"),
    ('redis = "redis://a:1"\n[backends.default]\nreplicas = ["redis://b"]',
     'backends.default.replicas: only used with topology = "replicas" (this backend\'s '
     "topology is 'standalone')"),
    ('[backends.default]\ntopology = "replicas"\nreplicas = ["redis://b"]',
     "backends.default.url: topology 'replicas' needs a redis:// or rediss:// URL"),
    ('redis = "redis://mymaster"\n[backends.default]\ntopology = "sentinel"',
     "backends.default.sentinels: list the Sentinels to ask"),
    ('redis = "redis://mymaster:6379"\n[backends.default]\ntopology = "sentinel"\n'
     'sentinels = ["redis://s1:26379"]',
     "backends.default.url: with topology 'sentinel' the URL's host is the master name "
     "('mymaster') and it has no port"),
    ('[backends.default]\ntopology = "sentinel"\nsentinels = ["redis://s1:26379"]',
     "backends.default.url: topology 'sentinel' needs a redis:// or rediss:// URL with a "
     "host, e.g. redis://mymaster/0"),
    ('redis = "redis://mymaster"\n[backends.default]\ntopology = "sentinel"\n'
     'sentinels = ["s1:26379"]',
     "backends.default.sentinels[0]: 's1:26379' must be redis://host:port"),
    ('[backends.default]\ntopology = "ring"',
     "backends.default.topology: 'ring' is not one of standalone, replicas, sentinel, cluster"),
    ('[backends.default]\ntopology = "cluster"',
     "backends.default.url: topology 'cluster' needs a redis:// or rediss:// URL with a host"),
    ('redis = "redis://10.0.0.5:6379/2"\n[backends.default]\ntopology = "cluster"',
     "backends.default.url: Redis Cluster has only database 0"),
    ('redis = "unix:///tmp/r.sock"\n[backends.default]\ntopology = "cluster"',
     "needs a redis:// or rediss:// URL with a host"),
    ('redis = "redis://a:1"\n[backends.default]\ntopology = "cluster"\nseeds = ["b:2"]',
     "backends.default.seeds[0]: 'b:2' must be redis://host:port"),
    ('redis = "redis://a:1"\n[backends.default]\nseeds = ["redis://b:2"]',
     "backends.default.seeds: only used with topology = \"cluster\""),
    ('redis = "redis://a:1"\n[backends.default]\nread_from_replicas = true',
     "backends.default.read_from_replicas: needs a topology with replicas"),
    (f'[[tokens]]\nname = "app"\nhash = "sha256:{"0" * 64}"\nrules = "admin"\n'
     f'[[tokens]]\nname = "app"\nhash = "sha256:{"1" * 64}"\nrules = "read-only"',
     "tokens[1].name: another token is named 'app'"),
    (f'[[tokens]]\nname = "a\\"b"\nhash = "sha256:{"0" * 64}"\nrules = "admin"',
     "tokens[0].name: must be 1 to 128 letters"),
])
def test_precise_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(SettingsError) as info:
        load(write(tmp_path, text), env={})
    assert message in str(info.value)


def test_env_errors_name_the_variable() -> None:
    with pytest.raises(SettingsError, match=r"limits\.max_commands: expected int"):
        load(env={"REDIS_GATEWAY_LIMITS__MAX_COMMANDS": "lots"})
    with pytest.raises(SettingsError, match="colour: unknown setting"):
        load(env={"REDIS_GATEWAY_COLOUR": "blue"})


def test_serve_refuses_a_bad_config_with_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path, "prot = 1")
    result = subprocess.run([sys.executable, "-m", "redis_gateway", "serve", "--config",
                             str(path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "configuration error: prot: unknown setting" in result.stderr
    assert "Traceback" not in result.stderr
