"""Stand-ins for Airflow's REST API (v2) and MLflow's REST API, as local HTTP servers the tests control.

Only what the platform API calls is implemented, with the answers the real servers give (status codes and
JSON shapes of Airflow 3.3 and MLflow 3.17): `FakeAirflow` issues tokens (`POST /auth/token`), knows DAGs,
creates DAG runs (409 for an existing id), reads and patches them; the test sets their states. `FakeMlflow`
holds experiments, runs with tags and metrics, model versions and aliases, and filters as the platform's
queries need. Both record the requests they received.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from devstack.procs import free_port
from services.common.registry_tags import GATE_REASON_TAG, GATE_TAG, TAG_DAG_RUN_ID


class _Server:
    """A threaded HTTP server dispatching to `handle(method, path, query, body, headers)`."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _dispatch(self, method: str) -> None:
                parsed = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                with outer.lock:
                    outer.requests.append((method, parsed.path))
                    status, answer = outer.handle(method, parsed.path, parse_qs(parsed.query), body, self.headers)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._dispatch("GET")

            def do_POST(self) -> None:
                self._dispatch("POST")

            def do_PATCH(self) -> None:
                self._dispatch("PATCH")

            def do_DELETE(self) -> None:
                self._dispatch("DELETE")

            def log_message(self, *args: Any) -> None:
                pass

        self._server: ThreadingHTTPServer | None = None
        self._handler = Handler

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any, headers: Any) -> tuple[int, Any]:
        raise NotImplementedError

    def start(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Stop answering (the port is then refused: the dependency is down)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def count(self, method: str, pattern: str) -> int:
        with self.lock:
            return sum(1 for m, p in self.requests if m == method and re.fullmatch(pattern, p))


@dataclass
class FakeRun:
    dag_id: str
    dag_run_id: str
    conf: dict[str, Any]
    state: str = "queued"
    start_date: str | None = None
    end_date: str | None = None
    failed_tasks: list[str] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        return {
            "dag_id": self.dag_id,
            "dag_run_id": self.dag_run_id,
            "state": self.state,
            "conf": self.conf,
            "start_date": self.start_date,
            "end_date": self.end_date,
            "logical_date": None,
            "run_type": "manual",
        }


class FakeAirflow(_Server):
    USERNAME, PASSWORD = "mlops-api", "airflow-password"

    def __init__(self, dags: Iterator[str] | list[str]) -> None:
        super().__init__()
        self.dags: dict[str, bool] = {d: False for d in dags}  # dag_id -> paused
        self.runs: dict[tuple[str, str], FakeRun] = {}
        self.tokens: set[str] = set()

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any, headers: Any) -> tuple[int, Any]:
        if path == "/api/v2/monitor/health":
            return 200, {"metadatabase": {"status": "healthy"}}
        if path == "/auth/token" and method == "POST":
            return self._issue_token(body)
        auth = str(headers.get("Authorization", ""))
        if not auth.startswith("Bearer ") or auth.removeprefix("Bearer ") not in self.tokens:
            return 401, {"detail": "Not authenticated"}
        return self._dags_api(method, path, body)

    def _issue_token(self, body: Any) -> tuple[int, Any]:
        if body == {"username": self.USERNAME, "password": self.PASSWORD}:
            token = secrets.token_hex(8)
            self.tokens.add(token)
            return 201, {"access_token": token}
        return 401, {"detail": "Invalid credentials"}

    def _dags_api(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        match = re.fullmatch(r"/api/v2/dags/([^/]+)(?:/dagRuns(?:/([^/]+)(/taskInstances)?)?)?", path)
        if not match:
            return 404, {"detail": "Not Found"}
        dag_id, run_id, tis = match.group(1), match.group(2), match.group(3)
        if dag_id not in self.dags:
            return 404, {"detail": f"The Dag with ID: `{dag_id}` was not found"}
        if run_id is None and path.endswith("/dagRuns") and method == "POST":
            return self._trigger(dag_id, body)
        if run_id is None:
            return 200, {"dag_id": dag_id, "is_paused": self.dags[dag_id]}
        return self._dag_run_api(method, dag_id, unquote(run_id), bool(tis), body)

    def _trigger(self, dag_id: str, body: Any) -> tuple[int, Any]:
        key = (dag_id, body["dag_run_id"])
        if key in self.runs:
            return 409, {"detail": "Unique constraint violation"}
        self.runs[key] = FakeRun(dag_id, body["dag_run_id"], body.get("conf") or {})
        return 200, self.runs[key].body()

    def _dag_run_api(self, method: str, dag_id: str, run_id: str, tis: bool, body: Any) -> tuple[int, Any]:
        run = self.runs.get((dag_id, run_id))
        if run is None:
            return 404, {"detail": "DagRun not found"}
        if tis:
            return 200, {"task_instances": [{"task_id": t, "state": "failed"} for t in run.failed_tasks]}
        if method == "PATCH":
            run.state = body["state"]
            run.end_date = "2026-01-01T00:00:10Z"
        return 200, run.body()

    # --- what the tests do ---
    def set_state(self, dag_run_id: str, state: str, failed_tasks: list[str] | None = None) -> None:
        with self.lock:
            run = next(r for r in self.runs.values() if r.dag_run_id == dag_run_id)
            run.state = state
            if state != "queued" and run.start_date is None:
                run.start_date = "2026-01-01T00:00:01Z"
            if state in ("success", "failed"):
                run.end_date = "2026-01-01T00:00:09Z"
            run.failed_tasks = list(failed_tasks or [])

    def triggered(self) -> list[FakeRun]:
        with self.lock:
            return list(self.runs.values())

    def expire_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()


_MLFLOW_MISSING = (404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "not found"})


class FakeMlflow(_Server):
    def __init__(self) -> None:
        super().__init__()
        self.experiments: dict[str, str] = {}
        self.mlflow_runs: list[dict[str, Any]] = []
        self.versions: dict[str, list[dict[str, Any]]] = {}
        self.model_aliases: dict[str, dict[str, str]] = {}
        self.model_tags: dict[str, dict[str, str]] = {}

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any, headers: Any) -> tuple[int, Any]:
        if path == "/health":
            return 200, "OK"
        routes = {
            "experiments/get-by-name": self._experiment_by_name,
            "runs/search": self._search_runs,
            "model-versions/search": self._search_versions,
            "registered-models/get": self._registered_model,
            "registered-models/set-tag": self._set_model_tag,
            "registered-models/delete-tag": self._delete_model_tag,
        }
        route = routes.get(path.removeprefix("/api/2.0/mlflow/"))
        return route(query, body) if route else _MLFLOW_MISSING

    def _experiment_by_name(self, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        name = query["experiment_name"][0]
        if name not in self.experiments:
            return _MLFLOW_MISSING
        return 200, {"experiment": {"experiment_id": self.experiments[name], "name": name}}

    def _search_runs(self, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        wanted = re.search(r"= '(.*)'$", body["filter"])
        found = [
            r
            for r in self.mlflow_runs
            if r["experiment_id"] in body["experiment_ids"]
            and wanted
            and r["tags"].get(TAG_DAG_RUN_ID) == wanted.group(1)
        ]
        return 200, {"runs": [self._run(r) for r in found]} if found else {}

    def _search_versions(self, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        text = query["filter"][0]
        name = re.search(r"name = '([^']*)'", text)
        run = re.search(r"run_id = '([^']*)'", text)
        versions = [
            v for v in self.versions.get(name.group(1) if name else "", []) if not run or v["run_id"] == run.group(1)
        ]
        return 200, {"model_versions": sorted(versions, key=lambda v: -int(v["version"]))}

    def _registered_model(self, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        name = query["name"][0]
        if name not in self.versions:
            return _MLFLOW_MISSING
        aliases = [{"alias": a, "version": v} for a, v in self.model_aliases.get(name, {}).items()]
        tags = [{"key": k, "value": v} for k, v in self.model_tags.get(name, {}).items()]
        return 200, {"registered_model": {"name": name, "aliases": aliases, "tags": tags}}

    def _set_model_tag(self, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        if body["name"] not in self.versions:
            return _MLFLOW_MISSING
        self.model_tags.setdefault(body["name"], {})[body["key"]] = body["value"]
        return 200, {}

    def _delete_model_tag(self, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        if body["name"] not in self.versions or body["key"] not in self.model_tags.get(body["name"], {}):
            return _MLFLOW_MISSING
        del self.model_tags[body["name"]][body["key"]]
        return 200, {}

    @staticmethod
    def _run(r: dict[str, Any]) -> dict[str, Any]:
        return {
            "info": {"run_id": r["run_id"], "experiment_id": r["experiment_id"], "status": r["status"]},
            "data": {
                "metrics": [{"key": k, "value": v} for k, v in r["metrics"].items()],
                "tags": [{"key": k, "value": v} for k, v in r["tags"].items()],
            },
        }

    # --- what the tests do ---
    def training_run(self, model: str, dag_run_id: str, metrics: dict[str, float], gate: str | None = None) -> str:
        with self.lock:
            experiment = self.experiments.setdefault(f"mlops/{model}", str(len(self.experiments) + 1))
            run_id = secrets.token_hex(16)
            tags = {TAG_DAG_RUN_ID: dag_run_id}
            if gate:
                tags |= {GATE_TAG: gate, GATE_REASON_TAG: f"gate {gate} by the test"}
            self.mlflow_runs.append(
                {"experiment_id": experiment, "run_id": run_id, "status": "FINISHED", "metrics": metrics, "tags": tags}
            )
            return run_id

    def register(self, model: str, run_id: str | None, alias: str | None = None) -> str:
        with self.lock:
            versions = self.versions.setdefault(model, [])
            version = str(len(versions) + 1)
            versions.append({"name": model, "version": version, "run_id": run_id, "status": "READY"})
            if alias:
                self.model_aliases.setdefault(model, {})[alias] = version
            return version
