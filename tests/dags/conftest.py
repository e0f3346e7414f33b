"""Fixtures of the DAG tests: an Airflow home with a migrated SQLite DB, a real MLflow server, the real
serving service, a local webhook receiver for alerts, and a runner for `airflow dags test`.

Fixtures that need real servers FAIL (never skip) when they cannot start.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
VENV_BIN = Path(sys.executable).parent
if str(DAGS) not in sys.path:
    sys.path.insert(0, str(DAGS))  # the DAGs' helper package, as Airflow puts the DAG folder on sys.path


def airflow_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of an `airflow` subprocess using `home` (SQLite DB there) and this repo's dags/."""
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p),
            "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env


# --- Airflow --------------------------------------------------------------------------------------


@dataclass
class DagRunResult:
    dag_id: str
    returncode: int
    output: str
    run_id: str | None
    state: str | None
    task_states: dict[str, str]
    seconds: float


@dataclass
class AirflowHome:
    path: Path
    migrate_seconds: float
    runs: list[DagRunResult] = field(default_factory=list)

    @property
    def db(self) -> Path:
        return self.path / "airflow.db"

    def _query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.db) as conn:
            return list(conn.execute(sql, args))

    def dags_test(self, dag_id: str, conf: dict[str, Any], env: dict[str, str], timeout: float = 600) -> DagRunResult:
        """`airflow dags test DAG_ID -c CONF`; returns the run's state and its task states from the DB."""
        before = {row[0] for row in self._query("SELECT run_id FROM dag_run WHERE dag_id = ?", dag_id)}
        started = time.monotonic()
        proc = subprocess.run(
            [str(VENV_BIN / "airflow"), "dags", "test", dag_id, "-c", json.dumps(conf)],
            env=airflow_env(self.path, env),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        seconds = time.monotonic() - started
        output = proc.stdout + proc.stderr
        new = [
            row
            for row in self._query("SELECT run_id, state FROM dag_run WHERE dag_id = ? ORDER BY id", dag_id)
            if row[0] not in before
        ]
        run_id, state = new[-1] if new else (None, None)
        task_states = (
            {
                task_id: state_ or "none"
                for task_id, state_ in self._query(
                    "SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ?", dag_id, run_id
                )
            }
            if run_id
            else {}
        )
        result = DagRunResult(dag_id, proc.returncode, output, run_id, state, task_states, seconds)
        self.runs.append(result)
        print(f"airflow dags test {dag_id} {conf}: rc={proc.returncode} state={state} in {seconds:.1f} s {task_states}")
        return result

    def xcom(self, run: DagRunResult, task_id: str, key: str = "return_value") -> Any:
        rows = self._query(
            "SELECT value FROM xcom WHERE dag_id = ? AND run_id = ? AND task_id = ? AND key = ?",
            run.dag_id,
            run.run_id,
            task_id,
            key,
        )
        if not rows:
            return None
        value = rows[0][0]
        return json.loads(value) if isinstance(value, str | bytes) else value


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> AirflowHome:
    """An AIRFLOW_HOME with a SQLite metadata DB migrated once per session."""
    home = tmp_path_factory.mktemp("airflow-home")
    started = time.monotonic()
    proc = subprocess.run(
        [str(VENV_BIN / "airflow"), "db", "migrate"],
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


@dataclass(frozen=True)
class Seeded:
    model: str
    version: str
    run_id: str


def seed_version(
    tracking_uri: str, model: str, alias: str | None = None, C: float = 1.0, max_iter: int = 200
) -> Seeded:
    """A READY version trained exactly as the DAG trains (same split), optionally under `alias`."""
    import mlflow
    from mlops_tasks import registry
    from mlops_tasks.training import Hyperparameters, train_and_log

    logged = train_and_log(
        tracking_uri=tracking_uri, experiment=f"{model}-seed", hyper=Hyperparameters(C=C, max_iter=max_iter), tags={}
    )
    mlflow.set_tracking_uri(tracking_uri)
    version = registry.register(model, logged["model_uri"], tags={})
    if alias:
        registry.client(tracking_uri).set_registered_model_alias(model, alias, version)
    return Seeded(model, version, logged["run_id"])


# --- serving ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def running_serving(tracking_uri: str, model: str, log_path: Path, webhook_url: str | None = None) -> Iterator[Any]:
    """The real serving service for `model` (alias champion). The registry watcher is slowed down to an
    hour so that serving only changes when it is told to reload: what the tests check."""
    from devstack.procs import DevstackError
    from devstack.serving import serving_service

    try:
        cm = serving_service(
            tracking_uri,
            model,
            aliases=("champion",),
            poll_seconds=3600,
            slack_webhook_url=webhook_url,
            log_path=log_path,
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
