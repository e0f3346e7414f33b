"""The FastAPI application of the serving service (the uvicorn factory `create_app`).

Public API: `POST /predict` (routed), `POST /variants/{alias}/predict` (one variant), the Open Inference
Protocol v2 (`/v2/...`: health, metadata, readiness, `POST /v2/models/{model}[/versions/{version}]/infer`),
MLflow's scoring protocol (`POST /invocations`, `GET /ping`, `/health`, `/version`), `GET /models`,
`GET /healthz` (process alive), `GET /readyz` (200 once every routed alias is loaded or has no version in the
registry),
`GET /metrics` (Prometheus). Admin API (bearer token, constant-time compare; 401 without a token, 403
with a wrong one): `POST /variants/{alias}/reload`, `POST /admin/reload` (every alias) and
`POST /admin/active` (blue-green switch). Paths come from `services.common.contract`. The prediction endpoints
(`ENDPOINTS`) are answered by the lean request path (`services.serving.routes.lean`: plain ASGI, one pipeline for
every protocol), which also gives every request its id and access-log line; the other routes live in
`services.serving.routes` (one router per concern) and share the process's state through typed dependencies. The
OpenAPI document describes both.

Each process accepts connections only after its first load finished (bounded by
`STARTUP_LOAD_WAIT_SECONDS`), so with several uvicorn workers a worker that is still loading takes no
requests; a version that cannot be loaded at start (or a registry that cannot be reached) leaves the process up with
/readyz and predictions answering 503 until the watcher loads it. An alias with no version in the registry is not
waited for: its share goes to the loaded aliases, and with nothing loaded at all the process is ready and every
prediction endpoint answers 503 with Retry-After, naming the model and the missing aliases. Every client error is
a 4xx `{"detail", "field"}` naming the field. Prediction routes admit a request only with valid credentials
(`MLOPS_SERVING_AUTH`) and under the concurrency limit (`services.serving.routes.guards`). `/docs` and
`/openapi.json` are served only when `MLOPS_SERVING_PUBLIC_DOCS` allows it (404 otherwise). An unexpected error is
a 500 naming the request's id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from starlette.types import ASGIApp

from services.serving.accesslog import AccessLog
from services.serving.loader import trust_validated_inputs
from services.serving.observability import configure_logging, request_id_var
from services.serving.routes import admin, open_inference, predictions, scoring, status
from services.serving.routes.bodies import error_response
from services.serving.routes.deps import ServingState
from services.serving.routes.lean import REQUEST_ID_HEADER, Endpoint, LeanPath, openapi_paths
from services.serving.schema import RequestError
from services.serving.security import Refusal, refusal_response
from services.serving.settings import Settings

log = logging.getLogger("mlops.serving")

STARTUP_LOAD_WAIT_SECONDS = 90.0

ENDPOINTS: tuple[Endpoint, ...] = (*predictions.ENDPOINTS, *open_inference.ENDPOINTS, *scoring.ENDPOINTS)

_JSON_TYPES = {
    "double": "number",
    "float": "number",
    "long": "integer",
    "integer": "integer",
    "boolean": "boolean",
    "string": "string",
    "datetime": "string",
    "binary": "string",
}


class ServingApp(FastAPI):
    """FastAPI with the lean request path outermost: it runs before Starlette's error middleware (the lean
    path answers its own errors), and every other request goes on through FastAPI's whole stack."""

    def build_middleware_stack(self) -> ASGIApp:
        return LeanPath(super().build_middleware_stack(), ENDPOINTS, self.state.access_log)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The application (uvicorn factory). Settings are read from the environment when not given."""
    settings = settings or Settings.from_env()
    app = ServingApp(
        title="mlops-platform model serving",
        version="1.0",
        description="Predictions from MLflow model versions selected by alias, with routing and hot swap.",
        lifespan=lifespan,
        docs_url="/docs" if settings.public_docs else None,
        redoc_url="/redoc" if settings.public_docs else None,
        openapi_url="/openapi.json" if settings.public_docs else None,
    )
    app.state.settings = settings
    app.state.log_file = configure_logging(settings.instance, settings.log_dir)
    app.state.access_log = AccessLog(settings.instance)
    app.add_exception_handler(RequestError, _request_error)  # type: ignore[arg-type]
    app.add_exception_handler(Refusal, _refused)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)
    for router in (status.router, admin.router, open_inference.router, scoring.router):
        app.include_router(router)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Build the process's state, load the variants (bounded wait), watch the registry; undo at exit."""
    settings: Settings = app.state.settings
    state = app.state.serving = ServingState.build(settings, app.state.log_file)
    trust_validated_inputs()
    log.info(
        "serving %s, aliases %s, routing %s, polling every %ss, log file %s",
        settings.model_name,
        list(settings.aliases),
        settings.routing.model_dump(),
        settings.poll_seconds,
        app.state.log_file.path or app.state.log_file.error,
    )
    initial = asyncio.create_task(state.manager.start())
    watcher = asyncio.create_task(state.manager.watch())
    # Accept connections only once the first load is done (or failed, or took too long): with
    # several workers, a worker still loading then takes no requests while the others serve.
    await asyncio.wait({initial}, timeout=STARTUP_LOAD_WAIT_SECONDS)
    try:
        yield
    finally:
        tasks = (initial, watcher, *state.shadow_tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await state.alerter.drain()
        state.manager.close()
        app.state.access_log.flush()


async def _request_error(request: Request, exc: RequestError) -> Response:
    return error_response(exc.status, exc.message, exc.field)


async def _refused(request: Request, exc: Refusal) -> Response:
    return refusal_response(exc)


async def _unexpected(request: Request, exc: Exception) -> Response:
    # Runs in Starlette's outermost middleware, after the request context was left: the id is in the scope.
    rid = request.scope.get("state", {}).get("request_id") or request_id_var.get()
    log.error("unhandled error: %s", type(exc).__name__, exc_info=exc, extra={"request_id": rid})
    response = error_response(500, f"internal error ({type(exc).__name__}); request id {rid}")
    if rid:
        response.headers[REQUEST_ID_HEADER] = rid
    return response


# --- OpenAPI: the request schema follows the loaded signature ---------------------------------------
def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        app.openapi_schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        openapi_paths(app.openapi_schema, ENDPOINTS)
    schema = app.openapi_schema
    schema.setdefault("components", {}).setdefault("schemas", {})["PredictRequest"] = _predict_schema(app)
    return schema


def _predict_schema(app: FastAPI) -> dict[str, Any]:
    settings: Settings = app.state.settings
    row: dict[str, Any] = {"type": "object", "additionalProperties": {"type": ["number", "string", "boolean", "null"]}}
    state: ServingState | None = getattr(app.state, "serving", None)  # None before the lifespan started
    variants = state.manager.variants if state is not None else {}
    routing = state.manager.routing if state is not None else settings.routing
    primary = next((variants[a] for a in routing.aliases() if a in variants), None)
    if primary is not None and primary.validator.columns is not None:
        columns = primary.validator.columns
        row = {
            "type": "object",
            "properties": {c.name: {"type": _JSON_TYPES.get(c.kind, "string")} for c in columns},
            "required": [c.name for c in columns if c.required],
            "additionalProperties": False,
        }
    return {
        "title": "PredictRequest",
        "type": "object",
        "required": ["rows"],
        "additionalProperties": False,
        "properties": {"rows": {"type": "array", "minItems": 1, "maxItems": settings.max_batch, "items": row}},
    }
