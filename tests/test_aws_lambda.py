"""The Lambda handler, invoked in-process with realistic events, against a real redis-server.

Secrets Manager is moto's in-process stand-in; nothing reaches AWS.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from redis_gateway import aws_lambda
from redis_gateway.auth import TokenRecord, hash_token, new_token, sign_record

from support import RedisServer, record_runs


@pytest.fixture
def configure(monkeypatch: pytest.MonkeyPatch, tmp_path: Any,
              redis_server: RedisServer) -> Iterator[Any]:
    """Set the Lambda's environment; the handler builds its runtime at the next call."""
    token = new_token()

    def apply(**env: str) -> str:
        for name in list(__import__("os").environ):
            if name.startswith("REDIS_GATEWAY_"):
                monkeypatch.delenv(name)
        config = tmp_path / "lambda.toml"
        config.write_text(f'[[tokens]]\nname = "app"\nhash = "{hash_token(token)}"\n'
                          'rules = "read-write"\n')
        values = {"REDIS": redis_server.url, "CONFIG": str(config),
                  "LIMITS__MAX_BLOCK_SECONDS": "1", **env}
        for key, value in values.items():
            monkeypatch.setenv("REDIS_GATEWAY_" + key, value)
        aws_lambda.reset()
        return token

    yield apply
    aws_lambda.reset()


def appsync_event(field: str, arguments: dict[str, Any], *, parent: str = "Query",
                  identity: dict[str, Any] | None = None, api_key: str | None = None
                  ) -> dict[str, Any]:
    headers = {"content-type": "application/json",
               "host": "abc123.appsync-api.us-east-1.amazonaws.com"}
    if api_key:
        headers["x-api-key"] = api_key
    return {"arguments": arguments, "identity": identity, "source": None,
            "request": {"headers": headers, "domainName": None},
            "info": {"fieldName": field, "parentTypeName": parent, "variables": {},
                     "selectionSetList": [], "selectionSetGraphQL": ""},
            "prev": None, "stash": {}}


IAM = {"accountId": "123456789012", "cognitoIdentityPoolId": None, "cognitoIdentityId": None,
       "sourceIp": ["198.51.100.7"], "username": "AROAEXAMPLE:ci-session",
       "userArn": "arn:aws:sts::123456789012:assumed-role/ci-role/ci-session",
       "cognitoIdentityAuthType": None, "cognitoIdentityAuthProvider": None}


def cognito(groups: list[str] | None) -> dict[str, Any]:
    return {"sub": "u-1", "issuer": "https://cognito-idp.example/pool", "username": "ana",
            "claims": {"sub": "u-1"}, "sourceIp": ["198.51.100.7"],
            "defaultAuthStrategy": "ALLOW", "groups": groups}


def raises(event: Any, error_type: str) -> str:
    with pytest.raises(Exception) as info:
        aws_lambda.handler(event, None)
    assert type(info.value).__name__ == error_type
    return str(info.value)


@pytest.fixture
def k() -> str:
    return f"lambda:{uuid.uuid4().hex[:8]}"


def test_single_direct_resolver_with_api_key(configure: Any, k: str) -> None:
    token = configure()
    put = appsync_event("set", {"key": k, "value": "v a l"}, parent="Mutation", api_key=token)
    assert aws_lambda.handler(put, None) == "OK"
    get = appsync_event("getRedis", {"Command": ["GET", k]}, api_key=token)
    assert aws_lambda.handler(get, None) == ["v a l"]
    hgetall = appsync_event("hgetall", {"key": k + ":h", "encoding": None}, api_key=token)
    assert aws_lambda.handler(hgetall, None) == []  # optional args may arrive as null
    write = appsync_event("getRedis", {"Command": ["DEL", k]}, api_key=token)
    assert "may write" in raises(write, "BadRequest")
    wrong = appsync_event("incr", {"key": k}, parent="Mutation", api_key=token)
    assert raises(wrong, "RedisError") == "ERR value is not an integer or out of range"
    forbidden = appsync_event("command", {"args": ["FLUSHALL"]}, parent="Mutation",
                              api_key=token)
    assert "NOPERM" in raises(forbidden, "Forbidden")


def test_api_keys_not_in_the_token_table(configure: Any) -> None:
    configure()
    event = appsync_event("get", {"key": "x"}, api_key="da2-appsyncvalidatedkey")
    raises(event, "UnauthorizedException")
    configure(AWS__API_KEY_RULES="read-only")
    assert aws_lambda.handler(event, None) is None
    write = appsync_event("set", {"key": "x", "value": "1"}, parent="Mutation",
                          api_key="da2-appsyncvalidatedkey")
    raises(write, "Forbidden")


def test_batch_invoke_one_round_trip_and_per_item_errors(configure: Any, k: str) -> None:
    token = configure()
    aws_lambda.handler(appsync_event("set", {"key": k, "value": "1"}, parent="Mutation",
                                     api_key=token), None)
    calls = record_runs(aws_lambda._runtime.gateway.backends["default"])  # type: ignore[union-attr]
    events = [appsync_event("get", {"key": k}, api_key=token),
              appsync_event("get", {"key": k + ":none"}, api_key=token),
              appsync_event("llen", {"key": k}, api_key=token),
              appsync_event("get", {"key": k}, api_key="rgw_unknown")]
    results = aws_lambda.handler(events, None)
    assert results[0] == {"data": "1"}
    assert results[1] == {"data": None}
    assert results[2]["data"] is None and results[2]["errorType"] == "RedisError"
    assert "WRONGTYPE" in results[2]["errorMessage"]
    assert results[3]["errorType"] == "UnauthorizedException"
    assert calls == [3]


def test_identity_kinds_map_to_rules(configure: Any, k: str) -> None:
    configure(AWS__IAM_ARN_RULES=json.dumps(
        {"arn:aws:sts::123456789012:assumed-role/ci-role/*": "read-only"}),
        AWS__COGNITO_GROUP_RULES=json.dumps({"admins": "admin"}),
        AWS__COGNITO_RULES="read-only", AWS__OIDC_RULES="read-write")
    assert aws_lambda.handler(appsync_event("get", {"key": k}, identity=IAM), None) is None
    raises(appsync_event("set", {"key": k, "value": "1"}, parent="Mutation", identity=IAM),
           "Forbidden")
    other_role = {**IAM, "userArn": "arn:aws:sts::123456789012:assumed-role/other/x"}
    assert "no rules are configured" in raises(
        appsync_event("get", {"key": k}, identity=other_role), "UnauthorizedException")
    admin = appsync_event("command", {"args": ["DBSIZE"]}, parent="Mutation",
                          identity=cognito(["staff", "admins"]))
    assert isinstance(aws_lambda.handler(admin, None), int)
    raises(appsync_event("set", {"key": k, "value": "1"}, parent="Mutation",
                         identity=cognito(None)), "Forbidden")
    oidc = {"sub": "s", "issuer": "https://idp.example", "claims": {"sub": "s"}}
    assert aws_lambda.handler(appsync_event("set", {"key": k, "value": "1"},
                                            parent="Mutation", identity=oidc), None) == "OK"


def test_seed_mapping_template_payload(configure: Any, k: str) -> None:
    token = configure()
    context = {"identity": None, "source": None, "stash": {},
               "request": {"headers": {"x-api-key": token,
                                       "content-type": "application/graphql"}}}
    put = {"query": "RedisSet", "context": {
        **context, "arguments": {"Command": [["SET", k, "x y"], ["INCR", k + ":n"]]},
        "info": {"fieldName": "putRedis", "parentTypeName": "Mutation", "variables": {}}}}
    assert json.loads(aws_lambda.handler(put, None)) == ["OK", 1]
    get = {"query": "RedisGet", "context": {**context, "arguments": {"Command": ["GET", k]}}}
    assert aws_lambda.handler(get, None) == ["x y"]


def test_blocking_commands_are_capped(configure: Any, k: str) -> None:
    token = configure()
    started = time.monotonic()
    event = appsync_event("command", {"args": ["BLPOP", k, "0"]}, parent="Mutation",
                          api_key=token)
    assert aws_lambda.handler(event, None) is None
    assert time.monotonic() - started < 5  # max_block_seconds = 1, not forever


def http_v2(method: str, path: str, token: str, body: bytes | None = None,
            query: str = "") -> dict[str, Any]:
    event: dict[str, Any] = {
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query,
        "headers": {"content-type": "application/json", "authorization": f"Bearer {token}"},
        "requestContext": {
            "accountId": "anonymous", "apiId": "abc", "domainName": "abc.lambda-url.on.aws",
            "domainPrefix": "abc", "requestId": "r1", "routeKey": "$default",
            "stage": "$default", "time": "01/Jan/2025:00:00:00 +0000",
            "timeEpoch": 1735689600000,
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "198.51.100.7", "userAgent": "test"}},
        "isBase64Encoded": False,
    }
    if body is not None:
        event["body"] = base64.b64encode(body).decode()
        event["isBase64Encoded"] = True
    return event


def test_http_api_and_function_url_events(configure: Any, k: str) -> None:
    token = configure()
    response = aws_lambda.handler(http_v2("POST", "/", token,
                                          json.dumps(["SET", k, "v"]).encode()), None)
    assert response["statusCode"] == 200 and json.loads(response["body"]) == {"result": "OK"}
    response = aws_lambda.handler(http_v2("GET", f"/get/{k}", token), None)
    assert json.loads(response["body"]) == {"result": "v"}
    raw = b"\xff\x00binary"
    aws_lambda.handler(http_v2("POST", f"/set/{k}", token, raw, query="EX=100"), None)
    response = aws_lambda.handler(http_v2("POST", "/", token, json.dumps(["GET", k]).encode())
                                  | {"headers": {"authorization": f"Bearer {token}",
                                                 "upstash-encoding": "base64"}}, None)
    assert base64.b64decode(json.loads(response["body"])["result"]) == raw
    response = aws_lambda.handler(http_v2("POST", "/pipeline", "rgw_bad", b"[]"), None)
    assert response["statusCode"] == 401
    response = aws_lambda.handler(http_v2("POST", "/", token, b"{bad"), None)
    assert response["statusCode"] == 400 and "not valid JSON" in response["body"]


def test_rest_api_v1_event(configure: Any) -> None:
    token = configure()
    event = {"resource": "/{proxy+}", "path": "/echo/hi", "httpMethod": "GET",
             "headers": {"Authorization": f"Bearer {token}"}, "multiValueHeaders": {
                 "Authorization": [f"Bearer {token}"]},
             "queryStringParameters": None, "multiValueQueryStringParameters": None,
             "pathParameters": {"proxy": "echo/hi"}, "stageVariables": None,
             "requestContext": {"resourcePath": "/{proxy+}", "httpMethod": "GET",
                                "path": "/prod/echo/hi", "stage": "prod",
                                "identity": {"sourceIp": "198.51.100.7"}},
             "body": None, "isBase64Encoded": False}
    response = aws_lambda.handler(event, None)
    assert response["statusCode"] == 200 and json.loads(response["body"]) == {"result": "hi"}


def test_unknown_event_shape(configure: Any) -> None:
    configure()
    assert "unrecognised event" in raises({"hello": "world"}, "BadRequest")


def test_connection_that_died_while_frozen_is_replaced(configure: Any,
                                                       redis_server: RedisServer) -> None:
    token = configure()
    event = appsync_event("command", {"args": ["CLIENT", "ID"]}, parent="Mutation",
                          api_key=token)
    first = aws_lambda.handler(event, None)
    redis_server.cli("CLIENT", "KILL", "ID", str(first))  # e.g. an idle timeout meanwhile
    aws_lambda._runtime._last_call -= 60  # type: ignore[union-attr]
    second = aws_lambda.handler(event, None)
    assert isinstance(second, int) and second != first


def test_password_from_secrets_manager(monkeypatch: pytest.MonkeyPatch, configure: Any) -> None:
    import boto3
    from moto import mock_aws

    server = RedisServer("--requirepass", "s3cret-auth-token-0123").start()
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    try:
        with mock_aws():
            manager = boto3.client("secretsmanager")
            arn = manager.create_secret(Name="redis-auth", SecretString=json.dumps(
                {"username": "default", "token": "s3cret-auth-token-0123"}))["ARN"]
            key_arn = manager.create_secret(Name="token-key", SecretString=json.dumps(
                {"key": "signing-key-0123"}))["ARN"]
            token = configure(REDIS=server.url, PASSWORD_SECRET_ARN=arn)
            event = appsync_event("set", {"key": "sm", "value": "ok"}, parent="Mutation",
                                  api_key=token)
            assert aws_lambda.handler(event, None) == "OK"
            # tokens kept in Redis, signed with a key that also lives in Secrets Manager
            stored = new_token()
            record = TokenRecord("rest-client", hash_token(stored), "read-only")
            server.cli("-a", "s3cret-auth-token-0123", "--no-auth-warning", "HSET",
                       "redis-gateway:tokens", record.hash,
                       sign_record(record, "signing-key-0123").decode())
            configure(REDIS=server.url, PASSWORD_SECRET_ARN=arn, TOKEN_STORE="redis",
                      TOKEN_STORE_SECRET_ARN=key_arn)
            response = aws_lambda.handler(http_v2("GET", "/get/sm", stored), None)
            assert json.loads(response["body"]) == {"result": "ok"}
        assert server.cli("-a", "s3cret-auth-token-0123", "--no-auth-warning", "GET",
                          "sm") == "ok"
    finally:
        aws_lambda.reset()
        server.close()
