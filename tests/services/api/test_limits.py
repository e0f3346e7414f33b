"""Offline units of the token limits: the token bucket (burst, refill, the wait it reports, one bucket per token,
forgetting idle buckets changes nothing), Retry-After in whole seconds, the expiry a new token gets (default,
asked, refused above the maximum naming `expires_in`), and the settings read from the contract's variables
(bounds, the default expiry within the maximum, errors naming the variable)."""

from __future__ import annotations

import pytest

from services.api import limits
from services.api.limits import RateLimiter, TokenBucket, TokenSettings, retry_after
from services.common import contract
from services.common.env_settings import SettingsError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_the_burst_then_refills_at_the_rate() -> None:
    bucket = TokenBucket(rate=2.0, capacity=3.0, tokens=3.0, updated=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)  # one request refills in 1/rate s
    assert bucket.take(0.25) == pytest.approx(0.25)  # refused requests take nothing
    assert bucket.take(0.5) == 0.0
    assert bucket.take(10.0) == 0.0 and bucket.tokens == pytest.approx(2.0)  # refilled up to the capacity only
    assert bucket.take(5.0) == 0.0  # a clock going back never adds tokens


def test_limiter_keeps_one_bucket_per_token() -> None:
    clock = Clock()
    limiter = RateLimiter(per_second=1.0, burst=2, clock=clock)
    assert [limiter.check("a"), limiter.check("a")] == [0.0, 0.0]
    assert limiter.check("a") == pytest.approx(1.0)
    assert limiter.check("b") == 0.0  # another token is not affected
    clock.now += 1.0
    assert limiter.check("a") == 0.0 and limiter.check("a") > 0


def test_limiter_forgets_idle_buckets_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "MAX_BUCKETS", 3)
    clock = Clock()
    limiter = RateLimiter(per_second=1.0, burst=5, clock=clock)
    limiter.check("busy")
    for _ in range(4):
        limiter.check("busy")  # empty now
    limiter.check("idle-1")
    clock.now += 10  # idle-1 is full again; busy too
    limiter.check("busy")
    limiter.check("other")
    limiter.check("new")  # over the limit: the full buckets go, the used ones stay
    assert set(limiter.buckets) == {"busy", "other", "new"}  # idle-1 was full: forgetting it changes nothing
    assert limiter.buckets["other"].tokens == pytest.approx(4.0)


@pytest.mark.parametrize(("wait", "header"), [(0.001, "1"), (0.5, "1"), (1.0, "1"), (1.01, "2"), (9.2, "10")])
def test_retry_after_is_whole_seconds_at_least_one(wait: float, header: str) -> None:
    assert retry_after(wait) == header


def test_expiry_of_a_new_token() -> None:
    tokens = TokenSettings(ttl_seconds=3600, max_ttl_seconds=7200)
    assert tokens.expiry_seconds(None) == 3600
    assert tokens.expiry_seconds(60) == 60 and tokens.expiry_seconds(7200) == 7200
    with pytest.raises(ValueError, match="expires_in 7201 s is above"):
        tokens.expiry_seconds(7201)
    with pytest.raises(SettingsError, match=contract.API_TOKEN_TTL.name):
        TokenSettings(ttl_seconds=7201, max_ttl_seconds=7200)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for var in (contract.API_TOKEN_TTL, contract.API_TOKEN_MAX_TTL, contract.API_RATE_LIMIT_PER_SECOND):
        monkeypatch.delenv(var.name, raising=False)
    monkeypatch.delenv(contract.API_RATE_LIMIT_BURST.name, raising=False)
    return monkeypatch


def test_settings_defaults_and_values(env: pytest.MonkeyPatch) -> None:
    default = TokenSettings.from_env()
    assert (default.ttl_seconds, default.max_ttl_seconds) == (30 * 86_400, 90 * 86_400)
    assert (default.per_second, default.burst) == (20.0, 40)
    env.setenv(contract.API_TOKEN_TTL.name, "3600")
    env.setenv(contract.API_RATE_LIMIT_PER_SECOND.name, "0.5")
    read = TokenSettings.from_env()
    assert (read.ttl_seconds, read.per_second) == (3600.0, 0.5)


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        (contract.API_TOKEN_TTL, "1", ">="),
        (contract.API_TOKEN_MAX_TTL, "forever", "must be a float"),
        (contract.API_TOKEN_TTL, str(100 * 86_400), f"<= {contract.API_TOKEN_MAX_TTL.name}"),
        (contract.API_RATE_LIMIT_PER_SECOND, "0", ">="),
        (contract.API_RATE_LIMIT_BURST, "0.5", ">="),
    ],
)
def test_bad_settings_name_the_variable(
    env: pytest.MonkeyPatch, var: contract.EnvVar, value: str, message: str
) -> None:
    env.setenv(var.name, value)
    with pytest.raises(SettingsError, match=var.name) as caught:
        TokenSettings.from_env()
    assert message in str(caught.value)
