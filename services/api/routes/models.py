"""The catalog's models with their versions, aliases, routing and serving readiness; rollbacks. A model-scoped
token lists only its models and rolls back or reads rollbacks of those only (403 naming the model)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse

from services.api import runs, store
from services.api.errors import ApiError
from services.api.mlflow import MlflowClient
from services.api.routes.bodies import (
    AUTH_ERRORS,
    DEPENDENCY_ERRORS,
    NOT_FOUND,
    ModelList,
    Rollback,
    RollbackRequest,
)
from services.api.routes.deps import Deployer, Reader, State
from services.api.routes.trainings import START_ERRORS, IdempotencyKey, accepted
from services.common.catalog import MODEL_NAME_PATTERN
from services.common.catalog_file import CatalogModel

router = APIRouter(tags=["models"], responses=AUTH_ERRORS)

SERVING_TIMEOUT = httpx.Timeout(3.0, connect=2.0)


async def _serving(model: CatalogModel, http: httpx.AsyncClient) -> dict[str, Any]:
    url = model.serving_url
    try:
        response = await http.get(f"{url}/readyz")
    except httpx.HTTPError as exc:
        return {"url": url, "ready": None, "detail": f"serving did not answer: {type(exc).__name__}"}
    return {"url": url, "ready": response.status_code == 200, "detail": None}


async def _describe(model: CatalogModel, mlflow: MlflowClient, http: httpx.AsyncClient) -> dict[str, Any]:
    versions, serving = await asyncio.gather(mlflow.versions(model.name), _serving(model, http))
    aliases = {alias: v.version for v in versions for alias in v.aliases}
    spec = model.spec
    return {
        "name": model.name,
        "dag_id": model.dag_id,
        "rollback_dag_id": model.rollback_dag_id,
        "promote_alias": model.promote_alias,
        "params": dict(spec.training.params),
        "training_profile": spec.training.profile,
        "schedule": spec.training.schedule,
        "aliases": dict(sorted(aliases.items())),
        "versions": [
            {
                "version": v.version,
                "status": v.status,
                "run_id": v.run_id,
                "aliases": list(v.aliases),
                "created_at": v.created_at,
            }
            for v in versions
        ],
        "routing": spec.serving.routing.model_dump(mode="json"),
        "serving": serving,
    }


@router.get(
    "/v1/models",
    response_model=ModelList,
    responses=DEPENDENCY_ERRORS,
    summary="The catalog's models: versions, aliases, routing and serving readiness (from MLflow and serving)",
)
async def list_models(caller: Reader, state: State) -> dict[str, Any]:
    catalog = state.catalog.current()
    names = [name for name in sorted(catalog.models) if caller.may_use(name)]
    async with httpx.AsyncClient(timeout=SERVING_TIMEOUT) as http:
        described = await asyncio.gather(*(_describe(catalog.models[name], state.mlflow, http) for name in names))
    return {"models": list(described)}


ModelName = Annotated[str, Path(pattern=MODEL_NAME_PATTERN, description="A model of the catalog")]


@router.post(
    "/v1/models/{model}/rollback",
    status_code=202,
    response_model=Rollback,
    responses=START_ERRORS,
    summary="Move the model's promoted alias back to a version (its rollback DAG); idempotent like trainings",
)
async def rollback(
    model: ModelName, key: IdempotencyKey, caller: Deployer, state: State, body: RollbackRequest | None = None
) -> JSONResponse:
    caller.check_model(model)
    entry = state.catalog.current().model(model)
    request = (body or RollbackRequest()).model_dump(exclude_none=True)
    alias = entry.promote_alias
    row, created = await runs.start(
        state.pool,
        state.airflow,
        caller,
        kind=runs.ROLLBACK,
        model=entry.name,
        key=key,
        request={**request, "alias": alias, "target_version": request.get("version") or "previous"},
        dag_id=entry.rollback_dag_id,
        conf=runs.rollback_conf(alias, request.get("version")),
    )
    return accepted(row, created)


@router.get("/v1/rollbacks/{id}", response_model=Rollback, responses=NOT_FOUND, summary="One rollback")
async def get_rollback(id: uuid.UUID, caller: Reader, state: State) -> dict[str, Any]:
    async with state.pool.connection() as conn:
        row = await store.get_run(conn, id, runs.ROLLBACK)
    if row is None:
        raise ApiError(404, f"no rollback {id}", "id")
    caller.check_model(row["model"])
    return runs.view(row)
