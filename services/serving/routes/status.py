"""What a process serves and whether it can: `GET /models`, `/healthz`, `/readyz`, `/metrics`.

Ready means ready to serve what exists (`services.serving.variants`): every alias that may take routed traffic is
loaded or has no version in the registry. A process with nothing to load is ready, and its predictions answer 503
with Retry-After until a version appears; MLflow's `/ping` and the V2 server readiness say the same as `/readyz`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from services.common.serving_rules import RoutingRecord
from services.serving.observability import render_metrics
from services.serving.routes.bodies import ModelsResponse, json_response
from services.serving.routes.deps import ServingState, State

router = APIRouter()


@router.get("/models", response_model=ModelsResponse, summary="Loaded variants: alias, version, run, source")
async def models(state: State) -> dict[str, Any]:
    settings, manager = state.settings, state.manager
    variants = manager.variants
    return {
        "model": settings.model_name,
        "routing": manager.routing.model_dump(),
        "routing_source": routing_source(manager.routing_record),
        "weights": {a: round(w, 6) for a, w in state.router.weights().items()},
        "traffic": {a: round(w, 6) for a, w in state.router.effective().items()},
        "active": manager.active,
        "variants": [variants[a].describe() for a in settings.aliases if a in variants],
        "missing": [a for a in settings.aliases if a in manager.missing],
        "not_loaded": {a: _why_not_loaded(state, a) for a in settings.aliases if a not in variants},
    }


def routing_source(record: RoutingRecord | None) -> dict[str, str]:
    """Where the routing in force comes from: the stack, or a record set at run time (who, when, why)."""
    if record is None:
        return {"source": "stack"}
    return {"source": "registry", "by": record.by, "at": record.at, "reason": record.reason}


def _why_not_loaded(state: ServingState, alias: str) -> str:
    if alias in state.manager.missing:
        return "no version in the registry"
    return state.manager.errors.get(alias, "loading")


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="200 once every routed alias is loaded or has no version in the registry",
    responses={
        503: {"description": "Not ready: an alias with a version is not loaded yet, or the registry cannot be reached"}
    },
)
async def readyz(state: State) -> Response:
    manager = state.manager
    body = {
        "ready": manager.ready,
        "missing": sorted(manager.missing),  # no version in the registry: nothing to load, served by another
        "not_loaded": manager.pending(),  # may take traffic, has (or may have) a version, not loaded: why
        "loaded": {a: v.version for a, v in manager.variants.items()},
        "traffic": state.router.effective(),  # empty: nothing loaded, predictions answer 503
        "log_file": state.log_file.describe(),  # a volume that cannot be written is reported, not fatal
    }
    return json_response(body, 200 if manager.ready else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def prometheus(state: State) -> Response:
    return Response(render_metrics(state.metrics), media_type=CONTENT_TYPE_LATEST)
