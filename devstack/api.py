"""The platform API (`services.api`) as a real process on this machine (`make demo`, the API tests).

- `api_env(...)`: its environment, keyed by the contract's names (database on the local PostgreSQL, trust auth);
- `api_process(log_path, ...)`: `python -m services.api` (the image's command) on a free port, ready on /readyz,
  stopped on exit; yields an `ApiProcess` (base URL, admin token, the process);
- `token_for(api, *scopes)`: a scoped token created with the admin token;
- `parse_sse(lines)`: the events of a `text/event-stream` body.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from devstack import DAGS_FOLDER, REPO
from devstack.procs import (
    DevstackError,
    ManagedProcess,
    credentials_as_files,
    env_with_venv,
    free_port,
    http_server,
    loopback_url,
)
from services.api import API_COMMAND
from services.common import api_rules, contract

_TOKEN_VARS = (
    contract.API_ADMIN_TOKEN_PREVIOUS,
    contract.API_TOKEN_TTL,
    contract.API_TOKEN_MAX_TTL,
    contract.API_RATE_LIMIT_PER_SECOND,
    contract.API_RATE_LIMIT_BURST,
)


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
    airflow_user: tuple[str, str],
    reconcile_seconds: float = api_rules.RECONCILE_SECONDS.minimum,  # the fastest the service accepts
    poll_seconds: float = api_rules.EVENTS_POLL_SECONDS.minimum,
    token_settings: dict[contract.EnvVar, str] | None = None,
) -> dict[str, str]:
    """The API's environment, keyed by the contract's names; `token_settings`: more of them (token expiry, rate
    limit, the next admin token), e.g. `{contract.API_RATE_LIMIT_PER_SECOND: "1"}`."""
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
    for var in (*contract.MLFLOW_CLIENT_VARS, contract.API_DATABASE_PASSWORD, *_TOKEN_VARS):
        env.pop(var.name, None)
    env.update({var.name: text for var, text in (token_settings or {}).items()})
    env["PYTHONPATH"] = os.pathsep.join((str(REPO), str(DAGS_FOLDER)))
    return env


@contextlib.contextmanager
def api_process(log_path: Path, **settings: Any) -> Iterator[ApiProcess]:
    """The API on `settings["port"]` (or a free port); `settings` are `api_env`'s arguments."""
    port = settings.pop("port", None) or free_port()
    admin_token = settings.pop("admin_token", None) or secrets.token_urlsafe(32)
    env = api_env(port=port, admin_token=admin_token, **settings)
    with tempfile.TemporaryDirectory(prefix="mlops-api-secrets-") as folder:
        # as on the cluster: the credentials in files named by <NAME>_FILE, not in the environment
        secret_names = [contract.API_ADMIN_TOKEN.name, contract.API_AIRFLOW_PASSWORD.name]
        env = credentials_as_files(env, secret_names, Path(folder))
        process = http_server(
            "api", list(API_COMMAND), port=port, ready_path="/readyz", env=env, cwd=REPO, log_path=log_path
        )
        with process:
            yield ApiProcess(loopback_url(port), admin_token, process)


def token_for(api: ApiProcess, *scopes: str, name: str = "test", **fields: Any) -> str:
    """A new token with `scopes` (and `fields` of the request: `models`, `expires_in`), created with the admin
    token."""
    with api.admin() as admin:
        answer = admin.post("/v1/tokens", json={"name": name, "scopes": list(scopes), **fields})
    if answer.status_code != 201:
        raise DevstackError(f"POST /v1/tokens answered {answer.status_code}: {answer.text[:500]}")
    return str(answer.json()["token"])


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
