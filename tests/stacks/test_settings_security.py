"""The settings that harden a stack: each model's `serving.auth` (apiKey by default in prod, anonymous in prod only
with a written reason, OIDC fields checked with the serving service's own rules), its rate limit, concurrency limit
and /docs switch with environment defaults; MLflow's basic auth in every environment; the retention days, the
network policy settings and the NFS modes (an EFS file system named or derived), each mistake naming file and key."""

from __future__ import annotations

import json
from typing import Any

import pytest

from harness.run import read_stack_file
from stacks.settings import PROJECT, SettingsError, StackSettings, load_settings
from tests.stacks.test_settings import IRIS, MINIMAL, PROD_NETWORK

P = f"{PROJECT}:"
PROD = {**MINIMAL, **PROD_NETWORK}


def with_serving(base: dict[str, str], **serving: Any) -> dict[str, str]:
    return {**base, f"{P}models": json.dumps({"iris": {**IRIS, "serving": serving}})}


def load(stack: str, config: dict[str, str]) -> StackSettings:
    return load_settings(stack, config)


def problems_of(stack: str, config: dict[str, str]) -> list[str]:
    with pytest.raises(SettingsError) as info:
        load_settings(stack, config)
    return info.value.problems


def test_prod_authenticates_and_hides_the_api_document_by_default() -> None:
    prod = load("prod", PROD).catalog.models["iris"].serving
    dev = load("dev", MINIMAL).catalog.models["iris"].serving
    assert (prod.auth.mode, prod.auth.keys, prod.public_docs) == ("apiKey", ("key-1",), False)
    assert (dev.auth.mode, dev.public_docs) == ("none", True)
    assert prod.max_in_flight is None and (prod.rate_limit.average, prod.rate_limit.burst) == (100, 200)


def test_prod_takes_anonymous_calls_only_with_a_reason() -> None:
    assert problems_of("prod", with_serving(PROD, auth={"mode": "none"})) == [
        "Pulumi.prod.yaml: mlops-platform:models.iris.serving.auth.mode none lets anyone call the model in prod: use "
        "apiKey or oidc, or say why in serving.auth.anonymousReason"
    ]
    reason = "public demo model, no personal data, rate limited"
    ok = load("prod", with_serving(PROD, auth={"mode": "none", "anonymousReason": reason}))
    assert ok.catalog.models["iris"].serving.auth.mode == "none"
    assert load("dev", with_serving(MINIMAL, auth={"mode": "none"})).catalog.models["iris"].serving.auth.mode == "none"


@pytest.mark.parametrize(
    ("auth", "problem"),
    [
        ({"mode": "oidc", "issuer": "https://id.example.com"}, "audience: Field required"),
        ({"mode": "oidc", "issuer": "http://id.example.com", "audience": "a"}, "must use https"),
        ({"issuer": "https://id.example.com"}, "issuer, audience and jwksUrl go with mode oidc"),
        ({"mode": "apiKey", "keys": []}, "needs at least one key name in keys or one hash in keyHashes"),
        ({"mode": "apiKey", "keys": ["Key 1"]}, "String should match pattern"),
        ({"mode": "apiKey", "keys": ["k1", "k1"]}, "keys must be distinct names"),
        ({"mode": "apiKey", "keyHashes": ["abc"]}, "String should match pattern"),
        ({"mode": "apiKey", "anonymousReason": "ten letters at least"}, "anonymousReason goes with mode none"),
        ({"mode": "basic"}, "Input should be 'none', 'apiKey' or 'oidc'"),
    ],
)
def test_auth_mistakes_name_their_key(auth: dict[str, Any], problem: str) -> None:
    (found,) = problems_of("dev", with_serving(MINIMAL, auth=auth))
    assert found.startswith("Pulumi.dev.yaml: mlops-platform:models.iris.serving.auth") and problem in found, found


@pytest.mark.parametrize(
    ("serving", "key"),
    [
        ({"rateLimit": {"average": 0}}, "rateLimit.average"),
        ({"rateLimit": {"burst": 0}}, "rateLimit.burst"),
        ({"rateLimit": {"by": "cookie"}}, "rateLimit.by"),
        ({"rateLimit": {"period": 0}}, "rateLimit.period"),
        ({"maxInFlight": 0}, "maxInFlight"),
        ({"publicDocs": "sometimes"}, "publicDocs"),
    ],
)
def test_limits_are_checked(serving: dict[str, Any], key: str) -> None:
    (found,) = problems_of("dev", with_serving(MINIMAL, **serving))
    assert found.startswith(f"Pulumi.dev.yaml: mlops-platform:models.iris.serving.{key} "), found


def test_oidc_settings_reach_the_service_as_it_reads_them() -> None:
    oidc = {
        "mode": "oidc",
        "issuer": "https://id.example.com",
        "audience": "iris",
        "jwksUrl": "https://id.example.com/k",
    }
    auth = load("prod", with_serving(PROD, auth=oidc)).catalog.models["iris"].serving.auth
    assert json.loads(auth.service_config(None).env_value()) == oidc


def test_mlflow_asks_for_a_password_in_every_environment() -> None:
    assert load("dev", MINIMAL).mlflow.basic_auth and load("prod", PROD).mlflow.basic_auth
    for stack in ("dev", "prod"):
        assert read_stack_file(stack).config[f"{P}mlflow.basicAuth"] == "true"


def test_retention_and_network_defaults() -> None:
    dev, prod = load("dev", MINIMAL), load("prod", PROD)
    assert (dev.retention.airflow_logs_days, dev.retention.serving_logs_days) == (30, 7)
    assert (prod.retention.airflow_logs_days, prod.retention.serving_logs_days) == (90, 30)
    assert dev.network.policies and dev.network.egress_cidrs == ("0.0.0.0/0",)
    assert prod.database_egress_cidrs == ("10.40.0.0/16",)  # database.allowedCidrs unless network.databaseCidrs
    narrowed = load("prod", {**PROD, f"{P}network.databaseCidrs": '["10.40.8.0/22"]'})
    assert narrowed.database_egress_cidrs == ("10.40.8.0/22",)
    assert problems_of("dev", {**MINIMAL, f"{P}retention.servingLogsDays": "0"}) == [
        'Pulumi.dev.yaml: mlops-platform:retention.servingLogsDays must be >= 1; got "0"'
    ]
    assert problems_of("dev", {**MINIMAL, f"{P}network.egressCidrs": '["10.0.0.0/33"]'}) == [
        "Pulumi.dev.yaml: mlops-platform:network.egressCidrs must be a list of CIDR blocks; '10.0.0.0/33' is not "
        'one; got "[\\"10.0.0.0/33\\"]"'
    ]


def test_efs_access_points_need_a_file_system() -> None:
    efs = {**PROD, f"{P}nfs.mode": "efsAccessPoint"}
    (problem,) = problems_of("prod", efs)
    assert problem.startswith("Pulumi.prod.yaml: mlops-platform:nfs.efsFileSystemId is required when nfs.mode is")
    named = load("prod", {**efs, f"{P}nfs.efsFileSystemId": "fs-0123456789abcdef0"})
    derived = load("prod", {**efs, f"{P}nfs.server": "fs-0123456789abcdef0.efs.eu-west-1.amazonaws.com"})
    assert named.nfs.file_system_id == derived.nfs.file_system_id == "fs-0123456789abcdef0"
    assert load("dev", MINIMAL).nfs.mode == "nfs"
    cfg = read_stack_file("prod")
    shipped = load_settings("prod", cfg.config, set(cfg.secret_keys), cfg.source)
    assert (shipped.nfs.mode, shipped.nfs.file_system_id) == ("efsAccessPoint", "fs-0123456789abcdef0")
