"""The serving service as a local process, started with the Dockerfile's command.

`serving_service(tracking_uri, model_name, ...)` runs `services.serving.SERVING_COMMAND`
(`python -m services.serving`, the Dockerfile's CMD) from the repository root with the settings passed
as the contract's environment variables (never spelled here: see `services.common.contract`), on a free
loopback port, and waits until `/readyz` (ready to serve what exists: every routed alias loaded or without a
version in the registry) or, with `wait_for="healthz"`, only until the process answers. On exit the whole process
group (uvicorn and its workers) is stopped.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from devstack import REPO
from devstack.procs import (
    LOOPBACK,
    ManagedProcess,
    credentials_as_files,
    env_with_venv,
    free_port,
    http_server,
    loopback_url,
)
from services.common import contract
from services.common.serving_rules import DEFAULT_ALIASES
from services.serving import SERVING_COMMAND


@dataclass(frozen=True)
class ServingProcess:
    base_url: str
    port: int
    reload_token: str
    process: ManagedProcess
    log_dir: Path | None


def serving_env(
    *,
    tracking_uri: str,
    model_name: str,
    aliases: list[str] | tuple[str, ...] = DEFAULT_ALIASES[:1],
    routing: Mapping[str, Any] | None = None,
    reload_token: str,
    port: int,
    host: str = LOOPBACK,
    workers: int = 1,
    poll_seconds: float | None = None,
    log_dir: str | Path | None = None,
    max_batch: int | None = None,
    slack_webhook_url: str | None = None,
) -> dict[str, str]:
    """The environment variables of the service, keyed by the contract's names."""
    env: dict[str, str] = {
        contract.MLFLOW_TRACKING_URI.name: tracking_uri,
        contract.MODEL_NAME.name: model_name,
        contract.SERVING_ALIASES.name: ",".join(aliases),
        contract.RELOAD_TOKEN.name: reload_token,
        contract.SERVING_HOST.name: host,
        contract.SERVING_PORT_VAR.name: str(port),
        contract.SERVING_WORKERS.name: str(workers),
    }
    if routing is not None:
        env[contract.SERVING_ROUTING.name] = json.dumps(dict(routing))
    if poll_seconds is not None:
        env[contract.SERVING_POLL_SECONDS.name] = str(poll_seconds)
    if log_dir is not None:
        env[contract.SERVING_LOG_DIR.name] = str(log_dir)
    if max_batch is not None:
        env[contract.SERVING_MAX_BATCH.name] = str(max_batch)
    if slack_webhook_url is not None:
        env[contract.SLACK_WEBHOOK_URL.name] = slack_webhook_url
    return env


@contextlib.contextmanager
def serving_service(
    tracking_uri: str,
    model_name: str,
    *,
    aliases: list[str] | tuple[str, ...] = DEFAULT_ALIASES[:1],
    routing: Mapping[str, Any] | None = None,
    reload_token: str | None = None,
    port: int | None = None,
    workers: int = 1,
    poll_seconds: float | None = None,
    log_dir: str | Path | None = None,
    max_batch: int | None = None,
    slack_webhook_url: str | None = None,
    extra_env: Mapping[str, str] | None = None,
    wait_for: Literal["readyz", "healthz"] = "readyz",
    log_path: str | Path | None = None,
    start_timeout: float = 120.0,
) -> Iterator[ServingProcess]:
    """Run the service until the block exits (a random reload token unless one is given)."""
    port = port or free_port()
    reload_token = reload_token or secrets.token_urlsafe(24)
    base = loopback_url(port)
    env = env_with_venv(
        serving_env(
            tracking_uri=tracking_uri,
            model_name=model_name,
            aliases=aliases,
            routing=routing,
            reload_token=reload_token,
            port=port,
            workers=workers,
            poll_seconds=poll_seconds,
            log_dir=log_dir,
            max_batch=max_batch,
            slack_webhook_url=slack_webhook_url,
        )
    )
    if slack_webhook_url is None:
        env.pop(contract.SLACK_WEBHOOK_URL.name, None)
    env["PYTHONPATH"] = str(REPO) + (f":{env['PYTHONPATH']}" if env.get("PYTHONPATH") else "")
    if extra_env:
        env.update(extra_env)
    with tempfile.TemporaryDirectory(prefix="mlops-serving-secrets-") as folder:
        # as on the cluster: the reload token and the webhook in files named by <NAME>_FILE
        secret_names = [contract.RELOAD_TOKEN.name, contract.SLACK_WEBHOOK_URL.name]
        env = credentials_as_files(env, secret_names, Path(folder))
        process = http_server(
            "serving",
            list(SERVING_COMMAND),
            port=port,
            ready_path=f"/{wait_for}",
            env=env,
            cwd=REPO,
            log_path=log_path,
            start_timeout=start_timeout,
        )
        with process:
            yield ServingProcess(
                base_url=base,
                port=port,
                reload_token=reload_token,
                process=process,
                log_dir=Path(log_dir) if log_dir is not None else None,
            )
