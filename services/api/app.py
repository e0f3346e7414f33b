"""The FastAPI application of the platform API (the uvicorn factory `create_app`).

The lifespan opens the database pool, applies the migrations (advisory lock: replicas starting together apply
each once), reads the catalog, and starts the reconciler (one leader among the replicas). Every error answer is
`{"detail", "field"}`: client errors are 4xx naming the field, an unavailable Airflow, MLflow or database is 503
naming it (`dependency`), and nothing the API expects ends as 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.api import auth, db
from services.api.airflow import AirflowClient
from services.api.catalog import CatalogFile
from services.api.errors import ApiError, DependencyUnavailable
from services.api.limits import RateLimiter
from services.api.mlflow import MlflowClient
from services.api.reconciler import Reconciler
from services.api.routes import events, health, models, routing, tokens, trainings
from services.api.routes.bodies import error_response
from services.api.routes.deps import ApiState
from services.api.settings import Settings

log = logging.getLogger("mlops.api")

_HEADERS = {"idempotency-key": "Idempotency-Key", "last-event-id": "Last-Event-ID", "authorization": "Authorization"}


def create_app(settings: Settings | None = None) -> FastAPI:
    """The application (uvicorn factory). Settings are read from the environment when not given."""
    settings = settings or Settings.from_env()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per Airflow/MLflow call is noise
    app = FastAPI(
        title="mlops-platform API",
        version="1.0",
        description=(
            "Trainings and rollbacks of the catalog's models, run by Airflow, tracked in PostgreSQL, "
            "their state changes pushed as Server-Sent Events. Bearer tokens with scopes read, train, deploy, admin."
        ),
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.add_exception_handler(ApiError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(DependencyUnavailable, _unavailable)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)
    for router in (trainings.router, models.router, routing.router, events.router, tokens.router, health.router):
        app.include_router(router)
    return app


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    pool = db.Pool(settings.conninfo(), settings.connect_kwargs)
    migrations_conn = await pool.connect()
    try:
        applied = await db.migrate(migrations_conn, params={"token_ttl_seconds": str(settings.tokens.ttl_seconds)})
    finally:
        await migrations_conn.close()
    catalog = CatalogFile(settings.catalog_path)
    snapshot = catalog.current()
    airflow = AirflowClient(settings.airflow_url, settings.airflow_username, settings.airflow_password)
    mlflow = MlflowClient(settings.tracking_uri, settings.mlflow_username, settings.mlflow_password)
    reconciler = Reconciler(pool, airflow, mlflow, settings.reconcile_seconds)
    state = ApiState(
        settings=settings,
        pool=pool,
        airflow=airflow,
        mlflow=mlflow,
        catalog=catalog,
        reconciler=reconciler,
        admin_hashes=tuple(auth.digest(t) for t in (settings.admin_token, settings.admin_token_previous) if t),
        limiter=RateLimiter(settings.tokens.per_second, settings.tokens.burst),
    )
    app.state.api = state
    log.info(
        "API %s: migrations applied now %s, %d catalog models, Airflow %s, MLflow %s",
        settings.instance,
        applied or "none",
        len(snapshot.models),
        settings.airflow_url,
        settings.tracking_uri,
    )
    task = asyncio.create_task(reconciler.run())
    try:
        yield
    finally:
        state.stopping.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await reconciler.close()
        await airflow.close()
        await mlflow.close()
        await pool.close()


def _field(loc: Any) -> str | None:
    parts = list(loc or ())
    if not parts:
        return None
    where, rest = parts[0], parts[1:]
    if where == "header" and rest:
        return _HEADERS.get(str(rest[0]).lower(), str(rest[0]))
    if where in ("body", "query", "path", "header", "cookie"):
        return ".".join(str(p) for p in rest) or where
    return ".".join(str(p) for p in parts)


async def _invalid(request: Request, exc: RequestValidationError) -> Response:
    errors = exc.errors()
    first: dict[str, Any] = dict(errors[0]) if errors else {"loc": (), "msg": "invalid request", "type": ""}
    field = _field(first.get("loc", ()))
    if first.get("type") == "json_invalid":
        return error_response(400, f"malformed JSON: {first.get('ctx', {}).get('error', first['msg'])}", "body")
    details = "; ".join(f"{_field(e.get('loc', ())) or 'request'}: {e.get('msg')}" for e in errors[:10])
    return error_response(422, details, field)


async def _api_error(request: Request, exc: ApiError) -> Response:
    response = error_response(exc.status, exc.detail, exc.field)
    for name, value in exc.headers.items():
        response.headers[name] = value
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


async def _unavailable(request: Request, exc: DependencyUnavailable) -> Response:
    log.warning("%s %s: %s", request.method, request.url.path, exc.detail)
    response = error_response(503, exc.detail, None, dependency=exc.dependency)
    response.headers["Retry-After"] = "5"
    return response


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    response = error_response(exc.status_code, str(exc.detail), None)
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, f"internal error ({type(exc).__name__})", None)
