"""Make sure one MLflow basic-auth user exists with a given password (standard library only).

Run by the `mlflow-client-user` Kubernetes Job (from a ConfigMap, in the MLflow image) after every
change of the password, and by the tests against a real `mlflow server --app-name basic-auth`:

    MLFLOW_URL=http://mlflow.ns.svc.cluster.local:80 ADMIN_USERNAME_FILE=/var/run/secrets/.../username \
    ADMIN_PASSWORD_FILE=.../password CLIENT_USERNAME_FILE=... CLIENT_PASSWORD_FILE=... python ensure_user.py

Each credential is read from the file `<NAME>_FILE` names (the Job mounts the admin's and the user's Secrets:
no credential in its environment or arguments); the plain `<NAME>` is accepted for local use.

The user is created when missing, otherwise its password is set (so re-runs and rotations are
idempotent). It is an ordinary user: it manages what it creates and reads the rest through the
server's default permission. Exit status 0 = the user can log in with the password (checked).
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

USERS = "/api/2.0/mlflow/users"


class MlflowError(RuntimeError):
    def __init__(self, status: int, body: str):
        self.status = status
        super().__init__(f"HTTP {status}: {body[:300]}")


def _call(base: str, method: str, path: str, auth: tuple[str, str], body: dict[str, str] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base.rstrip("/") + path, data=data, method=method)  # noqa: S310 - http(s) MLflow URL
    token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - the in-cluster MLflow URL
            text = response.read().decode()
    except urllib.error.HTTPError as exc:
        raise MlflowError(exc.code, exc.read().decode(errors="replace")) from exc
    return json.loads(text) if text else {}


def wait_until_up(base: str, deadline: float) -> None:
    """Wait for MLflow's /health (no credentials needed) until `deadline` (time.monotonic())."""
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base.rstrip("/") + "/health", timeout=10) as response:  # noqa: S310
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(2)
    raise TimeoutError(f"MLflow at {base} did not answer /health in time ({last})")


def ensure_user(base: str, admin: tuple[str, str], username: str, password: str) -> str:
    """Create `username` or set its password; returns "created" or "updated"."""
    query = urllib.parse.urlencode({"username": username})
    try:
        _call(base, "GET", f"{USERS}/get?{query}", admin)
        exists = True
    except MlflowError as exc:
        if exc.status != 404:
            raise
        exists = False
    if exists:
        _call(base, "PATCH", f"{USERS}/update-password", admin, {"username": username, "password": password})
        outcome = "updated"
    else:
        _call(base, "POST", f"{USERS}/create", admin, {"username": username, "password": password})
        outcome = "created"
    # the user's own credentials must work now
    _call(base, "GET", f"{USERS}/get?{query}", (username, password))
    return outcome


SETTINGS = ("MLFLOW_URL", "ADMIN_USERNAME", "ADMIN_PASSWORD", "CLIENT_USERNAME", "CLIENT_PASSWORD")


def settings(environ: dict[str, str]) -> dict[str, str]:
    """Each setting from the file `<NAME>_FILE` names (without its trailing newline), else from `<NAME>`; the
    missing ones are left out."""
    found = {}
    for name in SETTINGS:
        path = environ.get(f"{name}_FILE")
        if path:
            with open(path, encoding="utf-8") as file:
                found[name] = file.read().rstrip("\r\n")
        elif environ.get(name):
            found[name] = environ[name]
    return {k: v for k, v in found.items() if v}


def main() -> int:
    try:
        env = settings(dict(os.environ))
    except OSError as exc:
        print(f"unreadable credential file: {exc}", file=sys.stderr)
        return 2
    missing = [k for k in SETTINGS if k not in env]
    if missing:
        print(f"missing environment: {', '.join(missing)}", file=sys.stderr)
        return 2
    base = env["MLFLOW_URL"]
    wait_until_up(base, time.monotonic() + float(env.get("TIMEOUT_SECONDS", "600")))
    try:
        outcome = ensure_user(
            base, (env["ADMIN_USERNAME"], env["ADMIN_PASSWORD"]), env["CLIENT_USERNAME"], env["CLIENT_PASSWORD"]
        )
    except MlflowError as exc:
        print(f"MLflow refused: {exc}", file=sys.stderr)
        return 1
    print(f"MLflow user {env['CLIENT_USERNAME']}: {outcome}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
