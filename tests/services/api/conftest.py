"""Fixtures of the API tests: the API as real processes (the Dockerfile's command) on a fresh PostgreSQL
database, against stand-ins for Airflow and MLflow (`fakes`) or the real ones.

- `catalog_file`: a catalog JSON (`Catalog.for_airflow()`) with two models;
- `fake_airflow`, `fake_mlflow`: local HTTP servers the test drives;
- `database`: a fresh database per test (dropped afterwards);
- `start_api(...)`: `python -m services.api` on a free port, stopped at the end of the test;
- `SseReader`: follows an event stream in a thread and collects the events.

Fixtures that need PostgreSQL FAIL (never skip) when it does not answer.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack import DAGS_FOLDER, REPO
from devstack.postgres import fresh_database
from devstack.procs import DevstackError, ManagedProcess, env_with_venv, free_port, http_server, loopback_url
from services.api import API_COMMAND
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


def catalog_document(models: Mapping[str, Any] = MODELS, serving: Mapping[str, str] | None = None) -> dict[str, Any]:
    catalog = parse_catalog(models)
    return catalog.for_airflow(**({"serving_url": serving} if serving else {}))


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


@dataclass
class ApiProcess:
    base_url: str
    admin_token: str
    process: ManagedProcess

    def client(self, token: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30, **kwargs)

    def admin(self) -> httpx.Client:
        return self.client(self.admin_token)


def api_env(
    *,
    database: str,
    airflow_url: str,
    tracking_uri: str,
    catalog: Path,
    admin_token: str,
    port: int,
    airflow_user: tuple[str, str] = (FakeAirflow.USERNAME, FakeAirflow.PASSWORD),
    reconcile_seconds: float = 0.3,
    poll_seconds: float = 0.1,
) -> dict[str, str]:
    """The API's environment, keyed by the contract's names."""
    env = env_with_venv(
        {
            contract.DATABASE_HOST.name: "127.0.0.1",
            contract.API_DATABASE_PORT.name: os.environ.get("MLOPS_TEST_PG_PORT", "5432"),
            contract.API_DATABASE_NAME.name: database,
            contract.API_DATABASE_USER.name: "postgres",
            contract.API_DATABASE_SSLMODE.name: "disable",
            contract.API_ADMIN_TOKEN.name: admin_token,
            contract.API_AIRFLOW_URL.name: airflow_url,
            contract.API_AIRFLOW_USERNAME.name: airflow_user[0],
            contract.API_AIRFLOW_PASSWORD.name: airflow_user[1],
            contract.MLFLOW_TRACKING_URI.name: tracking_uri,
            contract.MODEL_CATALOG.name: str(catalog),
            contract.API_HOST.name: "127.0.0.1",
            contract.API_PORT_VAR.name: str(port),
            contract.API_RECONCILE_SECONDS.name: str(reconcile_seconds),
            contract.API_EVENTS_POLL_SECONDS.name: str(poll_seconds),
        }
    )
    for var in (*contract.MLFLOW_CLIENT_VARS, contract.API_DATABASE_PASSWORD):
        env.pop(var.name, None)
    env["PYTHONPATH"] = os.pathsep.join((str(REPO), str(DAGS_FOLDER)))
    return env


@contextlib.contextmanager
def api_process(log_path: Path, **settings: Any) -> Iterator[ApiProcess]:
    port = settings.pop("port", None) or free_port()
    admin_token = settings.pop("admin_token", None) or secrets.token_urlsafe(32)
    env = api_env(port=port, admin_token=admin_token, **settings)
    process = http_server(
        "api", list(API_COMMAND), port=port, ready_path="/readyz", env=env, cwd=REPO, log_path=log_path
    )
    with process:
        yield ApiProcess(loopback_url(port), admin_token, process)


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
                **overrides,
            }
            try:
                return stack.enter_context(api_process(tmp_path / f"api-{count[0]}.log", **settings))
            except DevstackError as exc:
                pytest.fail(f"the API did not start: {exc}")

        yield start


def token_for(api: ApiProcess, *scopes: str, name: str = "test") -> str:
    with api.admin() as admin:
        answer = admin.post("/v1/tokens", json={"name": name, "scopes": list(scopes)})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["token"])


def start_training(
    client: httpx.Client, model: str = "iris-classifier", key: str | None = None, **body: Any
) -> httpx.Response:
    return client.post(
        "/v1/trainings", json={"model": model, **body}, headers={"Idempotency-Key": key or secrets.token_hex(8)}
    )


def parse_sse(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """Events of an SSE body: {"id", "event", "data"} per event (comments and retry lines skipped)."""
    current: dict[str, Any] = {}
    for line in lines:
        if line == "":
            if "data" in current:
                yield {"id": int(current["id"]), "event": current.get("event"), "data": json.loads(current["data"])}
            current = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(":")
            current[key] = value.removeprefix(" ")


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
