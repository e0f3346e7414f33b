"""Choosing the variant (alias) that answers `POST /predict`.

The routing model (`services.common.serving_rules`) says which share of traffic each alias gets now; the
router turns the shares into cumulative buckets over [0, 1). With a client id (header `X-Client-Id`) the
point in [0, 1) is a pure function of the id: a 64-bit BLAKE2b hash, so the same client always reaches the
same variant, in every worker and replica, for as long as the shares stay the same. Without a client id
the point is random. Shadow routing always answers with the primary and names the alias that receives a
copy.

Only aliases with a loaded version take traffic (`effective_shares`): the share of an alias with nothing loaded
(no version in the registry yet, or its load failed) goes to the first loaded of the routing's `candidates`, the
primary first (for blue-green: the other side of the pair when the active side has nothing). Once every alias is
loaded the shares are the configured ones. The router recomputes its buckets when told that the loaded set
changed (`refresh`), never per request.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections.abc import Callable, Container
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


def candidates(routing: RoutingConfig, active: str | None) -> tuple[str, ...]:
    """The aliases that may answer routed requests, in the order in which they take over the share of an alias
    with nothing loaded: those with a configured share (primary first), then the rest of a blue-green pair."""
    return tuple(dict.fromkeys((*routing.shares(active), *routing.switch_pair())))


def effective_shares(routing: RoutingConfig, active: str | None, loaded: Container[str]) -> dict[str, float]:
    """The share (0..1] each alias takes now: its configured share when it has a `loaded` version, plus, for the
    first loaded candidate, the shares of the aliases that have nothing loaded. Empty when no candidate is loaded."""
    taker = next((a for a in candidates(routing, active) if a in loaded), None)
    if taker is None:
        return {}
    configured = routing.shares(active)
    shares = {alias: share for alias, share in configured.items() if alias in loaded}
    if len(shares) < len(configured) or taker not in shares:
        shares[taker] = 1.0 - sum(share for alias, share in shares.items() if alias != taker)
    return shares


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
    shares: dict[str, float]  # the effective shares (empty: nothing loaded, the buckets are the configured ones)
    candidates: tuple[str, ...]


class Router:
    """Routes by the configured mode; `active()` is the blue-green alias switched to at run time, `loaded()` the
    aliases with a loaded version (None: every alias counts as loaded, the configured shares)."""

    def __init__(
        self,
        routing: RoutingConfig,
        active: Callable[[], str | None],
        loaded: Callable[[], Container[str]] | None = None,
    ) -> None:
        self.routing = routing
        self._active = active
        self._loaded = loaded
        self._rng = random.Random()
        self._shadow = routing.shadow_alias()
        self._buckets = self._bucket(active())

    def use(self, routing: RoutingConfig) -> None:
        """Route by `routing` from now on (set at run time: the registry's routing tag)."""
        self.routing = routing
        self._shadow = routing.shadow_alias()
        self._bucket(self._active())

    def weights(self) -> dict[str, float]:
        """The configured share of traffic (0..1) of each alias that gets any."""
        return self.routing.shares(self._active())

    def effective(self) -> dict[str, float]:
        """The share each alias takes now (`effective_shares`; empty when nothing is loaded)."""
        return dict(self._current().shares)

    def candidates(self) -> tuple[str, ...]:
        """The aliases that may answer a routed request now, in the order they take over missing shares."""
        return self._current().candidates

    def refresh(self) -> None:
        """Recompute the buckets: the loaded aliases changed."""
        self._bucket(self._active())

    def _current(self) -> _Buckets:
        active = self._active()
        return self._buckets if self._buckets.active == active else self._bucket(active)

    def choose(self, client_id: str | None) -> Decision:
        active = self._active()  # `_current()` inlined: this runs for every request
        buckets = self._buckets if self._buckets.active == active else self._bucket(active)
        if len(buckets.aliases) == 1:
            return buckets.decisions[0]
        point = client_point(client_id) if client_id else self._rng.random()
        return buckets.decisions[min(bisect.bisect_right(buckets.bounds, point), len(buckets.aliases) - 1)]

    def _bucket(self, active: str | None) -> _Buckets:
        configured = self.routing.shares(active)
        shares = configured if self._loaded is None else effective_shares(self.routing, active, self._loaded())
        routed = shares or configured  # nothing loaded: the configured buckets (the request path answers 503)
        bounds: list[float] = []
        acc = 0.0
        for share in routed.values():
            acc += share
            bounds.append(acc)
        bounds[-1] = 1.0  # guard against rounding: the last bucket closes the interval
        decisions = tuple(Decision(alias, shadow=self._shadow) for alias in routed)
        self._buckets = _Buckets(
            active, tuple(bounds), tuple(routed), decisions, shares, candidates(self.routing, active)
        )
        return self._buckets
