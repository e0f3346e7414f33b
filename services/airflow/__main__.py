"""Print services/airflow/requirements.txt: what the DAGs import, at uv.lock's versions."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DAG_LIBRARIES = ("mlflow", "mlflow-skinny", "scikit-learn", "skops", "httpx")


def requirements() -> str:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    versions = {p["name"]: p["version"] for p in lock["package"]}
    lines = ["# Generated from uv.lock by `make airflow-requirements`; a test keeps it in sync."]
    lines += [f"{name}=={versions[name]}" for name in DAG_LIBRARIES]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(requirements(), end="")
