"""Fixtures for the policy pack tests: a clean policy environment for every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pulumi.runtime import config as runtime_config


@pytest.fixture(autouse=True)
def policy_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No stack name or stack config from the developer's shell; pulumi's global config restored.

    The CLI hands a pack the stack in PULUMI_STACK and the stack's config in PULUMI_CONFIG, and the
    SDK's analyzer copies PULUMI_CONFIG into pulumi's process-wide config: undo that after each test.
    """
    for var in ("PULUMI_STACK", "PULUMI_CONFIG", "PULUMI_PROJECT", "PULUMI_DRY_RUN", "PULUMI_ORGANIZATION"):
        monkeypatch.delenv(var, raising=False)
    saved = dict(runtime_config.CONFIG.get())
    yield
    runtime_config.CONFIG.set(saved)
