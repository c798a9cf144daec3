"""TLS to Redis (with a client certificate), ACL users, and tokens aimed at other servers."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from redis_gateway.auth import new_token

from support import GatewayProcess, RedisServer, free_port


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private CA, a server certificate for 127.0.0.1 and a client certificate."""
    d = tmp_path_factory.mktemp("certs")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
        "-days", "2", "-subj", "/CN=test-ca")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
            f"{name}.csr", "-subj", f"/CN={name}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", "san.ext")
    return d


@pytest.fixture(scope="module")
def tls_redis(certs: Path) -> Iterator[RedisServer]:
    tls_port = free_port()
    server = RedisServer(
        "--tls-port", str(tls_port), "--tls-cert-file", str(certs / "server.crt"),
        "--tls-key-file", str(certs / "server.key"), "--tls-ca-cert-file", str(certs / "ca.crt"),
        "--tls-auth-clients", "yes",
    ).start()
    server.tls_port = tls_port  # type: ignore[attr-defined]
    yield server
    server.close()


def tls_table(name: str, certs: Path, url: str | None = None, client_cert: bool = True) -> str:
    text = f"[backends.{name}]\n" + (f'url = "{url}"\n' if url else "")
    text += f'tls_ca_file = "{certs / "ca.crt"}"\n'
    if client_cert:
        text += (f'tls_cert_file = "{certs / "client.crt"}"\n'
                 f'tls_key_file = "{certs / "client.key"}"\n')
    return text


def test_rediss_with_ca_and_client_certificate(tls_redis: RedisServer, certs: Path) -> None:
    url = f"rediss://127.0.0.1:{tls_redis.tls_port}"  # type: ignore[attr-defined]
    gw = GatewayProcess(url, rules={"admin": "admin"}, config_extra=tls_table("default", certs))
    gw.start()
    try:
        with gw.client() as c:
            assert c.post("/", json=["SET", "tls:k", "secret"]).json() == {"result": "OK"}
            assert c.post("/multi-exec", json=[["GET", "tls:k"]]).json() == [
                {"result": "secret"}]
        assert tls_redis.cli("GET", "tls:k") == "secret"  # really the TLS server's data
    finally:
        gw.stop()


def test_tls_without_client_certificate_is_503_with_reason(tls_redis: RedisServer,
                                                            certs: Path) -> None:
    url = f"rediss://127.0.0.1:{tls_redis.tls_port}"  # type: ignore[attr-defined]
    token = new_token()
    gw = GatewayProcess(tls_redis.url, rules={"admin": "admin"})
    gw.config_extra = tls_table("nocert", certs, url, client_cert=False) + "\n" + \
        gw.token_table("nocert", "admin", token, 'backend = "nocert"')
    gw.start()
    try:
        response = httpx.post(gw.url, json=["PING"], headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 503
        assert "cannot reach Redis at rediss://127.0.0.1" in response.json()["error"]
    finally:
        gw.stop()


def test_acl_user_and_password() -> None:
    server = RedisServer().start()
    server.cli("ACL", "SETUSER", "gateway", "on", ">pa ss", "~*", "&*", "+@all")
    server.cli("ACL", "SETUSER", "default", "off")
    gw = GatewayProcess("redis://gateway:pa%20ss@127.0.0.1:" + str(server.port) + "/2",
                        rules={"admin": "admin"})
    try:
        gw.start()
        with gw.client() as c:
            # Tokens run as the ACL user of their rules, made by the gateway as 'gateway'.
            assert c.post("/", json=["ACL", "WHOAMI"]).json()["result"].startswith("rgw-")
            assert c.post("/", json=["SET", "acl:k", "v"]).json() == {"result": "OK"}
            assert c.post("/", json=["CLIENT", "INFO"]).json()["result"].count("db=2") == 1
        # The gateway's own connection logs in with the configured user and password.
        assert "user=gateway" in server.cli("--user", "gateway", "--pass", "pa ss",
                                            "CLIENT", "LIST")
        wrong = GatewayProcess(f"redis://gateway:nope@127.0.0.1:{server.port}",
                               rules={"admin": "admin"}).start()
        try:
            with wrong.client() as c:
                response = c.post("/", json=["PING"])
            assert response.status_code == 503
            assert "refused the gateway: WRONGPASS" in response.json()["error"]
            assert "nope" not in wrong.log  # the password never reaches the log
        finally:
            wrong.stop()
    finally:
        gw.stop()
        server.close()


def test_tokens_choose_their_backend(redis_server: RedisServer) -> None:
    other = RedisServer().start()
    token = new_token()
    gw = GatewayProcess(redis_server.url, rules={"admin": "admin"})
    gw.config_extra = (f'[backends.other]\nurl = "{other.url}"\n\n'
                       + gw.token_table("other", "admin", token, 'backend = "other"'))
    gw.start()
    try:
        httpx.post(gw.url, json=["SET", "which", "other"],
                   headers={"Authorization": f"Bearer {token}"})
        with gw.client() as c:
            c.post("/", json=["SET", "which", "default"])
        assert other.cli("GET", "which") == "other"
        assert redis_server.cli("GET", "which") == "default"
    finally:
        gw.stop()
        other.close()
