"""The rotation-only prod update's targets: the IAM key slots and what depends on them (the Secrets carrying
the active key, the workloads that roll), computed from the real program under mocks and from a state export,
never the data stores; a stack without key slots yields no target list (which would update everything)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from harness.mocks import reveal
from tools.delivery.rotation_targets import KEY_TYPE, PASSWORD_TYPE, Resource, from_export, main, rotation_targets

ROOT = Path(__file__).resolve().parents[3]


def export_of(run: Any) -> dict[str, Any]:
    """The run's resources as `pulumi stack export` writes them (deployment version 3)."""
    return {
        "version": 3,
        "deployment": {
            "manifest": {"time": "2026-11-30T04:17:00Z"},
            "resources": [
                {
                    "urn": r.urn,
                    "custom": r.custom,
                    "type": r.type,
                    "parent": r.parent,
                    "dependencies": list(r.dependencies),
                    "inputs": {"keepers": reveal(r.inputs).get("keepers")} if r.type == PASSWORD_TYPE else {},
                }
                for r in run.registrations
            ],
        },
    }


def names(urns: list[str]) -> set[str]:
    return {u.rsplit("::", 1)[1] for u in urns}


def types(urns: list[str]) -> set[str]:
    return {u.rsplit("::", 1)[0].rsplit("$", 1)[-1].rsplit("::", 1)[-1] for u in urns}


def test_prod_targets_are_the_key_slots_their_secrets_and_the_workloads_that_roll(stack_run: Any) -> None:
    run = stack_run("prod")
    targets = rotation_targets(from_export(export_of(run)))
    assert names(targets.keys) == {f"artifacts-{c}-key-slot{s}" for c in ("mlflow", "airflow", "loki") for s in (0, 1)}
    assert types(targets.keys) == {KEY_TYPE}
    dependents = names(targets.dependents)
    # the Secrets that carry the active key, and the workloads whose pods read them
    assert {"artifacts-mlflow-credentials", "artifacts-airflow-credentials"} <= dependents
    assert {"mlflow-release", "airflow-release"} <= dependents
    # the database login roles' passwords, the bootstrap that sets them (its SQL names the period), the
    # connection Secrets that carry the active role, and the API's Deployment that rolls onto it
    apps = ("mlflow", "mlflow_auth", "airflow", "platform_api")
    assert names(targets.passwords) == {f"database-{a}_{s}-password" for a in apps for s in "ab"}
    assert {"database-bootstrap", "database-bootstrap-sql", "database-bootstrap-secret"} <= dependents
    assert {f"database-{a}-connection" for a in apps} | {"api-deployment"} <= dependents
    assert "database-admin-password" in {r.name for r in run.registrations} - dependents
    # never the data stores, the network, the ingress or the IAM users themselves
    untouched = {r.name for r in run.registrations} - dependents - names(targets.keys)
    for name in ("artifacts-bucket", "database-rds", "database-sg", "ingress-traefik", "artifacts-mlflow-user"):
        assert name in untouched, name
    data_types = {
        "aws:s3/bucket:Bucket",
        "aws:rds/instance:Instance",
        "aws:iam/user:User",
        "aws:iam/userPolicy:UserPolicy",
    }
    assert not data_types & types(targets.dependents)
    assert len(targets.all) < len(run.registrations) / 2


def test_the_offline_cli_lists_the_same_targets_as_the_state(stack_run: Any, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text(json.dumps(export_of(stack_run("prod"))))
    output = tmp_path / "github_output"
    output.touch()
    env = {**os.environ, "GITHUB_OUTPUT": str(output)}
    from_state = subprocess.run(
        [sys.executable, "-m", "tools.delivery.rotation_targets", "--state", str(state), "--github-output"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    offline = subprocess.run(
        [sys.executable, "-m", "tools.delivery.rotation_targets", "--stack", "prod"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert from_state.stdout == offline.stdout and from_state.stdout.count("\n") > 4
    urns = from_state.stdout.splitlines()
    written = output.read_text()
    assert written == f"count={len(urns)}\ntargets<<__URNS__\n" + "\n".join(urns) + "\n__URNS__\n"
    assert "6 key slots, 8 password slots" in from_state.stderr  # mlflow, airflow, loki; 4 databases: two each


def test_dependencies_are_read_as_pulumi_reads_them(tmp_path: Path) -> None:
    key = f"urn:pulumi:prod::p::c:Store${KEY_TYPE}::k0"
    doc = {
        "deployment": {
            "resources": [
                {"urn": "urn:pulumi:prod::p::c:Store::store", "type": "c:Store"},
                {"urn": key, "type": KEY_TYPE, "parent": "urn:pulumi:prod::p::c:Store::store"},
                {"urn": "urn:s1", "type": "kubernetes:core/v1:Secret", "propertyDependencies": {"stringData": [key]}},
                {"urn": "urn:w", "type": "c:Workload", "dependencies": ["urn:s1"]},
                {"urn": "urn:w-child", "type": "kubernetes:apps/v1:Deployment", "parent": "urn:w"},
                {"urn": "urn:gone-with-key", "type": "x:y:Z", "deletedWith": key},
                {"urn": "urn:db", "type": "aws:rds/instance:Instance"},
            ]
        }
    }
    targets = rotation_targets(from_export(doc))
    assert targets.keys == [key]
    assert targets.dependents == ["urn:gone-with-key", "urn:s1", "urn:w", "urn:w-child"]


def test_a_stack_without_key_slots_gives_no_target_list(tmp_path: Path, capsys: Any) -> None:
    state = tmp_path / "state.json"
    state.write_text(
        json.dumps({"deployment": {"resources": [{"urn": "urn:db", "type": "aws:rds/instance:Instance"}]}})
    )
    assert main(["--state", str(state)]) == 2
    out = capsys.readouterr()
    assert out.out == "" and "nothing to rotate" in out.err
    assert rotation_targets([Resource("urn:a", "x:y:Z")]).all == []
