"""DAG integrity: the one DAG file yields exactly `train_<model>` and `rollback_<model>` per model of the catalog it
is given (2 and 3 models), without import errors or heavy imports, with owners, retries, tags, failure callbacks,
each model's params, aliases and schedule, and the structure the pipeline needs; an unset or invalid catalog is an
import error that names the variable or the problem."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from devstack.catalog import DIABETES, IRIS, catalog_document, extended, local_catalog
from services.common import contract
from tests.dags import inspect_dags
from tests.dags.conftest import TRAINING_CHAIN

DAG_FILE = "model_pipelines.py"
TWO = {"train_iris_classifier", "rollback_iris_classifier", "train_diabetes_regression", "rollback_diabetes_regression"}
THREE = TWO | {"train_text_embedder", "rollback_text_embedder"}
# A third model unlike the examples: another repository and ref, a command entrypoint, a GPU profile, a schedule,
# params of every type, canary serving.
EMBEDDER = {
    "training": {
        "source": {"repo": "https://github.com/example/models", "ref": "v1.2.0", "subdir": "embedder"},
        "entrypoint": ["python", "train.py", "--epochs", "3"],
        "profile": "gpu",
        "params": {"lr": 0.001, "epochs": 3, "optimizer": "adam", "warm_start": False, "seed": None},
        "schedule": "0 3 * * 1",
        "timeoutMinutes": 240,
    },
    "gate": {"metric": "val_loss", "direction": "min"},
    "serving": {
        "aliases": ["champion", "challenger"],
        "routing": {"mode": "canary", "primary": "champion", "challenger": "challenger", "percent": 10},
        "profile": "medium",
        "workers": 1,
    },
}
URLS = {name: f"http://model-{name}.serving.svc:8000" for name in (IRIS, DIABETES, "text-embedder")}


def inspect(tmp: Path, catalog_text: str | None) -> dict[str, Any]:
    data = inspect_dags.inspect(tmp, catalog_text)
    # Measured, reported, not asserted (timing thresholds make flaky tests on a shared machine).
    print(f"Task SDK import: {data['sdk_import_seconds']:.2f} s; DAG files: {data['import_seconds']}")
    return data


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The two examples, as `make demo` runs them."""
    return inspect(tmp_path_factory.mktemp("two"), json.dumps(catalog_document(local_catalog(), URLS)))


@pytest.fixture(scope="module")
def report3(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    catalog = extended(local_catalog(), {"text-embedder": EMBEDDER})
    return inspect(tmp_path_factory.mktemp("three"), json.dumps(catalog_document(catalog, URLS)))


def _trains(report: dict[str, Any]) -> list[str]:
    return [dag_id for dag_id in report["dags"] if dag_id.startswith("train_")]


def test_one_file_yields_two_dags_per_model(report: dict[str, Any], report3: dict[str, Any]) -> None:
    for data, expected in ((report, TWO), (report3, THREE)):
        assert data["import_errors"] == {} and data["direct_import_errors"] == {}
        assert set(data["dags"]) == expected
        assert set(data["import_seconds"]) == {DAG_FILE}
        assert {Path(dag["fileloc"]).name for dag in data["dags"].values()} == {DAG_FILE}


def test_dag_file_does_no_heavy_imports(report3: dict[str, Any]) -> None:
    # MLflow, scikit-learn, pandas and httpx are imported inside the tasks, never at parse time.
    assert report3["heavy_modules_after_import"] == []


def test_owners_retries_tags_and_failure_callbacks(report3: dict[str, Any]) -> None:
    for dag_id, dag in report3["dags"].items():
        assert "mlops" in dag["tags"] and len(dag["tags"]) >= 3, dag_id  # mlops, the kind, the model
        assert dag["max_active_runs"] == 1 and dag["catchup"] is False, dag_id
        for task_id, task in dag["tasks"].items():
            assert task["owner"] == "ml-platform", (dag_id, task_id)
            if task_id in ("fail_run", "resolve_target"):
                # a watcher that only reports, and a refusal that retrying cannot change
                assert task["retries"] == 0, (dag_id, task_id)
            else:
                assert task["retries"] >= 2, (dag_id, task_id)
            assert task["has_failure_callback"] is (task_id != "fail_run"), (dag_id, task_id)


def test_training_dag_structure(report3: dict[str, Any]) -> None:
    for dag_id in _trains(report3):
        tasks = report3["dags"][dag_id]["tasks"]
        for upstream, downstream in itertools.pairwise(TRAINING_CHAIN):
            assert upstream in tasks[downstream]["upstream"], (dag_id, upstream, downstream)
        assert tasks["quality_gate"]["operator"] == "_ShortCircuitDecoratedOperator"
        sensor = tasks["wait_until_ready"]
        assert sensor["mode"] == "reschedule"
        assert 0 < float(sensor["timeout"]) <= 3600  # bounded
        assert tasks["rollback"]["trigger_rule"] == "one_failed"
        assert set(tasks["rollback"]["upstream"]) == {"promote", "reload_serving", "verify_serving"}
        assert tasks["fail_run"]["trigger_rule"] == "one_failed"
        assert set(tasks["fail_run"]["upstream"]) == set(tasks) - {"fail_run"}
        # no Kubernetes client here: the training task runs in-process, without a pod override
        assert tasks["train"]["executor_config"] == []


def test_rollback_dag_structure(report3: dict[str, Any]) -> None:
    for dag_id in (d for d in report3["dags"] if d.startswith("rollback_")):
        dag = report3["dags"][dag_id]
        assert set(dag["params"]) == {"alias", "target_version", "verify_timeout_seconds"}
        assert dag["schedule"] == "NullTimetable"
        chain = ["resolve_target", "move_alias", "reload_serving", "verify_serving"]
        for upstream, downstream in itertools.pairwise(chain):
            assert upstream in dag["tasks"][downstream]["upstream"], (dag_id, upstream, downstream)


def test_reload_and_verify_come_from_the_shared_factory(report3: dict[str, Any]) -> None:
    # Every DAG ends with the tasks of mlops_tasks.dag_tasks.reload_and_verify: same ids, same order, and the
    # param that verify_serving reads is declared.
    for dag in report3["dags"].values():
        assert dag["tasks"]["verify_serving"]["upstream"] == sorted(
            {"reload_serving", *dag["tasks"]["reload_serving"]["upstream"]}
        )
        assert "verify_timeout_seconds" in dag["params"]


def test_each_model_gets_its_params_aliases_schedule_and_timeout(
    report: dict[str, Any], report3: dict[str, Any]
) -> None:
    iris = report["dags"]["train_iris_classifier"]
    assert iris["param_defaults"] == {
        "C": 1.0,
        "max_iter": 200,
        "alias": "champion",
        "dataset": None,
        "verify_timeout_seconds": 120,
    }
    assert iris["param_schemas"]["C"]["type"] == "number" and iris["param_schemas"]["max_iter"]["type"] == "integer"
    assert iris["param_schemas"]["alias"]["enum"] == ["champion", "challenger"]
    assert iris["schedule"] == "NullTimetable"  # triggered only
    assert report["dags"]["train_diabetes_regression"]["param_defaults"]["alpha"] == 0.1

    embedder = report3["dags"]["train_text_embedder"]
    schemas = embedder["param_schemas"]
    assert [schemas[p]["type"] for p in ("lr", "epochs", "optimizer", "warm_start")] == [
        "number",
        "integer",
        "string",
        "boolean",
    ]
    assert set(schemas["seed"]["type"]) == {"null", "string", "number", "boolean"}
    assert embedder["schedule_expression"] == "0 3 * * 1"  # the catalog's schedule
    assert embedder["tasks"]["train"]["execution_timeout"] == (240 + 15) * 60  # timeoutMinutes and a margin
    assert "text-embedder" in embedder["tags"]


def test_an_unset_or_invalid_catalog_is_an_import_error_naming_it(tmp_path: Path) -> None:
    unset = inspect(tmp_path / "unset", None)
    assert unset["dags"] == {}
    [error] = unset["import_errors"].values()
    assert f"environment variable {contract.MODEL_CATALOG.name} is not set" in error

    document = catalog_document(extended(local_catalog(), {"text-embedder": EMBEDDER}), URLS)
    document["models"]["iris-classifier"]["gate"]["direction"] = "up"
    del document["models"]["text-embedder"]["serving_url"]
    document["models"]["diabetes-regression"]["training"]["params"]["alias"] = "x"
    invalid = inspect(tmp_path / "invalid", json.dumps(document))
    assert invalid["dags"] == {}  # no half catalog: every model's DAGs or none
    [error] = invalid["import_errors"].values()
    assert f"the model catalog {contract.MODEL_CATALOG.name}=" in error
    assert "models.iris-classifier.gate.direction: Input should be 'max' or 'min'" in error
    assert "models.text-embedder.serving_url: must be the model's serving URL; got None" in error
    assert "models.diabetes-regression.training.params.alias: is a param of the platform's training DAG" in error

    broken = inspect(tmp_path / "json", '{"version": 1, "models": ')
    [error] = broken["import_errors"].values()
    assert "is not valid JSON" in error
