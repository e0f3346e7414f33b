"""The `mlflow-client-user` Job's script against a real MLflow server with basic auth, configured the
way the chart configures it in prod: tracking store in one PostgreSQL database, users and
permissions in another (`auth.postgres`, psycopg2 driver), READ as the default permission."""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devstack.mlflow_server import mlflow_server_argv
from devstack.postgres import fresh_database
from devstack.procs import LOOPBACK, ManagedProcess, env_with_venv, free_port, http_ok
from harness.run import ROOT
from services.common import contract, env_settings

SCRIPT = ROOT / "services" / "mlflow" / "ensure_user.py"
pytestmark = [pytest.mark.servers, pytest.mark.slow]


@dataclass(frozen=True)
class AuthServer:
    url: str
    admin: tuple[str, str]


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory, postgres_available: Any) -> Iterator[AuthServer]:
    tmp = tmp_path_factory.mktemp("mlflow-auth")
    admin = ("admin", secrets.token_urlsafe(24))
    with fresh_database("mlflow") as tracking_url, fresh_database("mlflow_auth") as auth_url:
        # the chart renders database_uri as postgresql+<driver>://$(user):$(password)@host:port/db
        auth_db = auth_url.rsplit("/", 1)[1]
        ini = tmp / "basic_auth.ini"
        ini.write_text(
            "[mlflow]\n"
            "default_permission = READ\n"
            f"database_uri = postgresql+psycopg2://postgres:unused@127.0.0.1:5432/{auth_db}\n"
            f"admin_username = {admin[0]}\n"
            f"admin_password = {admin[1]}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        )
        port = free_port()
        url = f"http://{LOOPBACK}:{port}"
        env = env_with_venv(
            {
                "MLFLOW_AUTH_CONFIG_PATH": str(ini),
                "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            }
        )
        for var in (contract.MLFLOW_TRACKING_URI, *contract.MLFLOW_CLIENT_VARS):
            env.pop(var.name, None)
        argv = [*mlflow_server_argv(tracking_url, str(tmp / "artifacts"), port), "--app-name", "basic-auth"]
        (tmp / "artifacts").mkdir()
        with ManagedProcess(
            "mlflow-auth", argv, env=env, ready=lambda: http_ok(f"{url}/health"), start_timeout=240, ports=(port,)
        ):
            yield AuthServer(url=url, admin=admin)


def run_script(
    server: AuthServer, username: str, password: str, admin_password: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The script as the Job runs it: every credential in a file (a mounted Secret) that `<NAME>_FILE` names."""
    folder = Path(tempfile.mkdtemp(prefix="ensure-user-"))
    credentials = {
        "ADMIN_USERNAME": server.admin[0],
        "ADMIN_PASSWORD": admin_password or server.admin[1],
        "CLIENT_USERNAME": username,
        "CLIENT_PASSWORD": password,
    }
    for name, value in credentials.items():
        (folder / name).write_text(value)
    env = env_with_venv(
        {
            "MLFLOW_URL": server.url,
            **{f"{name}_FILE": str(folder / name) for name in credentials},
            "TIMEOUT_SECONDS": "30",
        }
    )
    for name in credentials:
        env.pop(name, None)
    # the Job runs the file alone, with only the standard library
    return subprocess.run([sys.executable, "-I", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120)


def status(
    server: AuthServer, path: str, auth: tuple[str, str] | None, body: dict[str, Any] | None = None, method: str = "GET"
) -> int:
    request = urllib.request.Request(
        server.url + path, method=method, data=json.dumps(body).encode() if body is not None else None
    )
    if body is not None:
        request.add_header("Content-Type", "application/json")
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_the_script_creates_the_user_then_sets_its_password(auth_server: AuthServer) -> None:
    user, first, second = "mlops-pipelines", secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    get = f"/api/2.0/mlflow/users/get?username={user}"
    assert status(auth_server, get, (user, first)) == 401

    created = run_script(auth_server, user, first)
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == f"MLflow user {user}: created"
    assert status(auth_server, get, (user, first)) == 200

    # a new password (rotation, or a re-run after a lost Secret): same user, old password refused
    updated = run_script(auth_server, user, second)
    assert updated.returncode == 0, updated.stderr
    assert updated.stdout.strip() == f"MLflow user {user}: updated"
    assert status(auth_server, get, (user, first)) == 401
    assert status(auth_server, get, (user, second)) == 200
    # the user is no admin: it cannot create users
    assert (
        status(
            auth_server, "/api/2.0/mlflow/users/create", (user, second), {"username": "x", "password": "y" * 16}, "POST"
        )
        == 403
    )


def test_the_script_fails_clearly(auth_server: AuthServer) -> None:
    wrong_admin = run_script(auth_server, "someone", secrets.token_urlsafe(24), admin_password="not-the-admin-password")
    assert wrong_admin.returncode == 1 and "MLflow refused: HTTP 401" in wrong_admin.stderr
    short = run_script(auth_server, "someone", "short")
    assert short.returncode == 1 and "MLflow refused: HTTP 400" in short.stderr
    missing = subprocess.run(
        [sys.executable, "-I", str(SCRIPT)], env={"PATH": "/usr/bin"}, capture_output=True, text=True, timeout=60
    )
    assert missing.returncode == 2 and "missing environment" in missing.stderr


def test_the_pipelines_user_can_do_what_the_dags_and_serving_do(
    auth_server: AuthServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Through MLflow's own client and its credentials file (the pods' way; the platform API reads the same file):
    register a model version and move an
    alias (the DAGs), resolve it (serving); read an experiment the admin made, but not delete it."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    user, password = "mlops-pipelines-check", secrets.token_urlsafe(24)
    assert run_script(auth_server, user, password).returncode == 0
    monkeypatch.setenv(contract.MLFLOW_TRACKING_USERNAME.name, auth_server.admin[0])
    monkeypatch.setenv(contract.MLFLOW_TRACKING_PASSWORD.name, auth_server.admin[1])
    admins = MlflowClient(tracking_uri=auth_server.url)
    foreign = admins.create_experiment(f"admin-{secrets.token_hex(3)}")

    monkeypatch.delenv(contract.MLFLOW_TRACKING_USERNAME.name)
    monkeypatch.delenv(contract.MLFLOW_TRACKING_PASSWORD.name)
    with pytest.raises(MlflowException):
        MlflowClient(tracking_uri=auth_server.url).search_experiments()

    # as on the cluster: no variables, MLflow's own credentials file under $HOME (mounted from the Secret's key)
    home = tmp_path / "home"
    credentials_file = contract.mlflow_credentials_file(str(home))
    credentials_file.parent.mkdir(parents=True)
    credentials_file.write_text(contract.mlflow_credentials_ini(user, password))
    monkeypatch.setenv("HOME", str(home))
    assert env_settings.mlflow_credentials() == (user, password)  # what the platform API reads
    client = MlflowClient(tracking_uri=auth_server.url)
    experiment = client.create_experiment(f"train-{secrets.token_hex(3)}")
    run = client.create_run(experiment)
    client.log_param(run.info.run_id, "C", "1.0")
    client.log_text(run.info.run_id, "artifact through the proxy", "model/README.txt")
    client.set_terminated(run.info.run_id)
    name = f"iris-{secrets.token_hex(3)}"
    client.create_registered_model(name)
    version = client.create_model_version(name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    client.set_registered_model_alias(name, "champion", version.version)
    assert client.get_model_version_by_alias(name, "champion").version == version.version
    assert client.get_experiment(foreign).name.startswith("admin-")  # default permission READ
    with pytest.raises(MlflowException):
        client.delete_experiment(foreign)


def test_the_script_is_standard_library_only() -> None:
    tree = Path(SCRIPT).read_text()
    imports = {line.split()[1].split(".")[0] for line in tree.splitlines() if line.startswith(("import ", "from "))}
    assert imports <= {"__future__", "base64", "json", "os", "sys", "time", "urllib", "typing"}
