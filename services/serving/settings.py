"""Settings of the serving service, read once from the contract's environment variables.

Routing (`MLOPS_SERVING_ROUTING`, JSON) is one of the modes of `services.common.serving_rules` (table in
docs/serving.md, "Routing"); unset, it is ``fixed`` on the first alias of `MLOPS_SERVING_ALIASES`, else on
the first of `DEFAULT_ALIASES`. Every alias named by the routing is loaded even if `MLOPS_SERVING_ALIASES`
omits it. Aliases, the default workers and the routing are checked by the same rules as the stack settings'.
Authentication (`MLOPS_SERVING_AUTH`, JSON) is one of the modes of `services.common.serving_auth`; unset, it
is ``none``. With ``apiKey`` the keys file (`MLOPS_SERVING_API_KEYS_FILE`) must be readable and well formed at
start. The shadow comparison's rule (`MLOPS_SERVING_SHADOW_AGREEMENT`, JSON) is an `Agreement`; unset, answers
must be equal. Invalid settings stop the process at start with a message naming the variable.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass

from services.common import contract
from services.common.env_settings import SettingsError, flag, number, required, value
from services.common.serving_auth import ApiKeyAuth, AuthConfig, NoAuth, parse_auth
from services.common.serving_rules import (
    ALIAS_PATTERN,
    DEFAULT_ALIASES,
    DEFAULT_WORKERS,
    Agreement,
    FixedRouting,
    RoutingConfig,
    invalid_aliases,
    parse_agreement,
    parse_routing,
)
from services.serving.limits import DEFAULT_MAX_IN_FLIGHT
from services.serving.security import read_key_file

__all__ = ["Settings", "SettingsError"]


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
    auth: AuthConfig = NoAuth()
    api_keys_file: str | None = None
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    public_docs: bool = True
    shadow_agreement: Agreement = Agreement()

    @classmethod
    def from_env(cls) -> Settings:
        tracking_uri = required(contract.MLFLOW_TRACKING_URI)
        model_name = required(contract.MODEL_NAME)
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
        auth, api_keys_file = _auth()
        return cls(
            tracking_uri=tracking_uri,
            model_name=model_name,
            aliases=aliases,
            routing=routing,
            reload_token=value(contract.RELOAD_TOKEN),
            slack_webhook_url=value(contract.SLACK_WEBHOOK_URL),
            poll_seconds=number(contract.SERVING_POLL_SECONDS, 30.0, minimum=0.1, kind=float),
            log_dir=contract.SERVING_LOG_DIR.get(),
            max_batch=int(number(contract.SERVING_MAX_BATCH, 1000, minimum=1, kind=int)),
            host=contract.SERVING_HOST.get("0.0.0.0") or "0.0.0.0",
            port=int(number(contract.SERVING_PORT_VAR, contract.SERVING_PORT, minimum=1, kind=int)),
            workers=int(number(contract.SERVING_WORKERS, DEFAULT_WORKERS, minimum=1, kind=int)),
            instance=f"{socket.gethostname()}:{os.getpid()}",  # the pod name in Kubernetes
            auth=auth,
            api_keys_file=api_keys_file,
            max_in_flight=int(number(contract.SERVING_MAX_IN_FLIGHT, DEFAULT_MAX_IN_FLIGHT, minimum=1, kind=int)),
            public_docs=flag(contract.SERVING_PUBLIC_DOCS, default=True),
            shadow_agreement=_agreement(),
        )


def _agreement() -> Agreement:
    raw = contract.SERVING_SHADOW_AGREEMENT.get()
    try:
        return parse_agreement(json.loads(raw)) if raw is not None else Agreement()
    except ValueError as exc:  # json.JSONDecodeError is one
        raise SettingsError(f"{contract.SERVING_SHADOW_AGREEMENT.name} is invalid: {exc}") from exc


def _auth() -> tuple[AuthConfig, str | None]:
    raw = contract.SERVING_AUTH.get()
    try:
        auth = parse_auth(json.loads(raw)) if raw is not None else NoAuth()
    except ValueError as exc:  # json.JSONDecodeError is one
        raise SettingsError(f"{contract.SERVING_AUTH.name} is invalid: {exc}") from exc
    keys_file = contract.SERVING_API_KEYS_FILE.get()
    if isinstance(auth, ApiKeyAuth):
        if keys_file is None:
            raise SettingsError(
                f"{contract.SERVING_API_KEYS_FILE.name} is not set: {contract.SERVING_AUTH.name} asks for apiKey"
            )
        try:
            read_key_file(keys_file)
        except (OSError, ValueError) as exc:
            raise SettingsError(f"{contract.SERVING_API_KEYS_FILE.name} ({keys_file}) is unusable: {exc}") from exc
    return auth, keys_file
