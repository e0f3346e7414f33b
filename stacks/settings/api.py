"""Settings group `api.*`: the platform API (defaults and bounds from services/common/api_rules.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.common import api_rules
from services.common.serving_rules import QUANTITY
from stacks.settings.engine import by_env, setting

_AIRFLOW_USER = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


def _resources(value: dict[str, Any]) -> dict[str, str]:
    """`{cpu, memory}` as Kubernetes quantities (a YAML number such as `cpu: 1` is taken as its text)."""
    if set(value) != {"cpu", "memory"}:
        raise ValueError("must be an object with exactly cpu and memory")
    out = {key: str(value[key]) for key in ("cpu", "memory")}
    for key, quantity in out.items():
        if isinstance(value[key], bool) or not QUANTITY.match(quantity):
            raise ValueError(f"{key} must be a Kubernetes quantity such as 500m, 2 or 4Gi")
    return out


@dataclass(frozen=True)
class ApiSettings:
    """The platform API (services/api, docs/api.md): its replicas, its Airflow user, its loops, its pods' size, its
    tokens' expiry and rate limit, and the rotation of its admin token."""

    replicas: int = setting(
        "api.replicas",
        "API replicas (any replica serves any client; one at a time leads the reconciler)",
        default_fn=by_env(1, 2),
        minimum=1,
        maximum=10,
    )
    airflow_user: str = setting(
        "api.airflowUser",
        "Airflow user the API triggers and follows DAG runs as (created by a Job, role User; password generated)",
        default=api_rules.AIRFLOW_USER,
        pattern=_AIRFLOW_USER,
    )
    reconcile_seconds: float = setting(
        "api.reconcileSeconds",
        "interval of the reconciler that brings unfinished trainings and rollbacks up to date from Airflow and MLflow",
        default=api_rules.RECONCILE_SECONDS.default,
        minimum=api_rules.RECONCILE_SECONDS.minimum,
        maximum=api_rules.RECONCILE_SECONDS.maximum,
    )
    events_poll_seconds: float = setting(
        "api.eventsPollSeconds",
        "how often an open event stream (SSE) looks for new events",
        default=api_rules.EVENTS_POLL_SECONDS.default,
        minimum=api_rules.EVENTS_POLL_SECONDS.minimum,
        maximum=api_rules.EVENTS_POLL_SECONDS.maximum,
    )
    requests: Mapping[str, str] = setting(
        "api.requests",
        "CPU and memory requests of each API pod: {cpu, memory}",
        default=dict(api_rules.REQUESTS),
        parse=_resources,
    )
    limits: Mapping[str, str] = setting(
        "api.limits",
        "CPU and memory limits of each API pod: {cpu, memory} (memory at least the request)",
        default=dict(api_rules.LIMITS),
        parse=_resources,
    )
    token_ttl_days: float = setting(
        "api.tokenTtlDays",
        "days until a new API token expires when its creator asks for no expiry (at most api.tokenMaxTtlDays)",
        default=api_rules.TOKEN_TTL_DAYS.default,
        minimum=api_rules.TOKEN_TTL_DAYS.minimum,
        maximum=api_rules.TOKEN_TTL_DAYS.maximum,
    )
    token_max_ttl_days: float = setting(
        "api.tokenMaxTtlDays",
        "the longest expiry (days) a new API token may ask for (`expires_in`); above it the API answers 400",
        default=api_rules.TOKEN_MAX_TTL_DAYS.default,
        minimum=api_rules.TOKEN_MAX_TTL_DAYS.minimum,
        maximum=api_rules.TOKEN_MAX_TTL_DAYS.maximum,
    )
    rate_limit_per_second: float = setting(
        "api.rateLimitPerSecond",
        "requests per second each API token (the admin token too) may make to ONE replica (a token bucket in each "
        "replica's memory: across N replicas a client may reach up to N times this); above it 429 with Retry-After",
        default=api_rules.RATE_LIMIT_PER_SECOND.default,
        minimum=api_rules.RATE_LIMIT_PER_SECOND.minimum,
        maximum=api_rules.RATE_LIMIT_PER_SECOND.maximum,
    )
    rate_limit_burst: int = setting(
        "api.rateLimitBurst",
        "requests an API token may make at once above api.rateLimitPerSecond (the bucket's size)",
        default=int(api_rules.RATE_LIMIT_BURST.default),
        minimum=api_rules.RATE_LIMIT_BURST.minimum,
        maximum=api_rules.RATE_LIMIT_BURST.maximum,
    )
    admin_token_generation: int = setting(
        "api.adminTokenGeneration",
        "generation of the API's admin token: raising it generates a new admin token (the stack output apiAdminToken)"
        " in the other of two slots; see docs/api.md, rotating the admin token",
        default=1,
        minimum=1,
        maximum=1_000_000,
    )
    admin_token_keep_previous: bool = setting(
        "api.adminTokenKeepPrevious",
        "the API also accepts the previous generation's admin token (the overlap of a rotation without downtime); "
        "set it back to false once every admin client uses the new token",
        default=False,
    )
