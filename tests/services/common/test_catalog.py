"""The model catalog's validation: every mistake is refused naming its key path, derived names are valid and
distinct Kubernetes/Airflow names, GPU profiles yield GPU resources and placement, the JSON form round-trips."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from services.common.catalog import (
    DEFAULT_PROFILES,
    CatalogError,
    Gate,
    cron_problem,
    names,
    parse_catalog,
)

IRIS: dict[str, Any] = {
    "training": {"entrypoint": "iris_model.train:train", "params": {"C": 1.0}, "schedule": "0 3 * * 1"},
    "gate": {"metric": "test_accuracy", "direction": "max", "threshold": 0.8},
    "serving": {"routing": {"mode": "fixed", "alias": "champion"}},
}


def _problems(models: dict[str, Any], profiles: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    with pytest.raises(CatalogError) as info:
        parse_catalog(models, profiles)
    return info.value.problems


def _with(path: str, value: Any, base: dict[str, Any] = IRIS) -> dict[str, Any]:
    entry = copy.deepcopy(base)
    *parents, last = path.split(".")
    node = entry
    for part in parents:
        node = node.setdefault(part, {})
    if value is _DROP:
        node.pop(last)
    else:
        node[last] = value
    return entry


_DROP = object()


def test_a_valid_catalog_parses_with_the_shipped_profiles() -> None:
    catalog = parse_catalog({"iris-classifier": IRIS})
    assert set(catalog.profiles) == {"small", "medium", "gpu"}
    spec = catalog.models["iris-classifier"]
    assert spec.serving.aliases == ("champion", "challenger")
    assert spec.gate.direction == "max"


@pytest.mark.parametrize(
    ("path", "value", "where", "says"),
    [
        ("gate.metric", _DROP, "models.m.gate.metric", "Field required"),
        ("gate.direction", "up", "models.m.gate.direction", "'max' or 'min'"),
        ("training.profile", "huge", "models.m.training.profile", "unknown profile 'huge'"),
        ("serving.profile", "huge", "models.m.serving.profile", "unknown profile 'huge'"),
        ("training.schedule", "every day", "models.m.training.schedule", "cron"),
        ("training.schedule", "61 * * * *", "models.m.training.schedule", "minute field"),
        ("training.entrypoint", "not an entrypoint", "models.m.training.entrypoint", "package.module:function"),
        ("training.entrypoint", [], "models.m.training.entrypoint", "non-empty list"),
        ("serving.routing", {"mode": "fixed", "alias": "other"}, "models.m.serving", "does not load"),
        ("serving.minReplicas", 5, "models.m.serving", "minReplicas must be <= maxReplicas"),
        ("serving.workers", 8, "models.m.serving.workers", "memory limit of at least 2560Mi"),
        ("training.surprise", 1, "models.m.training.surprise", "Extra inputs are not permitted"),
        ("training.source.subdir", "../escape", "models.m.training.source.subdir", "inside the repository"),
        ("training.alias", "shadow", "models.m", "training.alias: 'shadow' is not an alias the model's serving loads"),
        ("training.alias", "no spaces", "models.m.training.alias", "String should match pattern"),
    ],
)
def test_each_mistake_is_refused_naming_its_key(path: str, value: Any, where: str, says: str) -> None:
    problems = _problems({"m": _with(path, value)})
    assert any(p == where and says in msg for p, msg in problems), problems


def test_model_names_must_be_registered_model_names_and_distinct_kubernetes_names() -> None:
    problems = _problems({"bad/name": IRIS})
    assert ("models.bad/name", problems[0][1]) in problems and "registered-model name" in problems[0][1]
    problems = _problems({"Fraud_Model": IRIS, "fraud-model": IRIS})
    assert any("same Kubernetes name 'fraud-model'" in msg for _, msg in problems), problems
    problems = _problems({"9lives": IRIS})
    assert any("must start with a letter" in msg for _, msg in problems), problems
    assert _problems({})[0][0] == "models"


def test_a_gpu_profile_needs_gpu_placement() -> None:
    profiles = copy.deepcopy(DEFAULT_PROFILES)
    del profiles["gpu"]["nodeSelector"]
    del profiles["gpu"]["tolerations"]
    problems = _problems({"m": IRIS}, profiles)
    assert any(p == "profiles.gpu" and "GPU node selection" in msg for p, msg in problems), problems


def test_a_gpu_profile_gives_gpu_requests_limits_selector_and_tolerations() -> None:
    catalog = parse_catalog({"m": _with("serving.profile", "gpu")})
    gpu = catalog.profiles["gpu"]
    resources = gpu.k8s_resources()
    assert resources["limits"]["nvidia.com/gpu"] == "1" == resources["requests"]["nvidia.com/gpu"]
    assert gpu.node_selector == {"nvidia.com/gpu.present": "true"}
    assert gpu.k8s_tolerations() == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def test_derived_names_are_valid_and_stable() -> None:
    assert names("Iris.Classifier_v2") == {
        "slug": "iris-classifier-v2",
        "k8s": "model-iris-classifier-v2",
        "dag_id": "train_iris_classifier_v2",
        "rollback_dag_id": "rollback_iris_classifier_v2",
        "experiment": "mlops/Iris.Classifier_v2",
    }


def test_the_airflow_form_is_json_and_carries_every_setting() -> None:
    catalog = parse_catalog({"iris-classifier": IRIS})
    form = catalog.for_airflow(serving_url={"iris-classifier": "http://model-iris-classifier.ns.svc:8000"})
    again = json.loads(json.dumps(form))
    entry = again["models"]["iris-classifier"]
    assert entry["gate"] == {"metric": "test_accuracy", "direction": "max", "threshold": 0.8, "minImprovement": None}
    assert entry["training"]["params"] == {"C": 1.0}
    assert entry["serving"]["routing"] == {"mode": "fixed", "alias": "champion"}
    assert entry["names"]["dag_id"] == "train_iris_classifier"
    assert entry["serving_url"] == "http://model-iris-classifier.ns.svc:8000"
    assert set(again["profiles"]) == {"small", "medium", "gpu"}
    # what Airflow receives parses back into the same catalog
    reparsed = parse_catalog(
        {k: {f: v[f] for f in ("training", "gate", "serving")} for k, v in again["models"].items()},
        again["profiles"],
    )
    assert reparsed == catalog


@pytest.mark.parametrize(
    ("expression", "ok"),
    [
        ("0 3 * * 1", True),
        ("*/15 * * * *", True),
        ("0 0 1-15 jan,jul mon-fri", True),
        ("@daily", True),
        ("0 3 * *", False),
        ("0 24 * * *", False),
        ("0 0 0 * *", False),
        ("0 0 * 13 *", False),
        ("5-1 * * * *", False),
        ("*/0 * * * *", False),
    ],
)
def test_cron_expressions(expression: str, ok: bool) -> None:
    assert (cron_problem(expression) is None) is ok


def test_gate_direction() -> None:
    high = Gate(metric="acc", direction="max", threshold=0.9)
    low = Gate(metric="rmse", direction="min", threshold=5.0)
    assert high.passes_threshold(0.95) and not high.passes_threshold(0.5)
    assert low.passes_threshold(4.0) and not low.passes_threshold(6.0)
    assert high.better(0.95, 0.9) > 0 > low.better(6.0, 5.0)
