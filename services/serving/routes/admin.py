"""The admin API (bearer token, see `deps.require_token`): reload one alias or all, switch blue-green."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from services.common import contract
from services.serving.routes.bodies import (
    AUTH_ERRORS,
    ERRORS,
    ErrorBody,
    ReloadAllResponse,
    ReloadResponse,
    SwitchRequest,
    SwitchResponse,
    json_response,
)
from services.serving.routes.deps import KnownAlias, State, require_token

ACTIVE_PATH = "/admin/active"

router = APIRouter(dependencies=[Depends(require_token)], responses=AUTH_ERRORS)


@router.post(
    contract.reload_path("{alias}"),
    response_model=ReloadResponse,
    responses={
        404: ERRORS[404],
        502: {"model": ReloadResponse, "description": "Load failed; the previous version serves"},
    },
    summary="Load the version the alias points at now (hot swap)",
)
async def reload_alias(alias: KnownAlias, state: State) -> Response:
    result = await state.manager.reload(alias, "api")
    return json_response(result.body(), 200 if result.ok else 502)


@router.post(
    contract.RELOAD_ALL_PATH,
    response_model=ReloadAllResponse,
    responses={502: {"model": ReloadAllResponse, "description": "A load failed; previous versions serve"}},
    summary="Reload every alias",
)
async def reload_all(state: State) -> Response:
    results = await state.manager.reload_all("api")
    ok = all(r.ok for r in results)
    return json_response({"ok": ok, "results": [r.body() for r in results]}, 200 if ok else 502)


@router.post(
    ACTIVE_PATH,
    response_model=SwitchResponse,
    responses={
        400: ERRORS[400],
        409: {"model": ErrorBody, "description": "Not blue-green, or alias not loaded"},
        502: {"model": ErrorBody, "description": "The registry did not record the switch"},
    },
    summary="Blue-green: switch traffic to the other alias",
)
async def switch(body: SwitchRequest, state: State) -> dict[str, str]:
    return {"active": await state.manager.switch_active(body.alias)}
