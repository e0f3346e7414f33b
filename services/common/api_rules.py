"""The platform API's defaults and bounds, defined once: the stack settings (`api.*`, stacks/settings), the
component (`components.platform_api.PlatformApiConfig`) and the service (services/api/settings.py) all take them
from here, so a value a stack accepts is one the service accepts, and the defaults agree."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class Interval:
    """A number of seconds: its default and the bounds both the stack settings and the service enforce."""

    default: float
    minimum: float
    maximum: float


RECONCILE_SECONDS = Interval(default=5.0, minimum=0.5, maximum=300)
EVENTS_POLL_SECONDS = Interval(default=1.0, minimum=0.1, maximum=30)
AIRFLOW_USER = "mlops-api"  # the Airflow user the API triggers and follows DAG runs as
REPLICAS = 1  # the component's default; the stack setting's default depends on the environment
# each API pod's size ({cpu, memory} as Kubernetes quantities)
REQUESTS: Mapping[str, str] = MappingProxyType({"cpu": "100m", "memory": "256Mi"})
LIMITS: Mapping[str, str] = MappingProxyType({"cpu": "1", "memory": "512Mi"})

# API tokens: the expiry a token gets when its creator asks for none, and the longest one may ask for (days)
TOKEN_TTL_DAYS = Interval(default=30.0, minimum=0.01, maximum=3650)
TOKEN_MAX_TTL_DAYS = Interval(default=90.0, minimum=0.01, maximum=3650)
# `last_used_at` of a token is written at most once per this many seconds (not a write per request)
TOKEN_LAST_USED_SECONDS = 60.0
# Per-token rate limit of each API replica (token bucket): sustained requests per second and the burst above it
RATE_LIMIT_PER_SECOND = Interval(default=20.0, minimum=0.1, maximum=10_000)
RATE_LIMIT_BURST = Interval(default=40, minimum=1, maximum=100_000)
SECONDS_PER_DAY = 86_400
