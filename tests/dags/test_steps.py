"""Units of the task bodies that the real runs cannot reach: registration states and serving's answers."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from mlops_tasks import registry, serving, steps
from mlops_tasks.errors import PermanentError
from mlops_tasks.settings import Endpoints

from services.common import contract


@pytest.fixture
def endpoints_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(contract.MLFLOW_TRACKING_URI.name, "http://mlflow.invalid")
    monkeypatch.setenv(contract.SERVING_URL.name, "http://serving.invalid")


@pytest.mark.parametrize(
    ("status", "expected"),
    [(registry.READY, True), (registry.PENDING_REGISTRATION, False)],
)
def test_registration_done_follows_the_version_status(
    endpoints_env: None, monkeypatch: pytest.MonkeyPatch, status: str, expected: bool
) -> None:
    monkeypatch.setattr(registry, "version_status", lambda c, m, v: status)
    assert steps.registration_done("m", "3") is expected


@pytest.mark.parametrize(
    ("status", "message"), [(registry.FAILED_REGISTRATION, "FAILED_REGISTRATION"), (None, "does not exist")]
)
def test_failed_or_missing_registration_fails_without_retry(
    endpoints_env: None, monkeypatch: pytest.MonkeyPatch, status: str | None, message: str
) -> None:
    monkeypatch.setattr(registry, "version_status", lambda c, m, v: status)
    with pytest.raises(PermanentError, match=message):
        steps.registration_done("m", "3")


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


def test_reload_must_report_the_expected_version(endpoints_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    answer = {"alias": "champion", "outcome": "unchanged", "version": "4"}
    monkeypatch.setattr(serving, "reload", lambda endpoints, alias: answer)
    assert steps.reload_serving("champion", "4") == answer
    with pytest.raises(PermanentError, match="serves version 4, not 5"):
        steps.reload_serving("champion", "5")


def test_verify_needs_consecutive_answers_from_the_new_version(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter(["3", "4", "3", "4", "4", "4"])
    calls: list[str] = []

    def predict(url: str, rows: Any, timeout_s: float = 30.0, alias: str | None = None) -> dict[str, Any]:
        assert alias == "champion"  # the variant itself, not the routed /predict
        version = next(answers)
        calls.append(version)
        return {"alias": "champion", "version": version, "predictions": [0]}

    monkeypatch.setattr(serving, "predict", predict)
    endpoints = Endpoints("http://mlflow", "http://serving", "http://serving", None)
    answer = serving.wait_until_served(endpoints, "champion", "4", [], timeout_s=30, interval_s=0)
    assert answer["version"] == "4" and calls == ["3", "4", "3", "4", "4", "4"]


def test_verify_gives_up_at_the_deadline_with_the_last_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        serving, "predict", lambda url, rows, timeout_s=30.0, alias=None: {"alias": "champion", "version": "3"}
    )
    endpoints = Endpoints("http://mlflow", "http://serving", "http://serving", None)
    with pytest.raises(PermanentError, match=r"did not answer with champion version 4 within 0 s.*'version': '3'"):
        serving.wait_until_served(endpoints, "champion", "4", [], timeout_s=0, interval_s=0)
