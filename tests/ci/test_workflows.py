"""What the CI/CD workflows promise, read from the YAML: tests before previews, previews of both stacks
with the policy pack commented on the PR, OIDC instead of keys, secrets from the repository, dev then
prod behind the protected environment, one update per stack at a time, actions pinned to commits."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
GITHUB = ROOT / ".github"
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")
VERSION_COMMENT = re.compile(r"#\s*v\d+\.\d+\.\d+\s*$")


def load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict)
    if True in doc:  # YAML 1.1 reads the `on:` key as a boolean
        doc["on"] = doc.pop(True)
    return doc


PREVIEW = load(GITHUB / "workflows" / "preview.yml")
DEPLOY = load(GITHUB / "workflows" / "deploy.yml")
SETUP = load(GITHUB / "actions" / "setup" / "action.yml")


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(job.get("steps") or [])


def uses(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in steps(job) if str(s.get("uses", "")).startswith(action + "@")]


def one(job: dict[str, Any], action: str) -> dict[str, Any]:
    found = uses(job, action)
    assert len(found) == 1, f"expected one {action} step, found {len(found)}"
    return dict(found[0].get("with") or {})


def runs(job: dict[str, Any]) -> list[str]:
    return [str(s["run"]).strip() for s in steps(job) if "run" in s]


def all_uses() -> Iterator[tuple[Path, str, str]]:
    for path in [*(GITHUB / "workflows").glob("*.yml"), *(GITHUB / "actions").glob("*/action.yml")]:
        for line in path.read_text().splitlines():
            m = re.match(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$", line)
            if m:
                yield path, m.group(1), m.group(2)


def test_every_action_is_pinned_to_a_commit_with_its_version() -> None:
    seen = list(all_uses())
    assert seen
    for path, ref, rest in seen:
        if ref.startswith("./"):
            assert (ROOT / ref / "action.yml").is_file(), f"{path.name}: local action {ref} is missing"
            continue
        assert PINNED.match(ref), f"{path.name}: {ref} is not pinned to a full commit SHA"
        assert VERSION_COMMENT.search(rest), f"{path.name}: {ref} has no '# vX.Y.Z' comment naming the pinned release"


def test_setup_builds_the_locked_environment() -> None:
    setup_steps = SETUP["runs"]["steps"]
    assert SETUP["inputs"]["python-version"]["default"] == "3.11"
    assert any(str(s.get("uses", "")).startswith("astral-sh/setup-uv@") for s in setup_steps)
    commands = [s["run"] for s in setup_steps if "run" in s]
    assert commands[0] == "make setup"
    # then the pinned charts' values files for the Helm checks (no ../shared on GitHub's runners)
    assert len(commands) == 2 and "python -m harness.fetch_charts" in commands[1]
    assert 'MLOPS_SHARED_DIR=$RUNNER_TEMP/shared" >> "$GITHUB_ENV"' in commands[1]


def _test_job(doc: dict[str, Any]) -> dict[str, Any]:
    job = doc["jobs"]["test"]
    assert any(str(s.get("uses")) == "./.github/actions/setup" for s in steps(job))
    assert runs(job) == ["make test"], "CI must run exactly the README's test command"
    assert job["services"]["postgres"]["ports"] == ["5432:5432"]
    return job


def _no_long_lived_keys(doc: dict[str, Any]) -> None:
    text = yaml.safe_dump(doc)
    for forbidden in ("aws-access-key-id", "aws-secret-access-key", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert forbidden not in text


def _pulumi_job_basics(job: dict[str, Any], role_secret: str) -> dict[str, Any]:
    assert job["permissions"]["id-token"] == "write"
    aws = one(job, "aws-actions/configure-aws-credentials")
    assert aws["role-to-assume"] == "${{ secrets." + role_secret + " }}"
    env = job["env"]
    assert env["PULUMI_BACKEND_URL"] == "${{ secrets.PULUMI_BACKEND_URL }}"
    assert env["PULUMI_CONFIG_PASSPHRASE"] == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"
    kube = [s for s in steps(job) if "KUBECONFIG_DATA" in (s.get("env") or {})]
    assert len(kube) == 1 and "secrets.KUBECONFIG_" in kube[0]["env"]["KUBECONFIG_DATA"]
    # The kubeconfig and AWS credentials exist before Pulumi runs.
    order = [str(s.get("uses", s.get("name", ""))).split("@")[0] for s in steps(job)]
    assert order.index("aws-actions/configure-aws-credentials") < order.index("pulumi/actions")
    assert order.index(kube[0]["name"]) < order.index("pulumi/actions")
    pulumi = one(job, "pulumi/actions")
    assert pulumi["policyPacks"].endswith("/policy")
    assert pulumi["pulumi-version"]
    return pulumi


def test_pull_requests_test_then_preview_both_stacks_with_the_policy_pack() -> None:
    assert "pull_request" in PREVIEW["on"]
    assert PREVIEW["permissions"] == {"contents": "read"}
    _test_job(PREVIEW)
    job = PREVIEW["jobs"]["preview"]
    assert job["needs"] == "test"
    assert job["strategy"]["matrix"]["stack"] == ["dev", "prod"]
    assert job["permissions"]["pull-requests"] == "write"
    pulumi = _pulumi_job_basics(job, "AWS_PREVIEW_ROLE_ARN")
    assert pulumi["command"] == "preview"
    assert pulumi["stack-name"] == "${{ matrix.stack }}"
    assert pulumi["comment-on-pr"] is True
    assert "matrix.stack" in job["concurrency"]["group"]
    _no_long_lived_keys(PREVIEW)


def test_main_updates_dev_then_prod_behind_the_production_environment() -> None:
    assert DEPLOY["on"]["push"]["branches"] == ["main"]
    _test_job(DEPLOY)
    dev, prod = DEPLOY["jobs"]["up-dev"], DEPLOY["jobs"]["up-prod"]
    assert dev["needs"] == "test" and prod["needs"] == "up-dev"
    assert prod["environment"] == "production"
    for job, stack in ((dev, "dev"), (prod, "prod")):
        assert job["if"] == "github.ref == 'refs/heads/main'"
        pulumi = _pulumi_job_basics(job, "AWS_DEPLOY_ROLE_ARN")
        assert (pulumi["command"], pulumi["stack-name"]) == ("up", stack)
    _no_long_lived_keys(DEPLOY)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_one_update_per_stack_and_previews_never_cancel_updates(stack: str) -> None:
    up = DEPLOY["jobs"][f"up-{stack}"]["concurrency"]
    assert up == {"group": f"pulumi-up-{stack}", "cancel-in-progress": False}
    preview_group = PREVIEW["jobs"]["preview"]["concurrency"]["group"]
    assert not preview_group.startswith("pulumi-up-"), "a preview with cancel-in-progress would cancel a running update"
    # Every job that runs `pulumi up` on this stack is in that group.
    for doc in (PREVIEW, DEPLOY):
        for name, job in doc["jobs"].items():
            for step in uses(job, "pulumi/actions"):
                if step["with"]["command"] == "up" and step["with"]["stack-name"] == stack:
                    assert job["concurrency"]["group"] == f"pulumi-up-{stack}", name
