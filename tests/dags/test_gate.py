"""The quality gate's decision (pure function)."""

from __future__ import annotations

import math

import pytest
from mlops_tasks.gate import GateDecision, decide


def _decide(candidate: float, baseline: float | None = None, baseline_version: str | None = None) -> GateDecision:
    return decide(
        metric="test_accuracy",
        threshold=0.9,
        max_regression=0.02,
        candidate=candidate,
        baseline=baseline,
        baseline_version=baseline_version,
    )


def test_first_model_only_needs_the_threshold() -> None:
    decision = _decide(0.93, None, None)
    assert decision.passed
    assert "no current version" in decision.reason


def test_below_threshold_is_rejected_with_the_numbers_in_the_reason() -> None:
    decision = _decide(0.82, None, None)
    assert not decision.passed
    assert "0.8200 is below the threshold 0.9000" in decision.reason


def test_regression_beyond_the_margin_is_rejected() -> None:
    decision = _decide(0.95, 0.98, "4")
    assert not decision.passed
    assert "regresses by 0.0300 against version 4" in decision.reason


def test_regression_within_the_margin_passes() -> None:
    decision = _decide(0.965, 0.98, "4")
    assert decision.passed
    assert "within 0.0200 of version 4" in decision.reason


def test_threshold_applies_even_when_better_than_the_current_version() -> None:
    decision = _decide(0.85, 0.80, "2")
    assert not decision.passed
    assert "below the threshold" in decision.reason


def test_nan_is_rejected() -> None:
    assert not _decide(math.nan, None, None).passed


def test_negative_margin_is_an_error() -> None:
    with pytest.raises(ValueError, match="max_regression"):
        decide(metric="m", candidate=1.0, threshold=0.5, max_regression=-0.1, baseline=None, baseline_version=None)
