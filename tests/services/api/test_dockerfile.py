"""The API Dockerfile: hadolint-clean, pinned base, non-root, lock-installed, the tests' command, the code the
API imports (services/ only: nothing of dags/) copied in."""

from __future__ import annotations

import json
import re
from pathlib import Path

from services.api import API_COMMAND
from services.common import contract
from tests.services.serving.test_dockerfile import instructions, lint

DOCKERFILE = Path(__file__).resolve().parents[3] / "services" / "api" / "Dockerfile"


def test_hadolint_passes() -> None:
    done = lint(DOCKERFILE)
    assert done.returncode == 0, done.stdout + done.stderr


def test_image_runs_the_tests_command_as_non_root_on_the_contract_port() -> None:
    found = instructions(DOCKERFILE.read_text())
    by = {kw: [rest for k, rest in found if k == kw] for kw in ("FROM", "USER", "EXPOSE", "CMD", "COPY", "RUN", "ENV")}
    assert tuple(json.loads(by["CMD"][0])) == API_COMMAND and len(by["CMD"]) == 1
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", by["FROM"][0].split()[0])
    user = by["USER"][-1].split(":")[0]
    assert user.isdigit() and int(user) != 0
    assert by["EXPOSE"] == [str(contract.API_PORT)]
    assert any("uv sync --frozen --no-default-groups --group api" in r for r in by["RUN"])
    assert "services/ ./services/" in by["COPY"] and not any("dags" in c for c in by["COPY"])
    assert "PYTHONPATH=/app " in by["ENV"][0] and "dags" not in by["ENV"][0]
