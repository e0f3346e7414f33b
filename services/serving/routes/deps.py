"""The state of one serving process and the typed dependencies of the routes.

`ServingState` is built once per process in the application's lifespan and held on `app.state.serving`;
routes receive it as `State`. `check_alias` is THE unknown-alias check (404) of every path with an `{alias}`
(`KnownAlias` for the routes, the lean request path's `by_alias` for the prediction endpoints), and
`require_token` guards the admin router. The router routes only to loaded aliases: the state refreshes it, and the
`serving_traffic_share` gauges, whenever the loaded, missing or active aliases change (`follow_variants`), and logs
the shares when they change. Prediction bodies are read, and refused beyond `max_body` (413), by
the lean request path (`services.serving.routes.lean.read_body`). The state's `auth` (`services.serving.security`)
and `limiter` (`services.serving.limits`) are the admission of prediction requests (`services.serving.routes.guards`).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.exceptions import HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.common import contract
from services.serving.limits import ConcurrencyLimiter
from services.serving.observability import Alerter, LogFile, Metrics
from services.serving.routing import Router
from services.serving.schema import RequestError
from services.serving.security import Authenticator
from services.serving.settings import Settings
from services.serving.variants import VariantManager

log = logging.getLogger("mlops.serving")

# The longest Retry-After of a 503 "nothing loaded": the watcher's interval, but no more than this (an explicit
# reload makes a version available sooner than the next poll).
MAX_RETRY_AFTER_SECONDS = 60


@dataclass
class ServingState:
    """Everything the routes of one process share."""

    settings: Settings
    metrics: Metrics
    alerter: Alerter
    manager: VariantManager
    router: Router
    known: frozenset[str]  # the aliases this process serves
    max_body: int  # bytes; larger prediction bodies are refused with 413
    reload_token: bytes | None
    auth: Authenticator  # who may predict
    limiter: ConcurrencyLimiter  # how many predictions at once
    log_file: LogFile
    retry_after: int  # seconds, the Retry-After of a 503 answered while nothing is loaded to answer
    shadow_tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @classmethod
    def build(cls, settings: Settings, log_file: LogFile | None = None) -> ServingState:
        metrics = Metrics()
        log_file = log_file or LogFile(directory=settings.log_dir)
        metrics.log_file_writable.set(1 if log_file.writable else 0)
        alerter = Alerter(settings.slack_webhook_url, {"instance": settings.instance, "service": "serving"})
        manager = VariantManager(settings, metrics, alerter)
        state = cls(
            settings=settings,
            metrics=metrics,
            alerter=alerter,
            manager=manager,
            router=Router(settings.routing, lambda: manager.active, lambda: manager.variants),
            known=frozenset(settings.aliases),
            max_body=settings.max_batch * 4096 + 65536,
            reload_token=settings.reload_token.encode() if settings.reload_token else None,
            auth=Authenticator.build(settings.auth, settings.api_keys_file, metrics.registry),
            limiter=ConcurrencyLimiter(settings.max_in_flight, metrics.registry),
            log_file=log_file,
            retry_after=min(MAX_RETRY_AFTER_SECONDS, max(1, math.ceil(settings.poll_seconds))),
        )
        state.follow_variants()
        manager.on_change.append(state.follow_variants)
        return state

    def follow_variants(self) -> None:
        """Route by what is loaded now; show the shares in `serving_traffic_share`, log them when they change."""
        before = self.router.effective()
        if self.router.routing is not self.manager.routing:
            self.router.use(self.manager.routing)  # a routing set at run time (or back to the stack's)
        self.router.refresh()
        now = self.router.effective()
        weights = self.router.weights()
        for alias in self.settings.aliases:
            self.metrics.traffic_share.labels(alias).set(now.get(alias, 0.0))
            self.metrics.routing_weight.labels(alias).set(weights.get(alias, 0.0))
        if now != before:
            log.info(
                "traffic shares of %s now %s (configured %s)",
                self.settings.model_name,
                {a: round(w, 6) for a, w in now.items()},
                {a: round(w, 6) for a, w in self.router.weights().items()},
                extra={"event": "serving.traffic_shares", "shares": now},
            )


async def get_state(request: Request) -> ServingState:
    state: ServingState = request.app.state.serving
    return state


State = Annotated[ServingState, Depends(get_state)]


def check_alias(state: ServingState, alias: str) -> str:
    """The `{alias}` of a path, 404 unless this service serves it."""
    if alias not in state.known:
        raise RequestError(404, f"unknown alias {alias!r}; this service serves {sorted(state.known)}", "alias")
    return alias


async def known_alias(alias: str, state: State) -> str:
    return check_alias(state, alias)


KnownAlias = Annotated[str, Depends(known_alias)]


_bearer = HTTPBearer(auto_error=False, description="The reload token")


async def require_token(
    state: State, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """401 without a bearer token, 403 with a wrong one (compared in constant time)."""
    if credentials is None or not credentials.credentials:
        raise HTTPException(401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    if state.reload_token is None:
        raise HTTPException(403, f"the admin API is disabled: {contract.RELOAD_TOKEN.name} is not set")
    if not hmac.compare_digest(credentials.credentials.encode("utf-8", "surrogateescape"), state.reload_token):
        raise HTTPException(403, "wrong bearer token")
