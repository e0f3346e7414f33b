"""Runtime settings of the DAGs: each model's endpoints, from its catalog entry and the endpoints contract.

The MLflow URL and the serving admin token come from the contract (`services.common.contract`); the model's own
serving URLs come from its entry of the model catalog (`serving_url`, `reload_url`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from services.common.contract import MLFLOW_TRACKING_URI, RELOAD_TOKEN
from services.common.serving_rules import DEFAULT_ALIASES

if TYPE_CHECKING:
    from mlops_tasks.model_catalog import ModelEntry

DEFAULT_ALIAS = DEFAULT_ALIASES[0]

# XCom key under which `promote` (and the manual rollback's `move_alias`) remembers the version that
# held the alias before it was moved: {"model", "alias", "previous_version", "new_version"}.
PREVIOUS_VERSION_XCOM_KEY = "previous_version"

# Model-version tag written on promotion: the version that held the alias before this one.
# `rollback_<model>` with target "previous" follows it.
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
    def for_model(cls, entry: ModelEntry) -> Endpoints:
        """The endpoints of one model: MLflow and the token from the contract, its serving from the catalog."""
        return cls(
            tracking_uri=MLFLOW_TRACKING_URI.require(),
            serving_url=entry.serving_url,
            reload_url=entry.reload_url,
            reload_token=RELOAD_TOKEN.get(),
        )


def alias(params: Mapping[str, Any], allowed: tuple[str, ...]) -> str:
    """The run's `alias` param: one the model's serving loads."""
    value = params.get("alias")
    if not isinstance(value, str) or not value.strip():
        raise ValueError("param 'alias' must be a non-empty string")
    value = value.strip()
    if value not in allowed:
        raise ValueError(f"param 'alias' is {value!r}; the model's serving loads only {', '.join(allowed)}")
    return value
