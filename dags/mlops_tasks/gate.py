"""The quality gate: a pure decision over the catalog's `gate` (services.common.catalog.Gate), unit-tested without
MLflow.

A candidate passes when its gate metric is a number, reaches `threshold` in the gate's direction (`max`: at least,
`min`: at most) and, when `minImprovement` is set and the alias has a holder (the champion), beats the champion by
at least `minImprovement` ON THE SAME EVALUATION: the training code scored the champion on its own held-out data
and logged `champion.<metric>` (services.common.training_contract.champion_metric).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from services.common.catalog import Gate
from services.common.training_contract import CHAMPION_MODEL_URI, champion_metric


class GateError(ValueError):
    """The gate cannot decide: a metric it needs was not logged."""


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reason: str
    metric: str
    direction: str
    candidate: float
    threshold: float | None
    min_improvement: float | None
    champion: float | None = None
    champion_version: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _better_word(direction: str) -> str:
    return "higher is better" if direction == "max" else "lower is better"


def missing_champion_metric(gate: Gate, metrics: dict[str, float], champion_version: str | None) -> str | None:
    """Why the gate cannot compare with the champion (None when it can, or need not)."""
    if gate.min_improvement is None or champion_version is None:
        return None
    name = champion_metric(gate.metric)
    if name in metrics:
        return None
    logged = ", ".join(sorted(metrics)) or "none"
    return (
        f"the metric {name!r} was not logged in the run (logged metrics: {logged}); gate.minImprovement compares "
        f"with the champion (version {champion_version}): score the model of {CHAMPION_MODEL_URI.name} on the same "
        f"held-out data and log it as {name!r}"
    )


def decide(gate: Gate, candidate: float, champion: float | None, champion_version: str | None) -> GateDecision:
    """Accept `candidate` iff it passes the threshold and, when `gate.min_improvement` is set and a champion
    exists, is better than `champion` (its score on the same held-out data) by at least `min_improvement`.

    GateError when the comparison is required and `champion` is None."""
    fmt = f"{gate.metric} {{:.4f}}"
    rejected = GateDecision(
        passed=False,
        reason="",
        metric=gate.metric,
        direction=gate.direction,
        candidate=candidate,
        threshold=gate.threshold,
        min_improvement=gate.min_improvement,
        champion=champion,
        champion_version=champion_version,
    )
    sense = _better_word(gate.direction)
    if math.isnan(candidate):
        return replace(rejected, reason=f"candidate {gate.metric} is NaN")
    if not gate.passes_threshold(candidate):
        side = "below" if gate.direction == "max" else "above"
        return replace(
            rejected,
            reason=f"candidate {fmt.format(candidate)} is {side} the threshold {gate.threshold:.4f} ({sense})",
        )
    passed: list[str] = []
    if gate.threshold is not None:
        passed.append(f"candidate {fmt.format(candidate)} passes the threshold {gate.threshold:.4f} ({sense})")
    else:
        passed.append(f"candidate {fmt.format(candidate)} (no threshold; {sense})")
    if gate.min_improvement is not None and champion_version is not None:
        if champion is None:
            raise GateError(f"{champion_metric(gate.metric)} is needed to compare with version {champion_version}")
        if math.isnan(champion):
            return replace(rejected, reason=f"{champion_metric(gate.metric)} of version {champion_version} is NaN")
        gain = gate.better(candidate, champion)
        comparison = (
            f"the champion (version {champion_version}) scores {champion:.4f} on the same held-out data: improvement "
            f"{gain:+.4f} ({sense}), at least {gate.min_improvement:+.4f} required"
        )
        if gain < gate.min_improvement:
            return replace(
                rejected, reason=f"candidate {fmt.format(candidate)} does not beat the champion: {comparison}"
            )
        passed.append(comparison)
    elif gate.min_improvement is not None:
        passed.append("no champion to compare with yet")
    else:
        passed.append("no comparison with the champion (gate.minImprovement unset)")
    return replace(rejected, passed=True, reason="; ".join(passed))
