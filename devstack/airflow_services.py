"""Real Airflow services on this machine (`make demo`, the API's acceptance test).

`airflow_services(home, logs, extra)` migrates a fresh PostgreSQL database, then runs Airflow's API server,
scheduler and DAG processor (LocalExecutor, parallelism 2) on this repository's `dags/`, with one simple-auth
user whose password is written to a passwords file under `home` (never on a command line) and a JWT secret the
three share. It yields `AirflowServices(url, user, password, processes)` and stops everything (and drops the
database) on exit.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from devstack.dag_runs import airflow_env
from devstack.postgres import PostgresServer, fresh_database
from devstack.procs import DevstackError, ManagedProcess, find_binary, free_port, http_ok, loopback_url

AIRFLOW_USER = "mlops-api"


@dataclass(frozen=True)
class AirflowServices:
    url: str
    user: str
    password: str
    processes: tuple[ManagedProcess, ...] = ()


@contextlib.contextmanager
def airflow_services(
    home: Path, logs: Path, extra: Mapping[str, str], *, db_prefix: str = "api_airflow", port: int = 0
) -> Iterator[AirflowServices]:
    """Airflow's API server, scheduler and DAG processor on a fresh PostgreSQL database."""
    port = port or free_port()
    url = loopback_url(port)
    password = secrets.token_urlsafe(16)
    home.mkdir(parents=True, exist_ok=True)
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({AIRFLOW_USER: password}))
    passwords.chmod(0o600)
    with fresh_database(db_prefix) as db_url:
        dbname = db_url.rsplit("/", 1)[1]
        server = PostgresServer()
        env = airflow_env(
            home,
            {
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": (
                    f"postgresql+psycopg2://{server.user}@{server.host}:{server.port}/{dbname}"
                ),
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "2",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{AIRFLOW_USER}:user",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
                "AIRFLOW__API__PORT": str(port),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
                "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                **extra,
            },
        )
        airflow_bin = find_binary("airflow")
        migrate = ManagedProcess(
            "airflow-migrate", [airflow_bin, "db", "migrate"], env=env, log_path=logs / "airflow-migrate.log"
        )
        with migrate:
            if migrate.wait(timeout=300) != 0:
                raise DevstackError(f"airflow db migrate failed:\n{migrate.log_tail()}")
        api_server = ManagedProcess(
            "airflow-api-server",
            [airflow_bin, "api-server", "--port", str(port)],
            env=env,
            log_path=logs / "airflow-api-server.log",
            ready=lambda: http_ok(f"{url}/api/v2/monitor/health"),
            start_timeout=180,
            ports=(port,),
        )
        scheduler = ManagedProcess(
            "airflow-scheduler", [airflow_bin, "scheduler"], env=env, log_path=logs / "airflow-scheduler.log"
        )
        processor = ManagedProcess(
            "airflow-dag-processor",
            [airflow_bin, "dag-processor"],
            env=env,
            log_path=logs / "airflow-dag-processor.log",
        )
        with api_server, scheduler, processor:
            yield AirflowServices(url, AIRFLOW_USER, password, (api_server, scheduler, processor))
