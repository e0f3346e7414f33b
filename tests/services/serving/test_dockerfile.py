"""The serving Dockerfile: hadolint-clean, pinned base, non-root, lock-installed, the tests' command."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from services.common import contract
from services.serving import SERVING_COMMAND

DOCKERFILE = Path(__file__).resolve().parents[3] / "services" / "serving" / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"


def instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(HADOLINT), "--no-color", str(path)], capture_output=True, text=True, timeout=60)


def test_hadolint_passes_and_would_catch_problems(tmp_path: Path) -> None:
    done = lint(DOCKERFILE)
    assert done.returncode == 0, done.stdout + done.stderr
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\nCMD python -m services.serving\n")
    assert lint(bad).returncode != 0  # the linter really runs and fails on what it should


def test_start_command_is_the_one_the_tests_use() -> None:
    cmds = [rest for kw, rest in instructions(DOCKERFILE.read_text()) if kw == "CMD"]
    assert len(cmds) == 1
    assert tuple(json.loads(cmds[0])) == SERVING_COMMAND


@pytest.mark.parametrize("keyword", ["FROM", "USER", "EXPOSE", "RUN"])
def test_image_settings(keyword: str) -> None:
    found = [rest for kw, rest in instructions(DOCKERFILE.read_text()) if kw == keyword]
    assert found, keyword
    if keyword == "FROM":
        image = found[0].split()[0]
        assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", image), image  # pinned to a patch version
    elif keyword == "USER":
        user = found[-1].split(":")[0]
        assert user.isdigit() and int(user) != 0  # numeric, non-root: runAsNonRoot can verify it
    elif keyword == "EXPOSE":
        assert found == [str(contract.SERVING_PORT)]
    else:
        sync = [r for r in found if "uv sync" in r]
        assert sync and "--frozen" in sync[0] and "--group serving" in sync[0]
