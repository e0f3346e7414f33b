"""The dependency update bot's configuration (.github/renovate.json) parses and covers every kind of pinned
version: GitHub Actions by commit SHA, the uv lock, npm, the Dockerfiles' base images, and, through regex
managers run here on the real files, each Helm chart the program installs, every third-party image setting (tag
and digest), the Pulumi CLI and uv."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from harness.fetch_charts import pinned_charts
from stacks.settings import THIRD_PARTY_IMAGES, ImageRef
from tools.delivery.images import stages

ROOT = Path(__file__).resolve().parents[2]
CONFIG: dict[str, Any] = json.loads((ROOT / ".github" / "renovate.json").read_text())
FILES = subprocess.run(
    ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True
).stdout.split()


def python_regex(js: str) -> re.Pattern[str]:
    """Renovate's (RE2/JavaScript) named groups `(?<name>...)` in Python's spelling."""
    return re.compile(re.sub(r"\(\?<(\w+)>", r"(?P<\1>", js))


def files_of(manager: dict[str, Any]) -> list[str]:
    patterns = []
    for pattern in manager["managerFilePatterns"]:
        assert pattern.startswith("/") and pattern.endswith("/"), f"{pattern}: use a /regex/ file pattern"
        patterns.append(re.compile(pattern[1:-1]))
    return [f for f in FILES if any(p.search(f) for p in patterns)]


def extracted(manager: dict[str, Any]) -> dict[str, list[str]]:
    """What the regex manager extracts: file -> current values."""
    found: dict[str, list[str]] = {}
    for path in files_of(manager):
        text = (ROOT / path).read_text()
        for match_string in manager["matchStrings"]:
            values = [m.group("currentValue") for m in python_regex(match_string).finditer(text)]
            if values:
                found.setdefault(path, []).extend(values)
    return found


def managers_for(dep: str) -> list[dict[str, Any]]:
    return [m for m in CONFIG["customManagers"] if m.get("depNameTemplate") == dep]


def test_the_configuration_covers_each_kind_of_dependency() -> None:
    assert CONFIG["$schema"] == "https://docs.renovatebot.com/renovate-schema.json"
    assert set(CONFIG["enabledManagers"]) == {"github-actions", "pep621", "npm", "dockerfile", "custom.regex"}
    assert "helpers:pinGitHubActionDigestsToSemver" in CONFIG["extends"]
    pins = {tuple(r.get("matchManagers", [])): r.get("pinDigests") for r in CONFIG["packageRules"]}
    assert pins[("github-actions",)] is True and pins[("dockerfile",)] is True
    assert CONFIG["lockFileMaintenance"]["enabled"] is True
    # the files those managers read are where Renovate looks for them
    assert {"pyproject.toml", "uv.lock", "package.json", "package-lock.json"} <= set(FILES)
    dockerfiles = [f for f in FILES if re.search(r"(^|/|\.)([Dd]ocker|[Cc]ontainer)file$", f)]
    assert {"services/serving/Dockerfile", "services/airflow/Dockerfile", "profiles/gpu/Dockerfile"} <= set(dockerfiles)
    for dockerfile in dockerfiles:
        found = stages((ROOT / dockerfile).read_text())
        bases = [base for i, (_, base, _) in enumerate(found) if base not in {n for n, _, _ in found[:i]}]
        assert bases and all(":" in b for b in bases), f"{dockerfile}: base images need a tag Renovate can update"


@pytest.mark.parametrize(("chart", "repo", "version"), pinned_charts())
def test_every_chart_the_program_installs_has_a_regex_manager(chart: str, repo: str, version: str) -> None:
    (manager,) = managers_for(chart)
    assert (manager["datasourceTemplate"], manager["registryUrlTemplate"]) == ("helm", repo)
    found = extracted(manager)  # one declaration, in the module of its settings group
    assert list(found.values()) == [[version]] and all(path.startswith("stacks/settings/") for path in found)


def test_the_pulumi_cli_version_of_every_workflow_is_covered() -> None:
    (manager,) = managers_for("pulumi/pulumi")
    pinned = {f for f in FILES if f.startswith(".github/workflows/") and "PULUMI_VERSION:" in (ROOT / f).read_text()}
    found = extracted(manager)
    assert set(found) == pinned and len(pinned) >= 3
    assert {v for values in found.values() for v in values} == {"3.272.0"}


def test_the_uv_version_is_covered_where_it_is_pinned() -> None:
    (manager,) = managers_for("uv")
    assert extracted(manager) == {".github/actions/setup/action.yml": ["0.13.8"], "Makefile": ["0.13.8"]}


def test_every_regex_manager_finds_something() -> None:
    for manager in CONFIG["customManagers"]:
        assert manager["customType"] == "regex"
        assert extracted(manager), manager["description"]


def test_every_third_party_image_setting_is_updated_with_its_digest() -> None:
    """The docker regex manager reads exactly THIRD_PARTY_IMAGES (the defaults of `images.thirdParty`): each entry
    as repository, tag and digest, which Renovate then updates together."""
    (manager,) = [m for m in CONFIG["customManagers"] if m.get("datasourceTemplate") == "docker"]
    (path,) = files_of(manager)
    found = [
        (m.group("depName"), m.group("currentValue"), m.group("currentDigest"))
        for pattern in manager["matchStrings"]
        for m in python_regex(pattern).finditer((ROOT / path).read_text())
    ]
    expected = [(r.repository, r.tag, r.digest) for r in map(ImageRef.parse, THIRD_PARTY_IMAGES.values())]
    assert sorted(found) == sorted(expected) and len(found) == len(THIRD_PARTY_IMAGES)
    (rule,) = [r for r in CONFIG["packageRules"] if r.get("matchManagers") == ["custom.regex"]]
    assert rule["matchDatasources"] == ["docker"] and rule["pinDigests"] is True
