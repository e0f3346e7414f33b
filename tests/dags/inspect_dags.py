"""Run in a subprocess (own AIRFLOW_HOME, the catalog its environment names): imports every DAG file, then loads
the folder with Airflow's DagBag, and prints one JSON report on stdout. `inspect(tmp, catalog_text)` runs it for the
tests and returns that report."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HEAVY = ("mlflow", "sklearn", "pandas", "numpy", "httpx", "scipy")


def main(dags_folder: str) -> None:
    folder = Path(dags_folder)
    sys.path.insert(0, str(folder))
    started = time.perf_counter()
    import airflow.sdk  # noqa: F401  - the Task SDK itself is not the DAG files' cost

    sdk_seconds = time.perf_counter() - started
    before = set(sys.modules)
    import_seconds: dict[str, float] = {}
    direct_errors: dict[str, str] = {}
    for path in sorted(folder.glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"dagfile_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        t0 = time.perf_counter()
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # reported: the test decides whether it was expected
            direct_errors[path.name] = f"{type(exc).__name__}: {exc}"
        import_seconds[path.name] = time.perf_counter() - t0
    # What the DAG files themselves pulled in (the Task SDK already imports httpx, for instance).
    heavy = sorted({name.split(".")[0] for name in set(sys.modules) - before if name.split(".")[0] in HEAVY})

    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(folder))
    dags = {}
    for dag_id, dag in bag.dags.items():
        tasks = {}
        for task in dag.tasks:
            tasks[task.task_id] = {
                "owner": task.owner,
                "retries": task.retries,
                "trigger_rule": str(
                    task.trigger_rule.value if hasattr(task.trigger_rule, "value") else task.trigger_rule
                ),
                "has_failure_callback": bool(task.on_failure_callback),
                "mode": getattr(task, "mode", None),
                "timeout": getattr(task, "timeout", None),
                "poke_interval": getattr(task, "poke_interval", None),
                "upstream": sorted(task.upstream_task_ids),
                "operator": type(task).__name__,
                "execution_timeout": task.execution_timeout.total_seconds() if task.execution_timeout else None,
                "executor_config": sorted(task.executor_config or {}),
            }
        dags[dag_id] = {
            "tags": sorted(dag.tags),
            "params": sorted(dag.params.keys()),
            "param_defaults": {key: dag.params[key] for key in dag.params},
            "param_schemas": {key: dag.params.get_param(key).schema for key in dag.params},
            "max_active_runs": dag.max_active_runs,
            "catchup": dag.catchup,
            "schedule_expression": getattr(dag.timetable, "expression", None),
            "schedule": type(dag.timetable).__name__,
            "fileloc": dag.fileloc,
            "tasks": tasks,
        }
    report = {
        "sdk_import_seconds": sdk_seconds,
        "import_seconds": import_seconds,
        "heavy_modules_after_import": heavy,
        "import_errors": bag.import_errors,
        "direct_import_errors": direct_errors,
        "dags": dags,
    }
    print("REPORT " + json.dumps(report, default=str))


def inspect(tmp: Path, catalog_text: str | None) -> dict[str, Any]:
    """The report of this script run on the repository's DAG folder, with MLOPS_MODEL_CATALOG naming a file in
    `tmp` holding `catalog_text` (None: the variable unset)."""
    from devstack import DAGS_FOLDER, REPO
    from devstack.dag_runs import airflow_env
    from services.common import contract

    tmp.mkdir(parents=True, exist_ok=True)
    env = airflow_env(tmp / "home")
    env.pop(contract.MODEL_CATALOG.name, None)
    if catalog_text is not None:
        path = tmp / "catalog.json"
        path.write_text(catalog_text)
        env[contract.MODEL_CATALOG.name] = str(path)
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), str(DAGS_FOLDER)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("REPORT ")]
    assert proc.returncode == 0 and lines, f"inspection failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    report: dict[str, Any] = json.loads(lines[-1].removeprefix("REPORT "))
    return report


if __name__ == "__main__":
    main(sys.argv[1])
