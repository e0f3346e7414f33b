"""The admin API (bearer token, see `deps.require_token`): reload one alias or all, switch blue-green, set the
routing at run time (every replica follows it through the registry) or go back to the stack's."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from services.common import contract
from services.common.serving_rules import RoutingRecord
from services.serving.routes.bodies import (
    AUTH_ERRORS,
    ERRORS,
    ErrorBody,
    ReloadAllResponse,
    ReloadResponse,
    RoutingRequest,
    RoutingResponse,
    SwitchRequest,
    SwitchResponse,
    json_response,
)
from services.serving.routes.deps import KnownAlias, ServingState, State, require_token
from services.serving.routes.status import routing_source

ACTIVE_PATH = "/admin/active"
ROUTING_PATH = "/admin/routing"

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


_ROUTING_ERRORS: dict[int | str, dict[str, object]] = {
    400: ERRORS[400],
    409: {"model": ErrorBody, "description": "The routing uses an alias this deployment does not load"},
    502: {"model": ErrorBody, "description": "The registry did not record the routing; nothing changed"},
}


@router.put(
    ROUTING_PATH,
    response_model=RoutingResponse,
    responses=_ROUTING_ERRORS,
    summary="Set the routing at run time: here at once, in every replica within one poll period",
)
async def set_routing(body: RoutingRequest, state: State) -> dict[str, object]:
    at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    await state.manager.set_routing(RoutingRecord(routing=body.routing, by=body.by, at=at, reason=body.reason))
    return _routing(state)


@router.delete(
    ROUTING_PATH,
    response_model=RoutingResponse,
    responses={502: _ROUTING_ERRORS[502]},
    summary="Go back to the stack's routing (delete the run-time routing)",
)
async def reset_routing(state: State) -> dict[str, object]:
    await state.manager.set_routing(None)
    return _routing(state)


def _routing(state: ServingState) -> dict[str, object]:
    return {
        "routing": state.manager.routing.model_dump(mode="json"),
        "routing_source": routing_source(state.manager.routing_record),
        "weights": {a: round(w, 6) for a, w in state.router.weights().items()},
    }
