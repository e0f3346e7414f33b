"""`make preview`: the tree, the JSON document, and clear failures on bad stack files."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from harness.run import ROOT


def preview(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "-s", "preview", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_tree_and_json(stack: str) -> None:
    tree = preview(f"STACK={stack}")
    assert tree.returncode == 0, tree.stderr
    assert tree.stdout.startswith(f"Stack {stack} (")
    assert "+ mlops:platform:Namespaces  namespaces" in tree.stdout
    assert "Outputs:" in tree.stdout

    result = preview(f"STACK={stack}", "FORMAT=json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["stack"] == stack
    assert set(doc) >= {"stack", "resources", "outputs"}
    for resource in doc["resources"]:
        assert set(resource) >= {"type", "name", "parent", "inputs"}
    by_name = {r["name"]: r for r in doc["resources"]}
    assert by_name["namespaces-mlflow"]["parent"] == "namespaces"
    assert "harness-secret-value" not in result.stdout


def broken_copy(tmp_path: Path, stack: str, old: str, new: str) -> Path:
    text = (ROOT / f"Pulumi.{stack}.yaml").read_text()
    assert old in text
    path = tmp_path / f"Pulumi.{stack}.yaml"
    path.write_text(text.replace(old, new))
    return path


def test_invalid_value_fails_naming_the_key(tmp_path: Path) -> None:
    path = broken_copy(tmp_path, "prod", "mlops-platform:database.mode: rds", "mlops-platform:database.mode: rdss")
    result = preview("STACK=prod", f"ARGS=--stack-file {path}")
    assert result.returncode == 2
    expected = 'Pulumi.prod.yaml: mlops-platform:database.mode must be one of rds, in-cluster, external; got "rdss"'
    assert expected in result.stderr


def test_misspelled_key_fails_naming_the_key(tmp_path: Path) -> None:
    path = broken_copy(tmp_path, "dev", "mlops-platform:nfs.server:", "mlops-platform:nfs.sever:")
    result = preview("STACK=dev", f"ARGS=--stack-file {path}")
    assert result.returncode == 2
    assert "mlops-platform:nfs.sever is not a known setting (did you mean mlops-platform:nfs.server?)" in result.stderr
    assert "mlops-platform:nfs.server is required" in result.stderr


def test_secret_values_are_redacted_in_json(tmp_path: Path) -> None:
    text = (
        ROOT / "Pulumi.dev.yaml"
    ).read_text() + "  mlops-platform:alerts.slackWebhookUrl:\n    secure: v1:AAAA:BBBB\n"
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(text)
    result = preview("STACK=dev", "FORMAT=json", f"ARGS=--stack-file {path}")
    assert result.returncode == 0, result.stderr
    assert "harness-secret-value" not in result.stdout
