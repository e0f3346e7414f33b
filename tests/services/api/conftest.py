"""Fixtures of the API tests: the API as real processes (the Dockerfile's command) on a fresh PostgreSQL
database, against stand-ins for Airflow and MLflow (`fakes`) or the real ones.

- `catalog_file`: a catalog JSON (`Catalog.for_airflow()`) with two models;
- `fake_airflow`, `fake_mlflow`: local HTTP servers the test drives;
- `database`: a fresh database per test (dropped afterwards);
- `start_api(...)`: `python -m services.api` on a free port (`devstack.api.api_process`), stopped at the end of
  the test;
- `SseReader`: follows an event stream in a thread and collects the events.

Fixtures that need PostgreSQL FAIL (never skip) when it does not answer.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.api import ApiProcess, api_process, parse_sse
from devstack.api import token_for as token_for  # the API tests import it from here
from devstack.postgres import fresh_database
from devstack.procs import DevstackError
from services.common import contract
from services.common.catalog import names, parse_catalog
from tests.services.api.fakes import FakeAirflow, FakeMlflow

MODELS: dict[str, Any] = {
    "iris-classifier": {
        "training": {"entrypoint": "iris_model.train:train", "params": {"C": 1.0, "max_iter": 200, "solver": "lbfgs"}},
        "gate": {"metric": "test_accuracy", "threshold": 0.9},
    },
    "diabetes-regressor": {
        "training": {"entrypoint": "diabetes_model.train:train", "params": {"alpha": 0.5}},
        "gate": {"metric": "rmse", "direction": "min"},
    },
}


# No serving process listens there: each model's serving readiness is null ("did not answer").
SERVING_URL = "http://127.0.0.1:9"


def catalog_document(models: Mapping[str, Any] = MODELS, serving: Mapping[str, str] | None = None) -> dict[str, Any]:
    catalog = parse_catalog(models)
    urls = serving or {name: f"{SERVING_URL}/{names(name)['slug']}" for name in models}
    return catalog.for_airflow(**{contract.CATALOG_SERVING_URL_KEY: urls})


def dag_ids(models: Mapping[str, Any] = MODELS) -> list[str]:
    return [names(m)[k] for m in models for k in ("dag_id", "rollback_dag_id")]


@pytest.fixture
def catalog_file(tmp_path: Path) -> Path:
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(catalog_document()))
    return path


@pytest.fixture
def fake_airflow() -> Iterator[FakeAirflow]:
    server = FakeAirflow(dag_ids())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fake_mlflow() -> Iterator[FakeMlflow]:
    server = FakeMlflow()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def database(postgres_available: tuple[str, int]) -> Iterator[str]:
    """The name of a fresh database (its SQLAlchemy URL ends with it)."""
    with fresh_database("api_tests") as url:
        yield url.rsplit("/", 1)[1]


@pytest.fixture
def start_api(
    database: str, fake_airflow: FakeAirflow, fake_mlflow: FakeMlflow, catalog_file: Path, tmp_path: Path
) -> Iterator[Callable[..., ApiProcess]]:
    """`start_api(**overrides)`: one more API process (same database, fakes and catalog unless overridden)."""
    with contextlib.ExitStack() as stack:
        count = [0]

        def start(**overrides: Any) -> ApiProcess:
            count[0] += 1
            settings: dict[str, Any] = {
                "database": database,
                "airflow_url": fake_airflow.url,
                "tracking_uri": fake_mlflow.url,
                "catalog": catalog_file,
                "airflow_user": (FakeAirflow.USERNAME, FakeAirflow.PASSWORD),
                # tests other than the rate limit's own make requests as fast as they can
                "token_settings": {contract.API_RATE_LIMIT_PER_SECOND: "10000", contract.API_RATE_LIMIT_BURST: "10000"},
                **overrides,
            }
            try:
                return stack.enter_context(api_process(tmp_path / f"api-{count[0]}.log", **settings))
            except DevstackError as exc:
                pytest.fail(f"the API did not start: {exc}")

        yield start


def start_training(
    client: httpx.Client, model: str = "iris-classifier", key: str | None = None, **body: Any
) -> httpx.Response:
    return client.post(
        "/v1/trainings", json={"model": model, **body}, headers={"Idempotency-Key": key or secrets.token_hex(8)}
    )


def read_events(client: httpx.Client, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every event of a stream that ends by itself (a run's stream, or follow=false)."""
    with client.stream("GET", path, params=params or None) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return list(parse_sse(response.iter_lines()))


@dataclass
class SseReader:
    """Follows a stream in a thread; `events` grows as they arrive; `close()` disconnects."""

    client: httpx.Client
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self._response: httpx.Response | None = None
        self._opened = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._opened.wait(30):
            raise AssertionError(f"the stream {self.path} did not open: {self.error}")

    def _run(self) -> None:
        try:
            with self.client.stream("GET", self.path, headers=self.headers, params=self.params) as response:
                self._response = response
                self._opened.set()
                for event in parse_sse(response.iter_lines()):
                    self.events.append(event)
        except Exception as exc:  # closed from the test, or the server went away
            self.error = exc
            self._opened.set()

    def wait_for(self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 60) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(list(self.events)):
                return list(self.events)
            time.sleep(0.05)
        raise AssertionError(f"condition not met on {self.path}; events: {[e['event'] for e in self.events]}")

    def close(self) -> None:
        if self._response is not None:
            self._response.close()
        self._thread.join(10)


def wait_until(check: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} not met within {timeout:.0f} s")
