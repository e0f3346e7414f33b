"""Each model's routing as data: read it, set it at run time, or go back to the stack's.

The routing is recorded with who set it, when and why as the registered-model tag that every serving replica
follows on its next registry watcher pass (`registry_tags.ROUTING_TAG`, `serving_rules.RoutingRecord`): no
`pulumi up`, no pod restart. A routing may only name aliases the model's deployment loads (the catalog's
`serving.aliases`): anything else is refused here, before any replica sees it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter
from pydantic import ValidationError

from services.api.errors import ApiError
from services.api.routes.bodies import AUTH_ERRORS, DEPENDENCY_ERRORS, NOT_FOUND, RoutingView, SetRoutingRequest
from services.api.routes.deps import Deployer, Reader, State
from services.api.routes.models import ModelName
from services.common.catalog_file import CatalogModel
from services.common.registry_tags import ROUTING_TAG
from services.common.serving_rules import RoutingRecord, loadable_problem, parse_routing, parse_routing_record

router = APIRouter(tags=["models"], responses=AUTH_ERRORS)

_ERRORS: dict[int | str, dict[str, Any]] = {**NOT_FOUND, **DEPENDENCY_ERRORS}


def view(entry: CatalogModel, record: RoutingRecord | None, refused: str | None = None) -> dict[str, Any]:
    """The routing in force for the model's replicas: the recorded one, else the stack's."""
    stack = entry.spec.serving.routing
    out: dict[str, Any] = {
        "model": entry.name,
        "routing": (record.routing if record else stack).model_dump(mode="json"),
        "source": "registry" if record else "stack",
        "by": record.by if record else None,
        "at": record.at if record else None,
        "reason": record.reason if record else None,
        "stack_routing": stack.model_dump(mode="json"),
        "weights": (record.routing if record else stack).shares(),
    }
    if refused is not None:
        out["refused_tag"] = refused
    return out


async def current(state: Any, entry: CatalogModel) -> dict[str, Any]:
    tags = await state.mlflow.model_tags(entry.name) or {}
    raw = tags.get(ROUTING_TAG)
    if raw is None:
        return view(entry, None)
    try:
        record = parse_routing_record(raw)
    except ValueError as exc:  # the replicas refuse it too and keep routing: say so
        return view(entry, None, f"the routing tag is not applied: {exc}")
    return view(entry, record)


@router.get("/v1/models/{model}/routing", response_model=RoutingView, responses=_ERRORS, summary="The routing in force")
async def get_routing(model: ModelName, caller: Reader, state: State) -> dict[str, Any]:
    caller.check_model(model)
    return await current(state, state.catalog.current().model(model))


@router.put(
    "/v1/models/{model}/routing",
    response_model=RoutingView,
    responses={**_ERRORS, 409: {**NOT_FOUND[404], "description": "An alias the deployment does not load"}},
    summary="Set the model's routing at run time: every serving replica applies it within one poll period",
)
async def set_routing(model: ModelName, body: SetRoutingRequest, caller: Deployer, state: State) -> dict[str, Any]:
    caller.check_model(model)
    entry = state.catalog.current().model(model)
    try:
        routing = parse_routing(body.routing)
    except ValueError as exc:
        raise ApiError(422, f"routing is invalid: {exc}", "routing") from None
    problem = loadable_problem(routing, entry.aliases)
    if problem:
        raise ApiError(409, problem, "routing")
    at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    try:
        record = RoutingRecord(routing=routing, by=f"api:{caller.name}", at=at, reason=body.reason)
    except ValidationError as exc:
        raise ApiError(422, str(exc.errors()[0]["msg"]), "reason") from None
    if not await state.mlflow.set_model_tag(entry.name, ROUTING_TAG, record.tag_value()):
        raise ApiError(409, f"model {entry.name} is not registered in MLflow yet: train it first", "model")
    return view(entry, record)


@router.delete(
    "/v1/models/{model}/routing",
    response_model=RoutingView,
    responses=_ERRORS,
    summary="Go back to the stack's routing (every replica within one poll period)",
)
async def reset_routing(model: ModelName, caller: Deployer, state: State) -> dict[str, Any]:
    caller.check_model(model)
    entry = state.catalog.current().model(model)
    await state.mlflow.delete_model_tag(entry.name, ROUTING_TAG)
    return view(entry, None)
