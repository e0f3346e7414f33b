"""Scoped tokens (admin only): create (the token is shown once), list, revoke.

A token expires: after the API's default expiry, or after `expires_in` seconds up to the API's maximum (400
naming `expires_in` above it). `models` limits it to some catalog models (400 naming `models` for one the
catalog does not have). A model-scoped admin token creates only tokens limited to its own models (the new
token inherits its models when `models` is unset)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from services.api import auth, store
from services.api.errors import ApiError
from services.api.routes.bodies import AUTH_ERRORS, NOT_FOUND, TokenCreated, TokenInfo, TokenList, TokenRequest
from services.api.routes.deps import Admin, ApiState, State

router = APIRouter(prefix="/v1/tokens", tags=["tokens"], responses=AUTH_ERRORS)

TokenId = Annotated[str, Path(pattern=r"^[0-9a-f]{12}$", description="The token's id (mlops_<id>_...)")]


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _info(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "scopes": sorted(row["scopes"]),
        "models": sorted(row["models"]) if row["models"] is not None else None,
        "created_by": row["created_by"],
        "created_at": row["created_at"].isoformat(),
        "expires_at": row["expires_at"].isoformat(),
        "last_used_at": _iso(row.get("last_used_at")),
        "revoked_at": _iso(row.get("revoked_at")),
    }


def token_models(body: TokenRequest, caller: auth.Principal, state: ApiState) -> list[str] | None:
    """The models of the new token: each known to the catalog (400 `models`), within the caller's (403)."""
    if body.models is None:
        return caller.model_filter()
    catalog = state.catalog.current()
    unknown = sorted(set(body.models) - set(catalog.models))
    if unknown:
        known = ", ".join(sorted(catalog.models))
        raise ApiError(400, f"models not in the catalog: {', '.join(unknown)} (the catalog has: {known})", "models")
    for model in body.models:
        caller.check_model(model, "models")
    return sorted(set(body.models))


@router.post(
    "",
    status_code=201,
    response_model=TokenCreated,
    summary="Create a token with the given scopes, optionally limited to some models and with its expiry",
)
async def create_token(body: TokenRequest, caller: Admin, state: State) -> dict[str, Any]:
    try:
        expires_in = state.settings.tokens.expiry_seconds(body.expires_in)
    except ValueError as exc:
        raise ApiError(400, str(exc), "expires_in") from None
    models = token_models(body, caller, state)
    new = auth.new_token()
    scopes = sorted({s.value for s in body.scopes})
    async with state.pool.connection() as conn:
        row = await store.insert_token(
            conn, new.id, body.name, scopes, new.hash, caller.id, expires_in=expires_in, models=models
        )
    return {**_info(row), "token": new.token}


@router.get("", response_model=TokenList, summary="Every token with its expiry and last use (never the token)")
async def list_tokens(caller: Admin, state: State) -> dict[str, Any]:
    async with state.pool.connection() as conn:
        rows = await store.list_tokens(conn)
    return {"tokens": [_info(r) for r in rows]}


@router.delete("/{token_id}", response_model=TokenInfo, responses=NOT_FOUND, summary="Revoke a token (at once)")
async def revoke_token(token_id: TokenId, caller: Admin, state: State) -> dict[str, Any]:
    async with state.pool.connection() as conn:
        row = await store.revoke_token(conn, token_id)
    if row is None:
        raise ApiError(404, f"no token {token_id}", "token_id")
    return _info(row)
