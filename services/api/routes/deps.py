"""The state of one API process and the typed dependencies of the routes.

`require(scope)` is THE authentication of every `/v1` route: 401 without a bearer token or with one that is not
a live token of this API (unknown, revoked or expired), 403 when the token lacks the scope (`admin` holds every
scope), 429 with `Retry-After` when the token exceeds its rate limit (per replica, see `services.api.limits`).
A stored token's `last_used_at` is written at most once per `TOKEN_LAST_USED_SECONDS`, not on every request.
Model scoping is checked by the routes (`Principal.check_model`), which know the model a request is about.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.api import auth, limits, store
from services.api.airflow import AirflowClient
from services.api.catalog import CatalogFile
from services.api.db import Pool
from services.api.errors import ApiError
from services.api.limits import RateLimiter
from services.api.mlflow import MlflowClient
from services.api.reconciler import Reconciler
from services.api.settings import Settings
from services.common import api_rules


@dataclass
class ApiState:
    settings: Settings
    pool: Pool
    airflow: AirflowClient
    mlflow: MlflowClient
    catalog: CatalogFile
    reconciler: Reconciler
    admin_hashes: tuple[str, ...]  # the admin token, and the previous one during a rotation
    limiter: RateLimiter
    stopping: asyncio.Event = field(default_factory=asyncio.Event)


async def get_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


State = Annotated[ApiState, Depends(get_state)]

_bearer = HTTPBearer(auto_error=False, description="An API token (mlops_<id>_<secret>) or the admin token")


async def principal(
    state: State, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> auth.Principal:
    """Who is calling: 401 unless the bearer token is the admin token or a live stored token; 429 over its rate."""
    if credentials is None or not credentials.credentials:
        raise ApiError(401, "a bearer token is required (Authorization: Bearer <token>)", "Authorization")
    caller = await _authenticate(state, credentials.credentials)
    wait = state.limiter.check(caller.id)
    if wait > 0:
        raise ApiError(
            429,
            f"rate limit of this token exceeded ({state.limiter.per_second:g} requests/s, burst "
            f"{state.limiter.burst:g}): retry after {limits.retry_after(wait)} s",
            "Authorization",
            headers={"Retry-After": limits.retry_after(wait)},
        )
    return caller


async def _authenticate(state: ApiState, token: str) -> auth.Principal:
    digest = auth.digest(token).encode()
    if any([hmac.compare_digest(digest, admin.encode()) for admin in state.admin_hashes]):  # compares all
        return auth.ADMIN
    token_id = auth.token_id(token)
    if token_id is not None:
        async with state.pool.connection() as conn:
            row = await store.find_token(conn, token_id, api_rules.TOKEN_LAST_USED_SECONDS)
            if row is not None and auth.matches(token, str(row["token_hash"])):
                if row["expired"]:
                    expired = row["expires_at"].isoformat()
                    raise ApiError(401, f"the bearer token expired at {expired}: ask for a new one", "Authorization")
                if row["stale_use"]:
                    await store.touch_token(conn, token_id, api_rules.TOKEN_LAST_USED_SECONDS)
                models = frozenset(row["models"]) if row["models"] is not None else None
                return auth.Principal(token_id, str(row["name"]), auth.parse_scopes(row["scopes"]), models)
    raise ApiError(401, "the bearer token is not a valid token of this API (unknown or revoked)", "Authorization")


Caller = Annotated[auth.Principal, Depends(principal)]


def require(scope: auth.Scope) -> Callable[[auth.Principal], Awaitable[auth.Principal]]:
    """A dependency: the caller, 403 unless its token holds `scope`."""

    async def check(caller: Caller) -> auth.Principal:
        if not caller.allows(scope):
            have = ", ".join(sorted(caller.scopes)) or "none"
            raise ApiError(403, f"this token lacks the {scope.value!r} scope (it has: {have})", "Authorization")
        return caller

    return check


Reader = Annotated[auth.Principal, Depends(require(auth.Scope.READ))]
Trainer = Annotated[auth.Principal, Depends(require(auth.Scope.TRAIN))]
Deployer = Annotated[auth.Principal, Depends(require(auth.Scope.DEPLOY))]
Admin = Annotated[auth.Principal, Depends(require(auth.Scope.ADMIN))]
