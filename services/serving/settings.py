"""Settings of the serving service, read once from the contract's environment variables.

Routing (`MLOPS_SERVING_ROUTING`, JSON) is one of the modes of `services.common.serving_rules` (table in
docs/serving.md, "Routing"); unset, it is ``fixed`` on the first alias of `MLOPS_SERVING_ALIASES`, else on
the first of `DEFAULT_ALIASES`. Every alias named by the routing is loaded even if `MLOPS_SERVING_ALIASES`
omits it. Aliases, the default workers and the routing are checked by the same rules as the stack settings'.
Invalid settings stop the process at start with a message naming the variable.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass

from services.common import contract
from services.common.serving_rules import (
    ALIAS_PATTERN,
    DEFAULT_ALIASES,
    DEFAULT_WORKERS,
    FixedRouting,
    RoutingConfig,
    invalid_aliases,
    parse_routing,
)


class SettingsError(ValueError):
    """A serving setting is missing or invalid; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    tracking_uri: str
    model_name: str
    aliases: tuple[str, ...]
    routing: RoutingConfig
    reload_token: str | None
    slack_webhook_url: str | None
    poll_seconds: float
    log_dir: str | None
    max_batch: int
    host: str
    port: int
    workers: int
    instance: str  # this process in logs and alerts: host (pod) name and pid

    @classmethod
    def from_env(cls) -> Settings:
        tracking_uri = _required(contract.MLFLOW_TRACKING_URI)
        model_name = _required(contract.MODEL_NAME)
        listed = tuple(a.strip() for a in (contract.SERVING_ALIASES.get("") or "").split(",") if a.strip())
        bad = invalid_aliases(listed)
        if bad:
            raise SettingsError(f"{contract.SERVING_ALIASES.name} is invalid: {bad} do not match {ALIAS_PATTERN}")
        raw_routing = contract.SERVING_ROUTING.get()
        if raw_routing is None:
            routing: RoutingConfig = FixedRouting(alias=listed[0] if listed else DEFAULT_ALIASES[0])
        else:
            try:
                routing = parse_routing(json.loads(raw_routing))
            except ValueError as exc:  # json.JSONDecodeError is one
                raise SettingsError(f"{contract.SERVING_ROUTING.name} is invalid: {exc}") from exc
        aliases = tuple(dict.fromkeys(routing.aliases() + listed))
        return cls(
            tracking_uri=tracking_uri,
            model_name=model_name,
            aliases=aliases,
            routing=routing,
            reload_token=contract.RELOAD_TOKEN.get(),
            slack_webhook_url=contract.SLACK_WEBHOOK_URL.get(),
            poll_seconds=_number(contract.SERVING_POLL_SECONDS, 30.0, minimum=0.1, kind=float),
            log_dir=contract.SERVING_LOG_DIR.get(),
            max_batch=int(_number(contract.SERVING_MAX_BATCH, 1000, minimum=1, kind=int)),
            host=contract.SERVING_HOST.get("0.0.0.0") or "0.0.0.0",
            port=int(_number(contract.SERVING_PORT_VAR, contract.SERVING_PORT, minimum=1, kind=int)),
            workers=int(_number(contract.SERVING_WORKERS, DEFAULT_WORKERS, minimum=1, kind=int)),
            instance=f"{socket.gethostname()}:{os.getpid()}",  # the pod name in Kubernetes
        )


def _required(var: contract.EnvVar) -> str:
    value = var.get()
    if value is None:
        raise SettingsError(f"environment variable {var.name} is not set: {var.description}")
    return value


def _number(var: contract.EnvVar, default: float, *, minimum: float, kind: type[int] | type[float]) -> float:
    raw = var.get()
    if raw is None:
        return default
    try:
        value = kind(raw)
    except ValueError as exc:
        raise SettingsError(f"{var.name} must be a {kind.__name__}, got {raw!r}") from exc
    if value < minimum:
        raise SettingsError(f"{var.name} must be >= {minimum}, got {raw!r}")
    return value
