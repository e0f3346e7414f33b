"""The quality gate: a pure decision, unit-tested without MLflow."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reason: str
    metric: str
    candidate: float
    threshold: float
    max_regression: float
    baseline: float | None = None
    baseline_version: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(
    *,
    metric: str,
    candidate: float,
    threshold: float,
    max_regression: float,
    baseline: float | None,
    baseline_version: str | None,
) -> GateDecision:
    """Accept `candidate` iff it reaches `threshold` and is not worse than the current alias holder's
    `baseline` (measured on the same held-out data) by more than `max_regression`."""
    if not 0.0 <= max_regression:
        raise ValueError(f"max_regression must be >= 0, got {max_regression}")
    rejected = GateDecision(
        passed=False,
        reason="",
        metric=metric,
        candidate=candidate,
        threshold=threshold,
        max_regression=max_regression,
        baseline=baseline,
        baseline_version=baseline_version,
    )
    if math.isnan(candidate):
        return replace(rejected, reason=f"candidate {metric} is NaN")
    if candidate < threshold:
        return replace(rejected, reason=f"candidate {metric} {candidate:.4f} is below the threshold {threshold:.4f}")
    if baseline is not None and candidate < baseline - max_regression:
        return replace(
            rejected,
            reason=(
                f"candidate {metric} {candidate:.4f} regresses by {baseline - candidate:.4f} against "
                f"version {baseline_version} ({baseline:.4f}); the allowed regression is {max_regression:.4f}"
            ),
        )
    if baseline is None:
        reason = f"candidate {metric} {candidate:.4f} >= threshold {threshold:.4f}; no current version to compare"
    else:
        reason = (
            f"candidate {metric} {candidate:.4f} >= threshold {threshold:.4f} and within {max_regression:.4f} "
            f"of version {baseline_version} ({baseline:.4f})"
        )
    return replace(rejected, passed=True, reason=reason)
