"""Routing shares and stickiness, measured on the real service (MLflow + PostgreSQL + moto S3)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from services.serving.routing import client_point
from tests.services.serving.conftest import metric_value, predict

pytestmark = [pytest.mark.servers, pytest.mark.slow]

Z = 4.5  # a correct router falls outside these bounds with probability < 1e-5 per check


def assert_binomial(k: int, n: int, p: float, what: str) -> None:
    sd = math.sqrt(n * p * (1 - p))
    low, high = n * p - Z * sd, n * p + Z * sd
    assert low <= k <= high, f"{what}: {k} of {n}, expected {n * p:.0f} within [{low:.1f}, {high:.1f}]"


def test_canary_shares_and_sticky_clients(new_model: Callable[..., Any], start_service: Callable[..., Any]) -> None:
    model = new_model(champion=1.0, challenger=0.05)
    versions = {"champion": model.versions[0].version, "challenger": model.versions[1].version}
    svc = start_service(
        model,
        aliases=("champion", "challenger"),
        routing={"mode": "canary", "primary": "champion", "challenger": "challenger", "percent": 20},
    )
    n = 600
    with httpx.Client(timeout=30) as client:
        answers = [predict(client, svc.base_url).json() for _ in range(n)]
        # every response names the alias and the version that answered
        assert {(a["alias"], a["version"]) for a in answers} == set(versions.items())
        assert_binomial(sum(a["alias"] == "challenger" for a in answers), n, 0.20, "random canary share")

        ids = [f"user-{i}" for i in range(300)]
        first = {}
        for cid in ids:
            response = predict(client, svc.base_url, headers={"X-Client-Id": cid})
            assert response.headers["x-model-alias"] == response.json()["alias"]
            first[cid] = response.json()["alias"]
        for cid in ids[:100]:
            for _ in range(3):
                assert predict(client, svc.base_url, headers={"X-Client-Id": cid}).json()["alias"] == first[cid]
    assert_binomial(sum(a == "challenger" for a in first.values()), len(ids), 0.20, "sticky canary share")
    # the sticky choice is the documented hash of the client id, the same in every process
    assert all((client_point(cid) >= 0.8) == (alias == "challenger") for cid, alias in first.items())


def test_ab_three_ways_across_two_workers(new_model: Callable[..., Any], start_service: Callable[..., Any]) -> None:
    model = new_model(a=1.0, b=0.3, c=0.05)
    weights = {"a": 50, "b": 30, "c": 20}
    svc = start_service(model, aliases=tuple(weights), routing={"mode": "ab", "weights": weights}, workers=2)
    n = 900
    with httpx.Client(timeout=30) as client:
        counts = Counter(predict(client, svc.base_url).json()["alias"] for _ in range(n))
        for alias, weight in weights.items():
            assert_binomial(counts[alias], n, weight / 100, f"ab share of {alias}")
        # stickiness holds whichever worker takes the connection (new connection per request)
        for cid in (f"c{i}" for i in range(40)):
            seen = {
                predict(httpx.Client(timeout=30), svc.base_url, headers={"X-Client-Id": cid}).json()["alias"]
                for _ in range(4)
            }
            assert len(seen) == 1, (cid, seen)
    # /metrics adds up both workers (Prometheus multiprocess mode): every request is counted, whichever
    # worker answers the scrape
    total = n + 40 * 4
    for _ in range(4):
        assert (
            sum(metric_value(svc.base_url, "serving_requests_total", alias=a, status="200") for a in weights) == total
        )
