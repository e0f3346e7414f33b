"""The Airflow image: hadolint-clean, the tested Airflow version, the DAGs' libraries from the lock."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from harness.run import ROOT, read_stack_file
from services.airflow.__main__ import requirements
from stacks.settings import load_settings

DOCKERFILE = ROOT / "services" / "airflow" / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"


def test_requirements_file_is_generated_from_the_lock() -> None:
    assert (ROOT / "services" / "airflow" / "requirements.txt").read_text() == requirements(), (
        "run `make airflow-requirements`"
    )


def test_base_image_is_the_airflow_version_the_dags_are_tested_with() -> None:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    airflow = next(p["version"] for p in lock["package"] if p["name"] == "apache-airflow")
    assert f"FROM apache/airflow:{airflow}-python3.11" in DOCKERFILE.read_text()
    cfg = read_stack_file("dev")
    settings = load_settings("dev", cfg.config, set(cfg.secret_keys))
    assert settings.airflow.image_tag.startswith(airflow), "the default airflow.imageTag must match the tested Airflow"
    for stack in ("dev", "prod"):
        cfg = read_stack_file(stack)
        s = load_settings(stack, cfg.config, set(cfg.secret_keys))
        assert s.airflow.image_tag.startswith(f"{airflow}-mlops"), (
            f"Pulumi.{stack}.yaml must run the image built from {DOCKERFILE.name}"
        )


def test_hadolint_passes_and_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    ok = subprocess.run([str(HADOLINT), str(DOCKERFILE)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM apache/airflow:latest\nRUN pip install mlflow\n")
    assert subprocess.run([str(HADOLINT), str(bad)], capture_output=True, text=True).returncode != 0
