"""Trainings: start one (idempotent), list, read, cancel. A model-scoped token acts on its models only (403
naming the model) and lists only their trainings."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse

from services.api import idempotency, runs, store
from services.api.errors import ApiError
from services.api.routes.bodies import (
    AUTH_ERRORS,
    DEPENDENCY_ERRORS,
    NOT_FOUND,
    Responses,
    Training,
    TrainingPage,
    TrainingRequest,
    error,
)
from services.api.routes.deps import Reader, State, Trainer
from services.api.states import RunState

router = APIRouter(prefix="/v1/trainings", tags=["trainings"], responses=AUTH_ERRORS)

IdempotencyKey = Annotated[
    str,
    Header(
        alias=idempotency.HEADER,
        min_length=1,
        max_length=idempotency.MAX_KEY,
        description="A key of the caller's choosing (e.g. a UUID): the same key again returns the same run",
    ),
]


def accepted(row: dict[str, Any], created: bool) -> JSONResponse:
    body = runs.view(row)
    headers = {"Location": body["links"]["self"]}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(body, status_code=202, headers=headers)


# The answers of every request that starts a run (a training, a rollback)
START_ERRORS: Responses = {
    400: error(400, "Invalid Idempotency-Key"),
    404: error(404, "Unknown model"),
    409: error(409, "Key reused for another request, or the DAG is paused"),
    **DEPENDENCY_ERRORS,
}


@router.post(
    "",
    status_code=202,
    response_model=Training,
    responses=START_ERRORS,
    summary="Start a training of a catalog model (its training DAG); the same Idempotency-Key returns the same run",
)
async def start_training(body: TrainingRequest, key: IdempotencyKey, caller: Trainer, state: State) -> JSONResponse:
    caller.check_model(body.model)
    catalog = state.catalog.current()
    model = catalog.model(body.model)
    merged = catalog.check_params(model, body.params)
    catalog.check_profile(model, body.profile)
    if body.alias is not None and body.alias not in model.aliases:
        raise ApiError(
            422, f"alias {body.alias!r} is not one the serving of {model.name} loads ({list(model.aliases)})", "alias"
        )
    request = {**body.model_dump(exclude_none=True), "alias": body.alias or model.training_alias}
    row, created = await runs.start(
        state.pool,
        state.airflow,
        caller,
        kind=runs.TRAINING,
        model=model.name,
        key=key,
        request=request,
        dag_id=model.dag_id,
        conf=runs.training_conf({name: merged[name] for name in body.params}, body.alias),
    )
    return accepted(row, created)


@router.get("", response_model=TrainingPage, summary="Trainings, newest first, one page at a time")
async def list_trainings(
    caller: Reader,
    state: State,
    model: Annotated[str | None, Query(max_length=63, description="Only this model's trainings")] = None,
    run_state: Annotated[RunState | None, Query(alias="state", description="Only trainings in this state")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")] = None,
) -> dict[str, Any]:
    if model is not None:
        caller.check_model(model)
    async with state.pool.connection() as conn:
        rows, next_cursor = await store.list_runs(
            conn,
            runs.TRAINING,
            model=model,
            state=run_state.value if run_state else None,
            limit=limit,
            cursor=cursor,
            models=caller.model_filter(),
        )
    return {"items": [runs.view(r) for r in rows], "next_cursor": next_cursor}


@router.get("/{id}", response_model=Training, responses=NOT_FOUND, summary="One training")
async def get_training(id: uuid.UUID, caller: Reader, state: State) -> dict[str, Any]:
    async with state.pool.connection() as conn:
        row = await store.get_run(conn, id, runs.TRAINING)
    if row is None:
        raise ApiError(404, f"no training {id}", "id")
    caller.check_model(row["model"])
    return runs.view(row)


@router.post(
    "/{id}/cancel",
    response_model=Training,
    responses={**NOT_FOUND, 409: error(409, "The training already ended"), **DEPENDENCY_ERRORS},
    summary="Cancel a queued or running training (its DAG run is marked failed)",
)
async def cancel_training(id: uuid.UUID, caller: Trainer, state: State) -> dict[str, Any]:
    return runs.view(await runs.cancel(state.pool, state.airflow, id, runs.TRAINING, caller))
