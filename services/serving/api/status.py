"""What a process serves and whether it can: `GET /models`, `/healthz`, `/readyz`, `/metrics`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from services.serving.api.bodies import ModelsResponse, json_response
from services.serving.api.deps import State
from services.serving.observability import render_metrics

router = APIRouter()


@router.get("/models", response_model=ModelsResponse, summary="Loaded variants: alias, version, run, source")
async def models(state: State) -> dict[str, Any]:
    settings, manager = state.settings, state.manager
    variants = manager.variants
    return {
        "model": settings.model_name,
        "routing": settings.routing.model_dump(),
        "weights": {a: round(w, 6) for a, w in state.router.weights().items()},
        "active": manager.active,
        "variants": [variants[a].describe() for a in settings.aliases if a in variants],
        "not_loaded": {a: manager.errors.get(a, "loading") for a in settings.aliases if a not in variants},
    }


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz", summary="200 only when every routed variant is loaded", responses={503: {"description": "Not ready"}}
)
async def readyz(state: State) -> Response:
    variants = state.manager.variants
    missing = [a for a, w in state.router.weights().items() if w > 0 and a not in variants]
    body = {
        "ready": not missing,
        "missing": missing,
        "loaded": {a: v.version for a, v in variants.items()},
        "log_file": state.log_file.describe(),  # a volume that cannot be written is reported, not fatal
    }
    return json_response(body, 503 if missing else 200)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def prometheus(state: State) -> Response:
    return Response(render_metrics(state.metrics), media_type=CONTENT_TYPE_LATEST)
