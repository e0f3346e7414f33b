"""Kubernetes names and labels come from components/naming.py: what its helpers return, and that the
components and the program spell no standard label key or cluster DNS suffix themselves."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pulumi
import pytest

from components.naming import (
    PLATFORM,
    ROTATION_ANNOTATION,
    cluster_host,
    cluster_url,
    labels,
    platform_key,
    stack_name,
)
from harness.run import ProgramRun, run_under_mocks

ROOT = Path(__file__).resolve().parents[2]


def test_labels_always_say_part_of_the_platform() -> None:
    assert labels() == {"app.kubernetes.io/part-of": "mlops-platform"}


def test_labels_add_name_component_stack_and_platform_keys() -> None:
    assert labels(name="postgres", component="db", stack="dev", volume="logs") == {
        "app.kubernetes.io/part-of": "mlops-platform",
        "app.kubernetes.io/name": "postgres",
        "app.kubernetes.io/component": "db",
        "mlops-platform/stack": "dev",
        "mlops-platform/volume": "logs",
    }


def test_standard_labels_win_over_the_callers_base_labels() -> None:
    base = {"team": "ml", "app.kubernetes.io/part-of": "other", "app.kubernetes.io/name": "x"}
    got = labels(name="serving", base=base)
    assert got == {"team": "ml", "app.kubernetes.io/part-of": PLATFORM, "app.kubernetes.io/name": "serving"}
    assert base["app.kubernetes.io/part-of"] == "other"  # the caller's mapping is not modified


def test_platform_keys_and_stack_names() -> None:
    assert platform_key("bootstrap-inputs") == "mlops-platform/bootstrap-inputs"
    assert ROTATION_ANNOTATION == "mlops-platform/s3-key"
    assert stack_name("dev", "serving-logs") == "mlops-dev-serving-logs"
    assert stack_name("prod", "artifacts", "") == "mlops-prod-artifacts-"


def _exports(body_exports: Callable[[], dict[str, pulumi.Input[str]]]) -> ProgramRun:
    """The exports `body_exports()` builds, under the mocks (Outputs are made inside the program's event loop)."""

    def body() -> None:
        for key, value in body_exports().items():
            pulumi.export(key, value)

    return run_under_mocks("dev", body)


def test_cluster_host_and_url_of_a_service() -> None:
    run = _exports(
        lambda: {
            "host": cluster_host("postgres", "mlops-dev-data"),
            "url": cluster_url("mlflow", pulumi.Output.from_input("mlops-dev-mlflow"), 80),
        }
    )
    assert run.export_values() == {
        "host": "postgres.mlops-dev-data.svc.cluster.local",
        "url": "http://mlflow.mlops-dev-mlflow.svc.cluster.local:80",
    }


@pytest.mark.parametrize("spelling", ["app.kubernetes.io/", "svc.cluster.local", '"mlops-platform/s3-key"'])
def test_no_component_or_program_module_spells_standard_names_itself(spelling: str) -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("components", "infra")
        for path in sorted((ROOT / folder).glob("*.py"))
        if path.name != "naming.py" and spelling in path.read_text()
    ]
    assert offenders == []


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_labelled_object_of_the_program_is_part_of_the_platform(stack: str, stack_run: object) -> None:
    run: ProgramRun = stack_run(stack)  # type: ignore[operator]
    labelled = [r.manifest for r in run.kubernetes_objects() if r.manifest["metadata"].get("labels")]
    assert len(labelled) > 20
    not_ours = [
        f"{o['kind']}/{o['metadata'].get('name')}"
        for o in labelled
        if o["metadata"]["labels"].get("app.kubernetes.io/part-of") != PLATFORM
    ]
    assert not_ours == []
