"""Units of the task bodies that the real runs cannot reach: the run's params checked with the runner's rules
(naming the param), the champion handed to the runner, a broken training contract made permanent, registration
states and serving's answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from mlops_tasks import registry, runner, serving, steps
from mlops_tasks.endpoints import Endpoints
from mlops_tasks.errors import PermanentError

from devstack.catalog import DIABETES, IRIS
from services.common import contract
from services.common.catalog_file import CatalogModel
from tests.dags.conftest import catalog_entries


@pytest.fixture
def entries(monkeypatch: pytest.MonkeyPatch) -> dict[str, CatalogModel]:
    monkeypatch.setenv(contract.MLFLOW_TRACKING_URI.name, "http://mlflow.invalid")
    return catalog_entries({IRIS: "http://iris.invalid", DIABETES: "http://diabetes.invalid"})


def test_each_model_has_its_own_serving_endpoints(entries: dict[str, CatalogModel]) -> None:
    iris, diabetes = Endpoints.for_model(entries[IRIS]), Endpoints.for_model(entries[DIABETES])
    assert (iris.serving_url, iris.reload_url) == ("http://iris.invalid", "http://iris.invalid")
    assert diabetes.serving_url == "http://diabetes.invalid" and diabetes.tracking_uri == "http://mlflow.invalid"


@pytest.mark.parametrize(
    ("params", "conf", "expected"),
    [
        ({"C": 2, "max_iter": 50}, {}, {"C": 2.0, "max_iter": 50}),  # an int for a float param is that float
        ({"C": 1.0, "max_iter": 200, "alias": "champion"}, {"alias": "champion", "dataset": None}, None),
    ],
)
def test_training_params_are_the_catalogs_overridden_by_the_run(
    entries: dict[str, CatalogModel], params: dict[str, Any], conf: dict[str, Any], expected: dict[str, Any] | None
) -> None:
    merged = steps.training_params(entries[IRIS], params, conf)
    assert merged == (expected or {"C": 1.0, "max_iter": 200})


@pytest.mark.parametrize(
    ("params", "conf", "message"),
    [
        ({"C": "strong"}, {"C": "strong"}, "param 'C' must be float like its default 1.0; got str 'strong'"),
        ({"max_iter": 2.5}, {"max_iter": 2.5}, "param 'max_iter' must be int like its default 200; got float 2.5"),
        ({}, {"gamma": 1}, "param 'gamma' is not one of the model's params (known: C, max_iter)"),
    ],
)
def test_a_bad_param_fails_the_run_naming_it(
    entries: dict[str, CatalogModel], params: dict[str, Any], conf: dict[str, Any], message: str
) -> None:
    with pytest.raises(PermanentError) as info:
        steps.training_params(entries[IRIS], params, conf)
    assert message in str(info.value) and "train_iris_classifier" in str(info.value)


def test_an_alias_the_models_serving_does_not_load_is_refused(entries: dict[str, CatalogModel]) -> None:
    with pytest.raises(PermanentError, match="param 'alias' is 'shadow'; the model's serving loads only champion"):
        steps.train(entries[IRIS], {"alias": "shadow"}, {}, "manual__1")


def test_train_hands_the_champion_to_the_runner_and_a_broken_contract_is_permanent(
    entries: dict[str, CatalogModel], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[dict[str, Any]] = []
    holders = iter(["4", None])
    monkeypatch.setattr(registry, "client", lambda uri: object())
    monkeypatch.setattr(registry, "alias_holder", lambda c, model, alias: next(holders))

    def train(model: str, spec: Any, params: Any, tracking_uri: str, **kwargs: Any) -> runner.Outcome:
        calls.append({"model": model, "params": params, **kwargs})
        if len(calls) == 2:
            raise runner.TrainingContractError(["no model was logged in the run"], "r2")
        return runner.Outcome("r1", "models:/m-1", {"test_rmse": 55.0, "champion.test_rmse": 56.0}, "m-1")

    monkeypatch.setattr(runner, "train", train)
    params = {"alpha": 0.5, "alias": "champion", "dataset": None}
    trained = steps.train(entries[DIABETES], params, {"alpha": 0.5}, "manual__1", platform_root=tmp_path)
    assert calls[0]["champion_model_uri"] == f"models:/{DIABETES}/4" and calls[0]["params"] == {"alpha": 0.5}
    assert calls[0]["workdir"] == tmp_path and calls[0]["dag_run_id"] == "manual__1"
    assert trained["champion_version"] == "4" and trained["model_uri"] == "models:/m-1"
    assert steps.evaluate(entries[DIABETES], trained)["champion"] == 56.0

    with pytest.raises(PermanentError, match="training run r2: no model was logged in the run"):
        steps.train(entries[DIABETES], params, {}, "manual__2", platform_root=tmp_path)
    assert calls[1]["champion_model_uri"] is None  # no holder: no champion


def test_a_challenger_is_trained_against_the_champion_not_the_previous_challenger(
    entries: dict[str, CatalogModel], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    holders = {"champion": "4", "challenger": "6"}
    asked: list[str] = []
    monkeypatch.setattr(registry, "client", lambda uri: object())
    monkeypatch.setattr(registry, "alias_holder", lambda c, model, alias: asked.append(alias) or holders[alias])
    handed: list[str | None] = []

    def train(model: str, spec: Any, params: Any, tracking_uri: str, **kwargs: Any) -> runner.Outcome:
        handed.append(kwargs["champion_model_uri"])
        return runner.Outcome("r1", "models:/m-1", {"test_rmse": 55.0, "champion.test_rmse": 56.0}, "m-1")

    monkeypatch.setattr(runner, "train", train)
    params = {"alpha": 0.5, "alias": "challenger", "dataset": None}
    trained = steps.train(entries[DIABETES], params, {}, "manual__1", platform_root=tmp_path)
    assert asked == ["champion"] and handed == [f"models:/{DIABETES}/4"]
    assert (trained["alias"], trained["champion_version"]) == ("challenger", "4")


def test_evaluate_names_a_missing_champion_metric(entries: dict[str, CatalogModel]) -> None:
    trained = {"run_id": "r1", "metrics": {"test_rmse": 55.0}, "champion_version": "2"}
    with pytest.raises(PermanentError, match=r"training run r1: the metric 'champion\.test_rmse' was not logged"):
        steps.evaluate(entries[DIABETES], trained)


@pytest.mark.parametrize(
    ("status", "expected"),
    [(registry.READY, True), (registry.PENDING_REGISTRATION, False)],
)
def test_registration_done_follows_the_version_status(
    entries: dict[str, CatalogModel], monkeypatch: pytest.MonkeyPatch, status: str, expected: bool
) -> None:
    monkeypatch.setattr(registry, "version_status", lambda c, m, v: status)
    assert steps.registration_done(entries[IRIS], "3") is expected


@pytest.mark.parametrize(
    ("status", "message"), [(registry.FAILED_REGISTRATION, "FAILED_REGISTRATION"), (None, "does not exist")]
)
def test_failed_or_missing_registration_fails_without_retry(
    entries: dict[str, CatalogModel], monkeypatch: pytest.MonkeyPatch, status: str | None, message: str
) -> None:
    monkeypatch.setattr(registry, "version_status", lambda c, m, v: status)
    with pytest.raises(PermanentError, match=message):
        steps.registration_done(entries[IRIS], "3")


def _response(status: int, body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body or {"detail": "x"}, request=httpx.Request("POST", "http://s/x"))


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_of_serving_are_permanent(status: int) -> None:
    with pytest.raises(PermanentError, match=f"HTTP {status}"):
        serving._raise_for(_response(status), "the reload of champion")


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503])
def test_server_errors_and_throttling_are_retried(status: int) -> None:
    with pytest.raises(serving.ServingUnavailable, match=f"HTTP {status}"):
        serving._raise_for(_response(status), "the reload of champion")


def test_reload_goes_to_the_models_own_serving_and_must_report_the_expected_version(
    entries: dict[str, CatalogModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    answer = {"alias": "champion", "outcome": "unchanged", "version": "4"}
    urls: list[str] = []

    def reload(endpoints: Endpoints, alias: str) -> dict[str, Any]:
        urls.append(endpoints.reload_url)
        return answer

    monkeypatch.setattr(serving, "reload", reload)
    assert steps.reload_serving(entries[DIABETES], "champion", "4") == answer
    with pytest.raises(PermanentError, match="serving of diabetes-regression reloaded champion but serves version 4"):
        steps.reload_serving(entries[DIABETES], "champion", "5")
    assert urls == ["http://diabetes.invalid"] * 2


def test_verify_needs_consecutive_answers_from_the_new_version(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter(["3", "4", "3", "4", "4", "4"])
    calls: list[str] = []

    def predict(
        url: str, rows: Any, timeout_s: float = 30.0, alias: str | None = None, token: str | None = None
    ) -> dict[str, Any]:
        assert alias == "champion"  # the variant itself, not the routed /predict
        assert token == "admin-token"  # the pipelines' admin token: accepted where the model requires auth
        version = next(answers)
        calls.append(version)
        return {"alias": "champion", "version": version, "predictions": [0]}

    monkeypatch.setattr(serving, "predict", predict)
    endpoints = Endpoints("http://mlflow", "http://serving", "http://serving", "admin-token")
    answer = serving.wait_until_served(endpoints, "champion", "4", [], timeout_s=30, interval_s=0)
    assert answer["version"] == "4" and calls == ["3", "4", "3", "4", "4", "4"]


def test_verify_gives_up_at_the_deadline_with_the_last_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        serving,
        "predict",
        lambda url, rows, timeout_s=30.0, alias=None, token=None: {"alias": "champion", "version": "3"},
    )
    endpoints = Endpoints("http://mlflow", "http://serving", "http://serving", None)
    with pytest.raises(PermanentError, match=r"did not answer with champion version 4 within 0 s.*'version': '3'"):
        serving.wait_until_served(endpoints, "champion", "4", [], timeout_s=0, interval_s=0)
