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
    """The platform API (services/api, docs/api.md): its replicas, its Airflow user, its loops, its pods' size."""

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
