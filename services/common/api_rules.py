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
