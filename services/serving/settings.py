"""Settings of the serving service, read once from the contract's environment variables.

Routing (`MLOPS_SERVING_ROUTING`, JSON) is one of:

- ``{"mode": "fixed", "alias": "champion"}``
- ``{"mode": "ab", "weights": {"champion": 70, "challenger": 30}}``
- ``{"mode": "canary", "primary": "champion", "challenger": "challenger", "percent": 10}``
- ``{"mode": "blue-green", "active": "blue", "standby": "green"}`` (switched through the admin API)
- ``{"mode": "shadow", "primary": "champion", "shadow": "challenger"}``

Unset: ``fixed`` on the first alias of `MLOPS_SERVING_ALIASES` (default ``champion``). Every alias named
by the routing is loaded even if `MLOPS_SERVING_ALIASES` omits it. Invalid settings stop the process at
start with a message naming the variable.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from services.common import contract

ALIAS_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
Alias = Annotated[str, Field(pattern=ALIAS_PATTERN)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FixedRouting(_Strict):
    mode: Literal["fixed"]
    alias: Alias


class ABRouting(_Strict):
    mode: Literal["ab"]
    weights: dict[Alias, Annotated[float, Field(ge=0)]]

    @model_validator(mode="after")
    def _positive_total(self) -> ABRouting:
        if not self.weights or sum(self.weights.values()) <= 0:
            raise ValueError("ab routing needs at least one alias with a positive weight")
        return self


class CanaryRouting(_Strict):
    mode: Literal["canary"]
    primary: Alias
    challenger: Alias
    percent: Annotated[float, Field(ge=0, le=100)]

    @model_validator(mode="after")
    def _distinct(self) -> CanaryRouting:
        if self.primary == self.challenger:
            raise ValueError("canary primary and challenger must differ")
        return self


class BlueGreenRouting(_Strict):
    mode: Literal["blue-green"]
    active: Alias
    standby: Alias

    @model_validator(mode="after")
    def _distinct(self) -> BlueGreenRouting:
        if self.active == self.standby:
            raise ValueError("blue-green active and standby must differ")
        return self


class ShadowRouting(_Strict):
    mode: Literal["shadow"]
    primary: Alias
    shadow: Alias

    @model_validator(mode="after")
    def _distinct(self) -> ShadowRouting:
        if self.primary == self.shadow:
            raise ValueError("shadow primary and shadow must differ")
        return self


RoutingConfig = Annotated[
    FixedRouting | ABRouting | CanaryRouting | BlueGreenRouting | ShadowRouting, Field(discriminator="mode")
]
_ROUTING = TypeAdapter(RoutingConfig)


def parse_routing(value: object) -> RoutingConfig:
    """Validate a routing object (the service at start, the stack settings before a deploy).

    Raises ValueError whose message names each wrong field, e.g. `percent: Input should be less
    than or equal to 100`.
    """
    try:
        return _ROUTING.validate_python(value)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            # the first location item is the union member chosen by `mode`; the rest is the field
            loc = ".".join(str(p) for p in err["loc"][1:])
            msg = str(err["msg"]).removeprefix("Value error, ")
            problems.append(f"{loc}: {msg}" if loc else msg)
        raise ValueError("; ".join(problems)) from None


def routing_aliases(routing: RoutingConfig) -> tuple[str, ...]:
    """Every alias the routing can send a request to (or shadow to), primary first."""
    if isinstance(routing, FixedRouting):
        return (routing.alias,)
    if isinstance(routing, ABRouting):
        return tuple(routing.weights)
    if isinstance(routing, CanaryRouting):
        return (routing.primary, routing.challenger)
    if isinstance(routing, BlueGreenRouting):
        return (routing.active, routing.standby)
    return (routing.primary, routing.shadow)


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
        raw_routing = contract.SERVING_ROUTING.get()
        if raw_routing is None:
            routing: RoutingConfig = FixedRouting(mode="fixed", alias=listed[0] if listed else "champion")
        else:
            try:
                routing = parse_routing(json.loads(raw_routing))
            except ValueError as exc:  # json.JSONDecodeError is one
                raise SettingsError(f"{contract.SERVING_ROUTING.name} is invalid: {exc}") from exc
        aliases = tuple(dict.fromkeys(routing_aliases(routing) + listed))
        alias_check = TypeAdapter(list[Alias])
        try:
            alias_check.validate_python(list(aliases))
        except ValidationError as exc:
            raise SettingsError(f"{contract.SERVING_ALIASES.name} is invalid: {exc}") from exc
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
            workers=int(_number(contract.SERVING_WORKERS, 1, minimum=1, kind=int)),
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
