"""Limits on the API's tokens: their expiry (`TokenSettings`, read from the contract's variables) and the per-token
rate limit (`RateLimiter`, a token bucket per token).

Expiry: a new token expires `ttl_seconds` after its creation unless its creator asks for another expiry
(`expires_in`), which may not exceed `max_ttl_seconds` (400 naming `expires_in`).

Rate limit: each API process keeps one bucket per token (the admin token included) holding at most `burst`
requests, refilled at `per_second`; a request finding it empty is refused with 429 and `Retry-After` (whole
seconds until one request is available again). The buckets live in each replica's memory: a client spread over N
replicas by the Service may make up to N times the rate in total. Nothing is written per request.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from services.common import api_rules, contract
from services.common.env_settings import SettingsError, number

DAY = api_rules.SECONDS_PER_DAY
MAX_BUCKETS = 10_000  # buckets kept per process; full (idle) buckets are forgotten first beyond this


@dataclass(frozen=True)
class TokenSettings:
    """Expiry and rate limit of tokens (`MLOPS_API_TOKEN_*`, `MLOPS_API_RATE_LIMIT_*`)."""

    ttl_seconds: float = api_rules.TOKEN_TTL_DAYS.default * DAY
    max_ttl_seconds: float = api_rules.TOKEN_MAX_TTL_DAYS.default * DAY
    per_second: float = api_rules.RATE_LIMIT_PER_SECOND.default
    burst: float = api_rules.RATE_LIMIT_BURST.default

    def __post_init__(self) -> None:
        if self.ttl_seconds > self.max_ttl_seconds:
            raise SettingsError(
                f"{contract.API_TOKEN_TTL.name} ({self.ttl_seconds:g}) must be <= "
                f"{contract.API_TOKEN_MAX_TTL.name} ({self.max_ttl_seconds:g})"
            )

    @classmethod
    def from_env(cls) -> TokenSettings:
        def days(var: contract.EnvVar, rule: api_rules.Interval) -> float:
            return number(var, rule.default * DAY, minimum=rule.minimum * DAY, maximum=rule.maximum * DAY)

        def rate(var: contract.EnvVar, rule: api_rules.Interval) -> float:
            return number(var, rule.default, minimum=rule.minimum, maximum=rule.maximum)

        return cls(
            ttl_seconds=days(contract.API_TOKEN_TTL, api_rules.TOKEN_TTL_DAYS),
            max_ttl_seconds=days(contract.API_TOKEN_MAX_TTL, api_rules.TOKEN_MAX_TTL_DAYS),
            per_second=rate(contract.API_RATE_LIMIT_PER_SECOND, api_rules.RATE_LIMIT_PER_SECOND),
            burst=rate(contract.API_RATE_LIMIT_BURST, api_rules.RATE_LIMIT_BURST),
        )

    def expiry_seconds(self, asked: int | None) -> float:
        """The lifetime of a new token: `asked` (seconds) or the default; ValueError above the maximum."""
        if asked is None:
            return self.ttl_seconds
        if asked > self.max_ttl_seconds:
            raise ValueError(
                f"expires_in {asked} s is above the longest expiry this API grants: {self.max_ttl_seconds:g} s "
                f"({self.max_ttl_seconds / DAY:g} days)"
            )
        return float(asked)


@dataclass
class TokenBucket:
    """`capacity` requests at once, refilled at `rate` per second (times in seconds of a monotonic clock)."""

    rate: float
    capacity: float
    tokens: float
    updated: float

    def take(self, now: float) -> float:
        """Take one request: 0.0 when allowed, else the seconds until one is available (nothing taken)."""
        self.tokens = min(self.capacity, self.tokens + max(0.0, now - self.updated) * self.rate)
        self.updated = max(self.updated, now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate

    def full(self, now: float) -> bool:
        return self.tokens + max(0.0, now - self.updated) * self.rate >= self.capacity


@dataclass
class RateLimiter:
    """One `TokenBucket` per key (a token's id); `check(key)` is the seconds to wait, 0.0 when allowed."""

    per_second: float
    burst: float
    clock: Callable[[], float] = time.monotonic
    buckets: dict[str, TokenBucket] = field(default_factory=dict)

    def check(self, key: str) -> float:
        now = self.clock()
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= MAX_BUCKETS:
                self._forget_idle(now)
            bucket = self.buckets[key] = TokenBucket(self.per_second, self.burst, self.burst, now)
        return bucket.take(now)

    def _forget_idle(self, now: float) -> None:
        """Drop the buckets that are full again (forgetting them changes nothing); the oldest half if none is."""
        idle = [key for key, bucket in self.buckets.items() if bucket.full(now)]
        if not idle:
            idle = sorted(self.buckets, key=lambda key: self.buckets[key].updated)[: len(self.buckets) // 2]
        for key in idle:
            del self.buckets[key]


def retry_after(wait: float) -> str:
    """The `Retry-After` header for a wait in seconds: whole seconds, at least 1."""
    return str(max(1, math.ceil(wait)))
