"""`airflow` commands on this repository's DAGs, outside a cluster (`make demo`, the DAG tests).

- `airflow_env(home)`: the environment of an `airflow` command whose AIRFLOW_HOME (and SQLite metadata DB)
  is `home` and whose DAG folder is this repository's `dags/`;
- `dags_test_argv(dag_id, conf)`: `airflow dags test DAG_ID -c CONF`;
- `run_ids(db, dag_id)` before such a command and `new_dag_run(db, dag_id, before)` after it: the run it
  recorded in the metadata DB, with its tasks' states and durations and its XComs.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack import DAGS_FOLDER, REPO
from devstack.procs import env_with_venv, find_binary

METADATA_DB = "airflow.db"  # SQLite, under AIRFLOW_HOME


def airflow_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment (the virtualenv's bin/ first on PATH) for an `airflow` command using
    `home` and `dags/`, plus `extra`."""
    env = env_with_venv()
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p),
        }
    )
    env.update(extra or {})
    return env


def dags_test_argv(dag_id: str, conf: Mapping[str, Any]) -> list[str]:
    return [find_binary("airflow"), "dags", "test", dag_id, "-c", json.dumps(dict(conf))]


@dataclass(frozen=True)
class DagRunSummary:
    run_id: str | None
    state: str | None
    tasks: list[tuple[str, str, float | None]]  # task, state, seconds; in the order they started
    xcoms: dict[tuple[str, str], Any]  # (task, key) -> value

    @property
    def task_states(self) -> dict[str, str]:
        return {task_id: state for task_id, state, _ in self.tasks}


def run_ids(db: Path, dag_id: str) -> set[str]:
    """Ids of the runs of `dag_id` recorded in the metadata DB `db` (none if it does not exist yet)."""
    if not db.is_file():
        return set()
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return {row[0] for row in conn.execute("SELECT run_id FROM dag_run WHERE dag_id = ?", (dag_id,))}


def new_dag_run(db: Path, dag_id: str, before: set[str]) -> DagRunSummary:
    """The newest run of `dag_id` that is not in `before` (None fields if the command created none)."""
    if not db.is_file():
        return DagRunSummary(None, None, [], {})
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = [
            row
            for row in conn.execute("SELECT run_id, state FROM dag_run WHERE dag_id = ? ORDER BY id", (dag_id,))
            if row[0] not in before
        ]
        if not rows:
            return DagRunSummary(None, None, [], {})
        run_id, state = rows[-1]
        tasks = [
            (task_id, task_state or "none", duration)
            for task_id, task_state, duration in conn.execute(
                "SELECT task_id, state, duration FROM task_instance WHERE dag_id = ? AND run_id = ? "
                "ORDER BY start_date IS NULL, start_date",
                (dag_id, run_id),
            )
        ]
        xcoms = {}
        for task_id, key, value in conn.execute(
            "SELECT task_id, key, value FROM xcom WHERE dag_id = ? AND run_id = ?", (dag_id, run_id)
        ):
            with contextlib.suppress(TypeError, ValueError):
                xcoms[(task_id, key)] = json.loads(value) if isinstance(value, str | bytes) else value
        return DagRunSummary(run_id, state, tasks, xcoms)
