"""The platform API's settings group (`api.*`): environment defaults (one replica in dev, two in prod), numbers with
decimals, the pods' requests and limits as validated {cpu, memory} objects, and every mistake refused naming the
stack file and the key; the API image comes from images.api, and its absence is reported naming that key."""

from __future__ import annotations

import json
import re

import pytest

from harness.run import ROOT
from stacks.settings import PROJECT, SettingsError, declared, load_settings, settings_table
from tests.stacks.test_settings import MINIMAL, PROD_NETWORK, problems_of

P = f"{PROJECT}:"


def test_defaults_by_environment() -> None:
    dev = load_settings("dev", MINIMAL).api
    prod = load_settings("prod", {**MINIMAL, **PROD_NETWORK}).api
    assert (dev.replicas, prod.replicas) == (1, 2)
    assert dev.airflow_user == "mlops-api"
    assert (dev.reconcile_seconds, dev.events_poll_seconds) == (5.0, 1.0)
    assert dev.requests == {"cpu": "100m", "memory": "256Mi"}
    assert dev.limits == {"cpu": "1", "memory": "512Mi"}


def test_values_are_parsed_to_their_types() -> None:
    api = load_settings(
        "dev",
        {
            **MINIMAL,
            f"{P}api.replicas": "3",
            f"{P}api.reconcileSeconds": "2.5",
            f"{P}api.eventsPollSeconds": 0.25,
            f"{P}api.airflowUser": "platform.api",
            # a YAML number is a quantity too
            f"{P}api.limits": json.dumps({"cpu": 2, "memory": "1Gi"}),
        },
    ).api
    assert (api.replicas, api.reconcile_seconds, api.events_poll_seconds) == (3, 2.5, 0.25)
    assert api.airflow_user == "platform.api"
    assert api.limits == {"cpu": "2", "memory": "1Gi"}


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("api.replicas", "0", "must be >= 1"),
        ("api.replicas", "11", "must be <= 10"),
        ("api.replicas", "1.5", "must be a whole number"),
        ("api.reconcileSeconds", "0.4", "must be >= 0.5"),
        ("api.reconcileSeconds", "301", "must be <= 300"),
        ("api.reconcileSeconds", "soon", "must be a number"),
        ("api.reconcileSeconds", True, "must be a number"),
        ("api.eventsPollSeconds", "0.05", "must be >= 0.1"),
        ("api.eventsPollSeconds", "inf", "must be a finite number"),
        ("api.airflowUser", "mlops api", "must match"),
        ("api.requests", json.dumps({"cpu": "100m"}), "must be an object with exactly cpu and memory"),
        ("api.requests", json.dumps({"cpu": "1", "memory": "1Gi", "gpu": "1"}), "exactly cpu and memory"),
        ("api.limits", json.dumps({"cpu": "one", "memory": "1Gi"}), "cpu must be a Kubernetes quantity"),
        ("api.limits", "[1, 2]", "must be an object"),
    ],
)
def test_each_mistake_names_the_file_and_key(key: str, value: object, expected: str) -> None:
    problems = problems_of("dev", {**MINIMAL, f"{P}{key}": value})  # type: ignore[dict-item]
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"Pulumi.dev.yaml: {P}{key} ")
    assert expected in problems[0]


def test_memory_request_above_the_limit_is_refused() -> None:
    config = {**MINIMAL, f"{P}api.requests": json.dumps({"cpu": "100m", "memory": "1Gi"})}
    assert problems_of("dev", config) == [
        "Pulumi.dev.yaml: mlops-platform:api.requests memory 1Gi is above api.limits memory 512Mi"
    ]


def test_the_api_image_is_images_api_and_required() -> None:
    dev = load_settings("dev", {**MINIMAL, f"{P}images.registry": "registry.example.com/ml"})
    assert dev.api_image == "registry.example.com/ml/api:0.1.0"
    prod = load_settings("prod", {**MINIMAL, **PROD_NETWORK})  # no images.api: no default in prod
    with pytest.raises(SettingsError) as info:
        _ = prod.api_image
    assert info.value.problems == [
        "Pulumi.prod.yaml: mlops-platform:images.api is required (the platform API image, services/api/Dockerfile)"
    ]


def test_the_group_is_documented() -> None:
    declared_api = {key for key, _, _ in declared() if key.startswith("api.")}
    in_api_doc = set(re.findall(r"`(api\.[A-Za-z]+)`", (ROOT / "docs" / "api.md").read_text()))
    assert in_api_doc == declared_api, "docs/api.md names exactly the api.* settings"
    table = settings_table()
    for key in ("replicas", "airflowUser", "reconcileSeconds", "eventsPollSeconds", "requests", "limits"):
        assert f"`{P}api.{key}`" in table
    assert '| `mlops-platform:api.requests` | object | `{"cpu": "100m", "memory": "256Mi"}` |' in table
    assert "| `mlops-platform:api.reconcileSeconds` | float | `5.0` |" in table


def test_token_settings_defaults_types_and_cross_checks() -> None:
    dev = load_settings("dev", MINIMAL).api
    assert (dev.token_ttl_days, dev.token_max_ttl_days) == (30.0, 90.0)
    assert (dev.rate_limit_per_second, dev.rate_limit_burst) == (20.0, 40)
    assert (dev.admin_token_generation, dev.admin_token_keep_previous) == (1, False)
    api = load_settings(
        "dev",
        {
            **MINIMAL,
            f"{P}api.tokenTtlDays": "0.5",
            f"{P}api.tokenMaxTtlDays": "7",
            f"{P}api.rateLimitPerSecond": "2.5",
            f"{P}api.rateLimitBurst": "5",
            f"{P}api.adminTokenGeneration": "2",
            f"{P}api.adminTokenKeepPrevious": "true",
        },
    ).api
    assert (api.token_ttl_days, api.token_max_ttl_days, api.rate_limit_per_second, api.rate_limit_burst) == (
        0.5,
        7.0,
        2.5,
        5,
    )
    assert (api.admin_token_generation, api.admin_token_keep_previous) == (2, True)
    too_long = {**MINIMAL, f"{P}api.tokenTtlDays": "100", f"{P}api.tokenMaxTtlDays": "90"}
    assert problems_of("dev", too_long) == [
        "Pulumi.dev.yaml: mlops-platform:api.tokenTtlDays 100 is above api.tokenMaxTtlDays 90"
    ]
    nothing_to_keep = {**MINIMAL, f"{P}api.adminTokenKeepPrevious": "true"}
    (problem,) = problems_of("dev", nothing_to_keep)
    assert problem.startswith("Pulumi.dev.yaml: mlops-platform:api.adminTokenKeepPrevious needs a previous")


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("api.tokenTtlDays", "0", "must be >= 0.01"),
        ("api.tokenMaxTtlDays", "3651", "must be <= 3650"),
        ("api.rateLimitPerSecond", "0", "must be >= 0.1"),
        ("api.rateLimitBurst", "0", "must be >= 1"),
        ("api.rateLimitBurst", "2.5", "must be a whole number"),
        ("api.adminTokenGeneration", "0", "must be >= 1"),
        ("api.adminTokenKeepPrevious", "maybe", "must be"),
    ],
)
def test_token_setting_mistakes_name_the_file_and_key(key: str, value: str, expected: str) -> None:
    problems = problems_of("dev", {**MINIMAL, f"{P}{key}": value})
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"Pulumi.dev.yaml: {P}{key} ") and expected in problems[0]
