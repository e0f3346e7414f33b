"""Fixtures of the observability tests: the Debian Prometheus binaries and the rule settings of a test stack."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from observability import rules

PROMTOOL_HELP = "apt-get install -y prometheus prometheus-alertmanager (.ci/run installs them)"
STACK_PREFIX = "mlops-dev"
SERVING_NS = f"{STACK_PREFIX}-serving"
AIRFLOW_NS = f"{STACK_PREFIX}-airflow"


def binary(name: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if path is None:
        pytest.fail(f"{name} is not installed: {PROMTOOL_HELP}")
    return path


@pytest.fixture(scope="session")
def promtool() -> str:
    return binary("promtool")


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    return binary("prometheus")


@pytest.fixture(scope="session")
def alertmanager_binary() -> str:
    return binary("prometheus-alertmanager")


@pytest.fixture(scope="session")
def rule_settings() -> rules.RuleSettings:
    return rules.RuleSettings(
        stack_prefix=STACK_PREFIX,
        serving_namespace=SERVING_NS,
        airflow_namespace=AIRFLOW_NS,
        watch_interval_seconds=30,
        retrain_days={"train_iris": 1},
    )


def render(template: str, labels: dict[str, str]) -> str:
    """A rule annotation as Prometheus renders it (the rules use `{{ $labels.<name> }}` only)."""
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), template)
