"""Choosing the variant (alias) that answers `POST /predict`.

With a client id (header `X-Client-Id`) the choice is a pure function of the id: a 64-bit BLAKE2b hash
mapped to [0, 1) and compared with the cumulative weights, so the same client always reaches the same
variant, in every worker and replica, for as long as the weights stay the same. Without a client id
the point in [0, 1) is random. Shadow routing always answers with the primary and names the alias that
receives a copy.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass

from services.serving.settings import (
    ABRouting,
    BlueGreenRouting,
    CanaryRouting,
    FixedRouting,
    RoutingConfig,
    ShadowRouting,
)

CLIENT_ID_HEADER = "x-client-id"
_SCALE = float(2**64)


def client_point(client_id: str) -> float:
    """The client's fixed point in [0, 1)."""
    return (
        int.from_bytes(hashlib.blake2b(client_id.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")
        / _SCALE
    )


@dataclass(frozen=True)
class Decision:
    alias: str
    shadow: str | None = None


class Router:
    """Routes by the configured mode; blue-green reads the current active alias from `active()`."""

    def __init__(self, routing: RoutingConfig, active: Callable[[], str | None]) -> None:
        self.routing = routing
        self._active = active
        self._rng = random.Random()
        self._table: tuple[tuple[float, str], ...] = ()
        if isinstance(routing, ABRouting):
            self._table = _cumulative(routing.weights)
        elif isinstance(routing, CanaryRouting):
            self._table = _cumulative({routing.primary: 100.0 - routing.percent, routing.challenger: routing.percent})

    def weights(self) -> dict[str, float]:
        """The share of traffic (0..1) each alias gets now."""
        r = self.routing
        if isinstance(r, FixedRouting):
            return {r.alias: 1.0}
        if isinstance(r, ShadowRouting):
            return {r.primary: 1.0}
        if isinstance(r, BlueGreenRouting):
            return {self._active() or r.active: 1.0}
        out: dict[str, float] = {}
        low = 0.0
        for high, alias in self._table:
            out[alias] = out.get(alias, 0.0) + (high - low)
            low = high
        return out

    def choose(self, client_id: str | None) -> Decision:
        r = self.routing
        if isinstance(r, FixedRouting):
            return Decision(r.alias)
        if isinstance(r, BlueGreenRouting):
            return Decision(self._active() or r.active)
        if isinstance(r, ShadowRouting):
            return Decision(r.primary, shadow=r.shadow)
        point = client_point(client_id) if client_id else self._rng.random()
        for high, alias in self._table:
            if point < high:
                return Decision(alias)
        return Decision(self._table[-1][1])


def _cumulative(weights: dict[str, float]) -> tuple[tuple[float, str], ...]:
    total = sum(weights.values())
    table: list[tuple[float, str]] = []
    acc = 0.0
    for alias, weight in weights.items():
        if weight <= 0:
            continue
        acc += weight / total
        table.append((acc, alias))
    # Guard against rounding: the last bucket closes the interval.
    table[-1] = (1.0, table[-1][1])
    return tuple(table)
