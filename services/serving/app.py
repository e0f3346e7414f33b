"""The FastAPI application of the serving service.

Public API: `POST /predict` (routed), `POST /variants/{alias}/predict` (one variant), `GET /models`,
`GET /healthz` (process alive), `GET /readyz` (200 only when every routed variant is loaded),
`GET /metrics` (Prometheus). Admin API (bearer token, constant-time compare; 401 without a token, 403
with a wrong one): `POST /variants/{alias}/reload`, `POST /admin/reload` (every alias) and
`POST /admin/active` (blue-green switch). Paths come from `services.common.contract`.

Each process accepts connections only after its first load finished (bounded by
`STARTUP_LOAD_WAIT_SECONDS`), so with several uvicorn workers a worker that is still loading takes no
requests; a model that cannot be loaded at start leaves the process up with /readyz and predictions
answering 503 until the watcher loads it.

Prediction bodies are read raw and parsed with orjson (stdlib json as a fallback, so that NaN and
Infinity literals are reported by field instead of as malformed JSON), then validated against the
answering version's signature (`services.serving.schema`). Every client error is a 4xx naming the field.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import HTTPException
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field

from services.common import contract
from services.serving.observability import Alerter, Metrics, configure_logging, render_metrics, request_id_var
from services.serving.routing import CLIENT_ID_HEADER, Decision, Router
from services.serving.schema import RequestError
from services.serving.settings import Settings, routing_aliases
from services.serving.variants import Variant, VariantManager

log = logging.getLogger("mlops.serving")
access_log = logging.getLogger("mlops.serving.access")

ACTIVE_PATH = "/admin/active"
REQUEST_ID_HEADER = "x-request-id"
_MAX_REQUEST_ID = 128
_MAX_SHADOW_IN_FLIGHT = 64
STARTUP_LOAD_WAIT_SECONDS = 90.0

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


# --- response models (documentation and schemathesis) -------------------------------------------
class ErrorBody(BaseModel):
    detail: Any = Field(description="What is wrong")
    field: str | None = Field(default=None, description="The JSON path of the offending field")


class PredictResponse(BaseModel):
    alias: str
    version: str
    predictions: list[Any]
    request_id: str


class VariantInfo(BaseModel):
    alias: str
    version: str
    run_id: str | None
    source: str
    flavor: str
    loaded_at: str
    load_seconds: float
    columns: list[dict[str, Any]]


class ModelsResponse(BaseModel):
    model: str
    routing: dict[str, Any]
    weights: dict[str, float]
    active: str | None
    variants: list[VariantInfo]
    not_loaded: dict[str, str]


class ReloadResponse(BaseModel):
    alias: str
    outcome: str
    version: str | None = None
    previous_version: str | None = None
    attempted_version: str | None = None
    reason: str | None = None
    load_seconds: float | None = None


class ReloadAllResponse(BaseModel):
    ok: bool
    results: list[ReloadResponse]


class SwitchRequest(BaseModel):
    alias: str = Field(min_length=1, max_length=64)


class SwitchResponse(BaseModel):
    active: str


def _error(status: int, detail: str, field: str | None = None, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps({"detail": detail, "field": field}),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Malformed JSON"},
    404: {"model": ErrorBody, "description": "Unknown alias"},
    413: {"model": ErrorBody, "description": "Batch or body too large"},
    422: {"model": ErrorBody, "description": "The input does not match the model's signature"},
    503: {"model": ErrorBody, "description": "No version of the variant is loaded yet"},
}
_AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No bearer token"},
    403: {"model": ErrorBody, "description": "Wrong bearer token (or no token configured)"},
}


class RequestContext:
    """Pure ASGI middleware: request id (from `X-Request-Id` or new), echoed back, and one JSON
    access-log line per request with status, duration and the alias/version that answered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                if 0 < len(candidate) <= _MAX_REQUEST_ID and candidate.isprintable():
                    rid = candidate
                break
        rid = rid or uuid.uuid4().hex
        token = request_id_var.set(rid)
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        started = time.perf_counter()
        status = 500
        rid_header = (b"x-request-id", rid.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), rid_header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            extra: dict[str, Any] = {
                "method": scope["method"],
                "path": scope["path"],
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 3),
            }
            if "alias" in state:
                extra["alias"] = state["alias"]
                extra["version"] = state.get("version")
            access_log.info("%s %s %s", scope["method"], scope["path"], status, extra=extra)
            request_id_var.reset(token)


_bearer = HTTPBearer(auto_error=False, description="The reload token")


async def require_token(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """401 without a bearer token, 403 with a wrong one (compared in constant time)."""
    if credentials is None or not credentials.credentials:
        raise HTTPException(401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    expected: bytes | None = request.app.state.reload_token
    if expected is None:
        raise HTTPException(403, f"the admin API is disabled: {contract.RELOAD_TOKEN.name} is not set")
    if not hmac.compare_digest(credentials.credentials.encode("utf-8", "surrogateescape"), expected):
        raise HTTPException(403, "wrong bearer token")


def _parse_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:  # NaN / Infinity literals and integers beyond 64 bits: parse, then report them by field
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise RequestError(400, f"malformed JSON: {exc}", "body") from None


def create_app(settings: Settings | None = None) -> FastAPI:
    """The application (uvicorn factory). Settings are read from the environment when not given."""
    settings = settings or Settings.from_env()
    log_file = configure_logging(settings.instance, settings.log_dir)
    metrics = Metrics()
    alerter = Alerter(settings.slack_webhook_url, {"instance": settings.instance, "service": "serving"})
    manager = VariantManager(settings, metrics, alerter)
    router = Router(settings.routing, lambda: manager.active)
    known = frozenset(settings.aliases)
    max_body = settings.max_batch * 4096 + 65536
    shadow_tasks: set[asyncio.Task[None]] = set()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info(
            "serving %s, aliases %s, routing %s, polling every %ss, log file %s",
            settings.model_name,
            list(settings.aliases),
            settings.routing.model_dump(),
            settings.poll_seconds,
            log_file,
        )
        initial = asyncio.create_task(manager.start())
        watcher = asyncio.create_task(manager.watch())
        # Accept connections only once the first load is done (or failed, or took too long): with
        # several workers, a worker still loading then takes no requests while the others serve.
        await asyncio.wait({initial}, timeout=STARTUP_LOAD_WAIT_SECONDS)
        try:
            yield
        finally:
            for task in (initial, watcher, *shadow_tasks):
                task.cancel()
            await asyncio.gather(initial, watcher, *shadow_tasks, return_exceptions=True)
            await alerter.drain()
            manager.close()

    app = FastAPI(
        title="mlops-platform model serving",
        version="1.0",
        description="Predictions from MLflow model versions selected by alias, with routing and hot swap.",
        lifespan=lifespan,
    )
    app.add_middleware(RequestContext)
    app.state.manager = manager
    app.state.settings = settings
    app.state.reload_token = settings.reload_token.encode() if settings.reload_token else None

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError) -> Response:
        return _error(exc.status, exc.message, exc.field)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.error("unhandled error: %s", type(exc).__name__, exc_info=exc)
        return _error(500, f"internal error ({type(exc).__name__}); request id {request_id_var.get()}")

    # --- predictions -----------------------------------------------------------------------------
    def _variant_for(decision: Decision, explicit: bool) -> Variant:
        variants = manager.variants
        variant = variants.get(decision.alias)
        if variant is not None:
            return variant
        if not explicit:  # a routed variant that never loaded: any loaded routed variant answers
            for alias in router.weights():
                if alias in variants:
                    return variants[alias]
        reason = manager.errors.get(decision.alias)
        raise RequestError(
            503,
            f"no version of {settings.model_name}@{decision.alias} is loaded yet"
            + (f" (last error: {reason})" if reason else ""),
            None,
        )

    async def _serve(request: Request, decision: Decision, explicit: bool) -> Response:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_body:
            metrics.rejected.labels("413").inc()
            raise RequestError(413, f"request body larger than {max_body} bytes", "body")
        raw = await request.body()
        if len(raw) > max_body:
            metrics.rejected.labels("413").inc()
            raise RequestError(413, f"request body larger than {max_body} bytes", "body")
        variant = _variant_for(decision, explicit)
        state = request.scope["state"]
        state["alias"] = variant.alias
        state["version"] = variant.version
        started = time.perf_counter()
        try:
            payload = _parse_json(raw)
            matrix = variant.validator.validate(payload)
            try:
                predictions = await variant.apredict(matrix)
            except (ValueError, TypeError, KeyError) as exc:
                raise RequestError(422, f"the model rejected the input: {type(exc).__name__}: {exc}", "rows") from exc
            except Exception as exc:
                if type(exc).__name__ == "MlflowException":
                    raise RequestError(422, f"the model rejected the input: {exc}", "rows") from exc
                raise
        except RequestError as exc:
            metrics.requests.labels(variant.alias, variant.version, str(exc.status)).inc()
            raise
        metrics.latency.labels(variant.alias, variant.version).observe(time.perf_counter() - started)
        metrics.requests.labels(variant.alias, variant.version, "200").inc()
        if decision.shadow is not None:
            _shadow(decision.shadow, payload, predictions, variant)
        rid = state["request_id"]
        body = orjson.dumps(
            {"alias": variant.alias, "version": variant.version, "predictions": predictions, "request_id": rid},
            option=orjson.OPT_SERIALIZE_NUMPY,
        )
        return Response(
            body,
            media_type="application/json",
            headers={"x-model-alias": variant.alias, "x-model-version": variant.version},
        )

    def _shadow(alias: str, payload: Any, primary: list[Any], answered: Variant) -> None:
        shadow = manager.variants.get(alias)
        if shadow is None or len(shadow_tasks) >= _MAX_SHADOW_IN_FLIGHT:
            metrics.shadow.labels("skipped").inc()
            return
        rid = request_id_var.get()

        async def compare() -> None:
            await asyncio.sleep(0)  # after the primary's response is on its way
            try:
                predictions = await shadow.apredict(shadow.validator.validate(payload))
            except Exception as exc:
                metrics.shadow.labels("error").inc()
                log.warning(
                    "shadow %s v%s failed: %s",
                    alias,
                    shadow.version,
                    exc,
                    extra={"shadow_alias": alias, "shadow_version": shadow.version, "request_id": rid},
                )
                return
            agree = predictions == primary
            metrics.shadow.labels("agree" if agree else "differ").inc()
            log.info(
                "shadow comparison %s",
                "agrees" if agree else "differs",
                extra={
                    "event": "shadow.compared",
                    "primary_alias": answered.alias,
                    "primary_version": answered.version,
                    "shadow_alias": alias,
                    "shadow_version": shadow.version,
                    "agree": agree,
                    "primary": primary[:20],
                    "shadow": predictions[:20],
                    "request_id": rid,
                },
            )

        task = asyncio.get_running_loop().create_task(compare())
        shadow_tasks.add(task)
        task.add_done_callback(shadow_tasks.discard)

    predict_body = {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}}},
        }
    }

    @app.post(
        "/predict",
        response_model=PredictResponse,
        responses=_ERRORS,
        openapi_extra=predict_body,
        summary="Predict with the variant chosen by the routing (sticky with X-Client-Id)",
    )
    async def predict(request: Request) -> Response:
        return await _serve(request, router.choose(request.headers.get(CLIENT_ID_HEADER)), explicit=False)

    @app.post(
        contract.variant_predict_path("{alias}"),
        response_model=PredictResponse,
        responses=_ERRORS,
        openapi_extra=predict_body,
        summary="Predict with one variant",
    )
    async def predict_variant(alias: str, request: Request) -> Response:
        if alias not in known:
            raise RequestError(404, f"unknown alias {alias!r}; this service serves {sorted(known)}", "alias")
        return await _serve(request, Decision(alias), explicit=True)

    # --- state -----------------------------------------------------------------------------------
    @app.get("/models", response_model=ModelsResponse, summary="Loaded variants: alias, version, run, source")
    async def models() -> dict[str, Any]:
        variants = manager.variants
        return {
            "model": settings.model_name,
            "routing": settings.routing.model_dump(),
            "weights": {a: round(w, 6) for a, w in router.weights().items()},
            "active": manager.active,
            "variants": [variants[a].describe() for a in settings.aliases if a in variants],
            "not_loaded": {a: manager.errors.get(a, "loading") for a in settings.aliases if a not in variants},
        }

    @app.get("/healthz", summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz", summary="200 only when every routed variant is loaded", responses={503: {"description": "Not ready"}}
    )
    async def readyz() -> Response:
        variants = manager.variants
        missing = [a for a, w in router.weights().items() if w > 0 and a not in variants]
        body = {"ready": not missing, "missing": missing, "loaded": {a: v.version for a, v in variants.items()}}
        return Response(orjson.dumps(body), status_code=503 if missing else 200, media_type="application/json")

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus() -> Response:
        return Response(render_metrics(metrics), media_type=CONTENT_TYPE_LATEST)

    # --- admin -----------------------------------------------------------------------------------
    @app.post(
        contract.reload_path("{alias}"),
        response_model=ReloadResponse,
        dependencies=[Depends(require_token)],
        responses={
            **_AUTH_ERRORS,
            404: _ERRORS[404],
            502: {"model": ReloadResponse, "description": "Load failed; the previous version serves"},
        },
        summary="Load the version the alias points at now (hot swap)",
    )
    async def reload_alias(alias: str) -> Response:
        if alias not in known:
            raise RequestError(404, f"unknown alias {alias!r}; this service serves {sorted(known)}", "alias")
        result = await manager.reload(alias, "api")
        return Response(
            orjson.dumps(result.body()), status_code=200 if result.ok else 502, media_type="application/json"
        )

    @app.post(
        contract.RELOAD_ALL_PATH,
        response_model=ReloadAllResponse,
        dependencies=[Depends(require_token)],
        responses={
            **_AUTH_ERRORS,
            502: {"model": ReloadAllResponse, "description": "A load failed; previous versions serve"},
        },
        summary="Reload every alias",
    )
    async def reload_all() -> Response:
        results = await manager.reload_all("api")
        ok = all(r.ok for r in results)
        return Response(
            orjson.dumps({"ok": ok, "results": [r.body() for r in results]}),
            status_code=200 if ok else 502,
            media_type="application/json",
        )

    @app.post(
        ACTIVE_PATH,
        response_model=SwitchResponse,
        dependencies=[Depends(require_token)],
        responses={
            **_AUTH_ERRORS,
            400: _ERRORS[400],
            409: {"model": ErrorBody, "description": "Not blue-green, or alias not loaded"},
            502: {"model": ErrorBody, "description": "The registry did not record the switch"},
        },
        summary="Blue-green: switch traffic to the other alias",
    )
    async def switch(body: SwitchRequest) -> dict[str, str]:
        return {"active": await manager.switch_active(body.alias)}

    # --- OpenAPI: the request schema follows the loaded signature ---------------------------------
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
        schema = app.openapi_schema
        schema.setdefault("components", {}).setdefault("schemas", {})["PredictRequest"] = _predict_schema()
        return schema

    def _predict_schema() -> dict[str, Any]:
        row: dict[str, Any] = {
            "type": "object",
            "additionalProperties": {"type": ["number", "string", "boolean", "null"]},
        }
        variants = manager.variants
        primary = next((variants[a] for a in routing_aliases(settings.routing) if a in variants), None)
        if primary is not None and primary.validator.columns is not None:
            types = {
                "double": "number",
                "float": "number",
                "long": "integer",
                "integer": "integer",
                "boolean": "boolean",
                "string": "string",
                "datetime": "string",
                "binary": "string",
            }
            row = {
                "type": "object",
                "properties": {c.name: {"type": types.get(c.kind, "string")} for c in primary.validator.columns},
                "required": [c.name for c in primary.validator.columns if c.required],
                "additionalProperties": False,
            }
        return {
            "title": "PredictRequest",
            "type": "object",
            "required": ["rows"],
            "additionalProperties": False,
            "properties": {"rows": {"type": "array", "minItems": 1, "maxItems": settings.max_batch, "items": row}},
        }

    app.openapi = openapi  # type: ignore[method-assign]
    return app
