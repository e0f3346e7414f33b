"""Scoped tokens (admin only): create (the token is shown once), list, revoke."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from services.api import auth, store
from services.api.errors import ApiError
from services.api.routes.bodies import AUTH_ERRORS, NOT_FOUND, TokenCreated, TokenInfo, TokenList, TokenRequest
from services.api.routes.deps import Admin, State

router = APIRouter(prefix="/v1/tokens", tags=["tokens"], responses=AUTH_ERRORS)

TokenId = Annotated[str, Path(pattern=r"^[0-9a-f]{12}$", description="The token's id (mlops_<id>_...)")]


def _info(row: dict[str, Any]) -> dict[str, Any]:
    revoked = row.get("revoked_at")
    return {
        "id": row["id"],
        "name": row["name"],
        "scopes": sorted(row["scopes"]),
        "created_by": row["created_by"],
        "created_at": row["created_at"].isoformat(),
        "revoked_at": revoked.isoformat() if revoked else None,
    }


@router.post("", status_code=201, response_model=TokenCreated, summary="Create a token with the given scopes")
async def create_token(body: TokenRequest, caller: Admin, state: State) -> dict[str, Any]:
    new = auth.new_token()
    scopes = sorted({s.value for s in body.scopes})
    async with state.pool.connection() as conn:
        row = await store.insert_token(conn, new.id, body.name, scopes, new.hash, caller.id)
    return {**_info(row), "token": new.token}


@router.get("", response_model=TokenList, summary="Every token (never the token itself)")
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
