"""checkov 3.3.30 (an outside scanner, installed by `make setup`) over both stacks' rendered Kubernetes objects,
one invocation per stack with its Kubernetes and secrets checks: every finding is accepted, with its reason, by
harness/checkov_accepted.py, and every accepted entry still accepts something. A canary written beside each stack's
objects (a privileged pod by tag, an AWS key in a ConfigMap) proves the scan ran and reports. Without checkov the
tests fail (never skip): `make setup` installs it."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import checkov
from harness.checkov import Finding, ObjectId
from harness.checkov_accepted import ACCEPTED, accepted
from harness.run import ROOT

STACKS = ("dev", "prod")
CANARY_DEPLOYMENT = ObjectId("Deployment", "canary", "privileged-by-tag")
CANARY_CONFIGMAP = ObjectId("ConfigMap", "canary", "leaked-key")
# AWS's documented example key pair, in a ConfigMap: what the secrets checks exist for
CANARY_KEY_ID, CANARY_SECRET = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def _canaries() -> list[dict[str, Any]]:
    container = {"name": "app", "image": "nginx:1.27", "securityContext": {"privileged": True}}
    labels = {"app": "canary"}
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": CANARY_DEPLOYMENT.name, "namespace": "canary"},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": CANARY_CONFIGMAP.name, "namespace": "canary"},
            "data": {"aws_access_key_id": CANARY_KEY_ID, "aws_secret_access_key": CANARY_SECRET},
        },
    ]


@pytest.fixture(scope="module")
def scans(stack_run: Callable[[str], Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Finding]]:
    """Both stacks rendered with the canaries, scanned by two checkov processes at once."""
    started = {}
    for stack in STACKS:
        folder = tmp_path_factory.mktemp(f"checkov-{stack}")
        files = {**checkov.render(stack_run(stack), folder), **checkov.write_objects(_canaries(), folder, "canary-")}
        started[stack] = (checkov.start(folder), files)
    return {stack: checkov.finish(process, files) for stack, (process, files) in started.items()}


def _stack_findings(found: list[Finding]) -> Iterator[Finding]:
    return (f for f in found if f.obj.namespace != "canary")


def test_checkov_is_the_pinned_version() -> None:
    out = subprocess.run([str(checkov.checkov_binary()), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == checkov.CHECKOV_VERSION
    pinned = (ROOT / "tools" / "checkov" / "requirements.txt").read_text()
    assert f"checkov=={checkov.CHECKOV_VERSION} \\\n    --hash=sha256:" in pinned


@pytest.mark.parametrize("stack", STACKS)
def test_the_scan_reports_the_canaries(stack: str, scans: dict[str, list[Finding]]) -> None:
    canary = {(f.check, f.obj) for f in scans[stack] if f.obj.namespace == "canary"}
    assert {("CKV_K8S_16", CANARY_DEPLOYMENT), ("CKV_K8S_43", CANARY_DEPLOYMENT)} <= canary
    assert any(check.startswith("CKV_SECRET_") and obj == CANARY_CONFIGMAP for check, obj in canary), canary


@pytest.mark.parametrize("stack", STACKS)
def test_every_finding_is_accepted_with_its_reason(stack: str, scans: dict[str, list[Finding]]) -> None:
    unexplained = [str(f) for f in _stack_findings(scans[stack]) if accepted(f, stack) is None]
    assert unexplained == [], (
        f"checkov finds on the {stack} stack (fix it, or accept it with its reason in harness/checkov_accepted.py):\n"
        + "\n".join(unexplained)
    )


def test_every_accepted_entry_still_accepts_a_finding(scans: dict[str, list[Finding]]) -> None:
    stale = [
        entry
        for entry in ACCEPTED
        if not any(entry.accepts(f, stack) for stack in entry.stacks for f in _stack_findings(scans[stack]))
    ]
    assert stale == [], "accepted findings checkov no longer reports: delete them from harness/checkov_accepted.py"


def test_every_entry_has_a_reason_and_known_stacks() -> None:
    for entry in ACCEPTED:
        assert entry.check.startswith("CKV_") and len(entry.reason) > 20 and set(entry.stacks) <= set(STACKS), entry


def test_rendering_writes_one_object_per_file_without_secret_values(tmp_path: Path) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s", "namespace": "n"},
        "stringData": {"password": "hunter2"},
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"securityContext": {"runAsUser": 10001.0}},
    }
    files = checkov.write_objects([secret, pod], tmp_path)
    assert sorted(files.values()) == [ObjectId("Pod", "", "p"), ObjectId("Secret", "n", "s")]
    written = [yaml.safe_load((tmp_path / name).read_text()) for name in sorted(files)]
    assert written[0]["stringData"] == {"password": checkov.REDACTED}
    assert written[1]["spec"]["securityContext"]["runAsUser"] == 10001  # an int, as the API server returns it


def test_a_missing_checkov_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CHECKOV_BIN", str(tmp_path / "checkov"))
    with pytest.raises(FileNotFoundError, match="make setup"):
        checkov.command(tmp_path)
