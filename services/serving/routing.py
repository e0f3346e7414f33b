"""Choosing the variant (alias) that answers `POST /predict`.

The routing model (`services.common.serving_rules`) says which share of traffic each alias gets now; the
router turns the shares into cumulative buckets over [0, 1). With a client id (header `X-Client-Id`) the
point in [0, 1) is a pure function of the id: a 64-bit BLAKE2b hash, so the same client always reaches the
same variant, in every worker and replica, for as long as the shares stay the same. Without a client id
the point is random. Shadow routing always answers with the primary and names the alias that receives a
copy.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass

from services.common.serving_rules import RoutingConfig

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


@dataclass(frozen=True)
class _Buckets:
    """Cumulative upper bounds over [0, 1) and their aliases, for one value of the active alias."""

    active: str | None
    bounds: tuple[float, ...]
    aliases: tuple[str, ...]
    decisions: tuple[Decision, ...]  # one per alias, built once (a decision per request costs an allocation)


class Router:
    """Routes by the configured mode; `active()` is the blue-green alias switched to at run time."""

    def __init__(self, routing: RoutingConfig, active: Callable[[], str | None]) -> None:
        self.routing = routing
        self._active = active
        self._rng = random.Random()
        self._shadow = routing.shadow_alias()
        self._buckets = self._bucket(active())

    def weights(self) -> dict[str, float]:
        """The share of traffic (0..1) each alias gets now."""
        return self.routing.shares(self._active())

    def choose(self, client_id: str | None) -> Decision:
        active = self._active()
        buckets = self._buckets if self._buckets.active == active else self._bucket(active)
        if len(buckets.aliases) == 1:
            return buckets.decisions[0]
        point = client_point(client_id) if client_id else self._rng.random()
        return buckets.decisions[min(bisect.bisect_right(buckets.bounds, point), len(buckets.aliases) - 1)]

    def _bucket(self, active: str | None) -> _Buckets:
        shares = self.routing.shares(active)
        bounds: list[float] = []
        acc = 0.0
        for share in shares.values():
            acc += share
            bounds.append(acc)
        bounds[-1] = 1.0  # guard against rounding: the last bucket closes the interval
        decisions = tuple(Decision(alias, shadow=self._shadow) for alias in shares)
        self._buckets = _Buckets(active, tuple(bounds), tuple(shares), decisions)
        return self._buckets
