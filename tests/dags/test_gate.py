"""The quality gate's decision (pure function) over the catalog's gate: the threshold and the comparison with the
champion follow the gate's direction (higher or lower is better), minImprovement is measured against the
champion's score on the same evaluation, and a missing champion metric is named when the comparison needs it."""

from __future__ import annotations

import math

import pytest
from mlops_tasks.gate import GateError, decide, missing_champion_metric

from services.common.catalog import Gate

ACCURACY = Gate(metric="test_accuracy", direction="max", threshold=0.9, minImprovement=0.0)
RMSE = Gate(metric="test_rmse", direction="min", threshold=70.0, minImprovement=1.0)


def test_first_version_only_needs_the_threshold() -> None:
    decision = decide(ACCURACY, 0.93, None, None)
    assert decision.passed and "no champion to compare with yet" in decision.reason
    assert decision.as_dict()["direction"] == "max"


@pytest.mark.parametrize(
    ("gate", "candidate", "passes", "text"),
    [
        (ACCURACY, 0.82, False, "test_accuracy 0.8200 is below the threshold 0.9000 (higher is better)"),
        (ACCURACY, 0.90, True, "passes the threshold 0.9000"),
        (RMSE, 72.5, False, "test_rmse 72.5000 is above the threshold 70.0000 (lower is better)"),
        (RMSE, 55.0, True, "test_rmse 55.0000 passes the threshold 70.0000 (lower is better)"),
    ],
)
def test_the_threshold_follows_the_direction(gate: Gate, candidate: float, passes: bool, text: str) -> None:
    decision = decide(gate, candidate, None, None)
    assert decision.passed is passes and text in decision.reason


def test_a_lower_error_beats_the_champion_by_min_improvement() -> None:
    better = decide(RMSE, 54.0, 56.0, "3")
    assert better.passed and "improvement +2.0000 (lower is better), at least +1.0000 required" in better.reason
    not_enough = decide(RMSE, 55.5, 56.0, "3")
    assert not not_enough.passed and "does not beat the champion" in not_enough.reason
    worse = decide(RMSE, 65.2, 56.0, "3")  # a higher error: worse, whatever max-thinking would say
    assert not worse.passed and "improvement -9.2000" in worse.reason and worse.champion_version == "3"


def test_a_higher_accuracy_beats_the_champion_and_equal_passes_with_zero_improvement() -> None:
    assert decide(ACCURACY, 0.95, 0.95, "2").passed
    rejected = decide(ACCURACY, 0.93, 0.95, "2")
    assert not rejected.passed and "improvement -0.0200 (higher is better)" in rejected.reason


def test_without_min_improvement_the_champion_is_not_compared() -> None:
    gate = Gate(metric="test_accuracy", direction="max", threshold=0.9)
    decision = decide(gate, 0.91, 0.99, "5")
    assert decision.passed and "gate.minImprovement unset" in decision.reason


def test_the_threshold_applies_even_when_better_than_the_champion() -> None:
    assert not decide(ACCURACY, 0.85, 0.80, "2").passed


def test_no_threshold_only_compares() -> None:
    gate = Gate(metric="loss", direction="min", minImprovement=0.0)
    assert decide(gate, 5.0, None, None).passed
    assert not decide(gate, 5.0, 4.0, "1").passed


def test_nan_is_rejected() -> None:
    assert not decide(ACCURACY, math.nan, None, None).passed
    assert not decide(ACCURACY, 0.95, math.nan, "1").passed


def test_a_missing_champion_metric_is_named_when_the_comparison_needs_it() -> None:
    with pytest.raises(GateError, match=r"champion\.test_rmse is needed to compare with version 3"):
        decide(RMSE, 55.0, None, "3")
    problem = missing_champion_metric(RMSE, {"test_rmse": 55.0, "test_mae": 40.0}, "3")
    assert problem is not None
    assert "'champion.test_rmse' was not logged in the run (logged metrics: test_mae, test_rmse)" in problem
    assert "MLOPS_CHAMPION_MODEL_URI" in problem
    assert missing_champion_metric(RMSE, {"test_rmse": 55.0}, None) is None  # no champion yet
    assert missing_champion_metric(RMSE, {"test_rmse": 55.0, "champion.test_rmse": 56.0}, "3") is None
    unset = Gate(metric="test_rmse", direction="min")
    assert missing_champion_metric(unset, {"test_rmse": 55.0}, "3") is None  # no comparison asked for
