"""Run in a subprocess by test_dag_integrity.py (own AIRFLOW_HOME, the catalog its environment names): imports
every DAG file, then loads the folder with Airflow's DagBag, and prints one JSON report on stdout."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

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


if __name__ == "__main__":
    main(sys.argv[1])
