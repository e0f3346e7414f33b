"""Fixtures of the DAG tests: an Airflow home with a migrated SQLite DB, a real MLflow server, the real
serving service, a local webhook receiver for alerts, and a runner for `airflow dags test`.

Fixtures that need real servers FAIL (never skip) when they cannot start.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

# Importing devstack puts the DAG folder on sys.path, as Airflow does: `mlops_tasks` is importable.
from devstack import REPO
from devstack.dag_runs import METADATA_DB, airflow_env, dags_test_argv, new_dag_run, run_ids
from devstack.procs import find_binary

# The tasks of a training DAG, in the order they depend on each other, and their states after a successful run.
TRAINING_CHAIN = (
    "train",
    "evaluate",
    "quality_gate",
    "register",
    "wait_until_ready",
    "promote",
    "reload_serving",
    "verify_serving",
)
TRAINED_AND_SERVED = {**dict.fromkeys(TRAINING_CHAIN, "success"), "rollback": "skipped", "fail_run": "skipped"}

# --- the catalog -----------------------------------------------------------------------------------


def catalog_entries(serving_urls: dict[str, str], catalog: Any = None) -> dict[str, Any]:
    """The DAGs' view (`catalog_file.CatalogModel` by name) of a catalog (default: the local one, the two examples)
    written as the Pulumi program writes it, with these serving URLs."""
    from devstack.catalog import catalog_document, local_catalog
    from services.common import catalog_file

    return catalog_file.parse(catalog_document(catalog or local_catalog(), serving_urls))


# --- Airflow --------------------------------------------------------------------------------------


@dataclass
class DagRunResult:
    dag_id: str
    returncode: int
    output: str
    run_id: str | None
    state: str | None
    task_states: dict[str, str]
    xcoms: dict[tuple[str, str], Any]
    seconds: float

    def explain(self) -> str:
        """The run's state and task states, and the tail of its output: for an assertion's message."""
        return (
            f"state={self.state} rc={self.returncode} tasks={self.task_states}\n"
            f"--- output tail ---\n{self.output[-6000:]}"
        )


@dataclass
class AirflowHome:
    path: Path
    migrate_seconds: float
    runs: list[DagRunResult] = field(default_factory=list)

    @property
    def db(self) -> Path:
        return self.path / METADATA_DB

    def dags_test(self, dag_id: str, conf: dict[str, Any], env: dict[str, str], timeout: float = 600) -> DagRunResult:
        """`airflow dags test DAG_ID -c CONF`; returns the run's state, task states and XComs from the DB."""
        before = run_ids(self.db, dag_id)
        started = time.monotonic()
        proc = subprocess.run(
            dags_test_argv(dag_id, conf),
            env=airflow_env(self.path, env),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        seconds = time.monotonic() - started
        run = new_dag_run(self.db, dag_id, before)
        result = DagRunResult(
            dag_id,
            proc.returncode,
            proc.stdout + proc.stderr,
            run.run_id,
            run.state,
            run.task_states,
            run.xcoms,
            seconds,
        )
        self.runs.append(result)
        print(f"airflow dags test {dag_id} {conf}: rc={proc.returncode} state={run.state} in {seconds:.1f} s")
        print(f"  tasks: {run.task_states}")
        return result

    def xcom(self, run: DagRunResult, task_id: str, key: str = "return_value") -> Any:
        return run.xcoms.get((task_id, key))


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> AirflowHome:
    """An AIRFLOW_HOME with a SQLite metadata DB migrated once per session."""
    home = tmp_path_factory.mktemp("airflow-home")
    started = time.monotonic()
    proc = subprocess.run(
        [find_binary("airflow"), "db", "migrate"],
        env=airflow_env(home),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        pytest.fail(f"airflow db migrate failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return AirflowHome(home, time.monotonic() - started)


# --- alert receiver ------------------------------------------------------------------------------


@dataclass
class WebhookReceiver:
    url: str
    received: list[dict[str, Any]] = field(default_factory=list)

    def texts(self) -> list[str]:
        return [str(body.get("text", "")) for body in self.received]

    def events(self, event: str) -> list[str]:
        """Texts of the alerts whose event is `event` (the Slack text reads `<icon> *<event>*: ...`)."""
        return [text for text in self.texts() if f"*{event}*" in text]

    def clear(self) -> None:
        self.received.clear()


@pytest.fixture(scope="session")
def webhook() -> Iterator[WebhookReceiver]:
    """A tiny Slack stand-in: records every JSON body POSTed to it."""
    lock = threading.Lock()
    receiver = WebhookReceiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                receiver.received.append(json.loads(body or b"{}"))
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/services/T000/B000/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    server.shutdown()
    server.server_close()


# --- MLflow ----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def mlflow_tracking_uri(tmp_path_factory: pytest.TempPathFactory, postgres_available: tuple[str, int]) -> Iterator[str]:
    """A real MLflow server as in the cluster: PostgreSQL backend store, artifacts proxied to S3 (moto)."""
    from devstack.procs import DevstackError
    from devstack.stack import mlflow_stack

    logs = tmp_path_factory.mktemp("mlflow-logs")
    try:
        stack_cm = mlflow_stack(db_prefix="dagtests", log_dir=logs)
        stack = stack_cm.__enter__()
    except DevstackError as exc:
        pytest.fail(f"could not start the MLflow stack: {exc}")
    try:
        yield stack.tracking_uri
    finally:
        stack_cm.__exit__(None, None, None)


@pytest.fixture(scope="session")
def trained_iris(mlflow_tracking_uri: str) -> Any:
    """One iris model trained through the runner and registered (`devstack.models.RegisteredVersion`); tests that
    only need versions register it again (`devstack.models.register_again`) instead of training again."""
    import uuid

    from devstack.models import train_and_register

    return train_and_register(mlflow_tracking_uri, f"trained-iris-{uuid.uuid4().hex[:6]}")


# --- serving ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def running_serving(
    tracking_uri: str,
    model: str,
    log_path: Path,
    webhook_url: str | None = None,
    reload_token: str | None = None,
    wait_for: str = "readyz",
    aliases: tuple[str, ...] = ("champion",),
    routing: dict[str, Any] | None = None,
    poll_seconds: float = 3600,
) -> Iterator[Any]:
    """The real serving service for `model` (default: alias champion, fixed routing), its own process. The
    registry watcher is slowed down to an hour by default so that serving only changes when it is told to reload:
    what the tests check. It is ready (`/readyz`) whether or not the model has a version yet; `wait_for` "healthz"
    waits only until the process answers."""
    from devstack.procs import DevstackError
    from devstack.serving import serving_service

    try:
        cm = serving_service(
            tracking_uri,
            model,
            aliases=aliases,
            routing=routing,
            poll_seconds=poll_seconds,
            slack_webhook_url=webhook_url,
            reload_token=reload_token,
            log_path=log_path,
            wait_for="healthz" if wait_for == "healthz" else "readyz",
            start_timeout=180,
        )
        serving = cm.__enter__()
    except DevstackError as exc:
        pytest.fail(f"could not start the serving service: {exc}")
    try:
        yield serving
    finally:
        cm.__exit__(None, None, None)


@dataclass
class Recorded:
    method: str
    path: str
    upstream_status: int | None
    upstream_body: str
    returned_status: int


class ReloadProxy:
    """Stands between the DAG and serving's admin API. `refuse_after_forwarding` reloads: the request
    reaches serving (which loads the new version) but the DAG is answered 403, as if serving had
    refused: a failure injected after the alias moved and serving switched."""

    def __init__(self, upstream: str, refuse_after_forwarding: int = 0) -> None:
        self.upstream = upstream.rstrip("/")
        self.refuse_left = refuse_after_forwarding
        self.records: list[Recorded] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                import httpx

                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                try:
                    upstream = httpx.request(
                        self.command, proxy.upstream + self.path, content=body, headers=headers, timeout=120
                    )
                    status, text = upstream.status_code, upstream.text
                except httpx.HTTPError as exc:
                    status, text = None, str(exc)
                with proxy._lock:
                    refuse = "/reload" in self.path and proxy.refuse_left > 0
                    if refuse:
                        proxy.refuse_left -= 1
                returned = 403 if refuse else (status or 502)
                payload = (json.dumps({"detail": "reload refused (injected by the test)"}) if refuse else text).encode()
                proxy.records.append(Recorded(self.command, self.path, status, text, returned))
                self.send_response(returned)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = _forward
            do_POST = _forward

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ReloadProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
