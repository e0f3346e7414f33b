"""Runtime settings of the DAGs, resolved from DAG params and the endpoints contract.

Endpoints and secrets are read ONLY through `services.common.contract`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.common.contract import (
    MLFLOW_TRACKING_URI,
    MODEL_NAME,
    RELOAD_TOKEN,
    SERVING_RELOAD_URL,
    SERVING_URL,
)
from services.common.serving_rules import DEFAULT_ALIASES

DEFAULT_MODEL_NAME = "iris-classifier"
DEFAULT_ALIAS = DEFAULT_ALIASES[0]

# XCom key under which `promote` (and the manual rollback's `move_alias`) remembers the version that
# held the alias before it was moved: {"model", "alias", "previous_version", "new_version"}.
PREVIOUS_VERSION_XCOM_KEY = "previous_version"

# Model-version tag written on promotion: the version that held the alias before this one.
# `rollback_model` with target "previous" follows it.
PREVIOUS_TAG_PREFIX = "mlops.previous_version."

# Tags written on training runs by the quality gate.
GATE_TAG = "mlops.quality_gate"
GATE_REASON_TAG = "mlops.quality_gate_reason"


def previous_tag(alias: str) -> str:
    return f"{PREVIOUS_TAG_PREFIX}{alias}"


@dataclass(frozen=True)
class Endpoints:
    tracking_uri: str
    serving_url: str
    reload_url: str
    reload_token: str | None

    @classmethod
    def from_env(cls) -> Endpoints:
        serving_url = SERVING_URL.require().rstrip("/")
        return cls(
            tracking_uri=MLFLOW_TRACKING_URI.require(),
            serving_url=serving_url,
            # The admin API may live on its own base URL; default to the serving URL.
            reload_url=(SERVING_RELOAD_URL.get() or serving_url).rstrip("/"),
            reload_token=RELOAD_TOKEN.get(),
        )


def model_name(params: Mapping[str, Any]) -> str:
    """The model named in the params, else the contract's MODEL_NAME, else the default."""
    value = params.get("model_name")
    if isinstance(value, str) and value.strip():
        return value.strip()
    return MODEL_NAME.get(DEFAULT_MODEL_NAME) or DEFAULT_MODEL_NAME


def alias(params: Mapping[str, Any]) -> str:
    value = params.get("alias")
    if not isinstance(value, str) or not value.strip():
        raise ValueError("param 'alias' must be a non-empty string")
    return value.strip()
