"""`GET /healthz` (the process answers) and `GET /readyz` (its database answers); no token needed.

Readiness depends on the database only: Airflow or MLflow being down makes the requests that need them answer
503 naming them, but must not take every replica out of the Service.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from services.api.routes.bodies import error
from services.api.routes.deps import State

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    ready: bool
    leader: bool
    airflow: bool
    mlflow: bool


@router.get("/healthz", response_model=Health, summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Ready,
    responses={503: error(503, "The database does not answer")},
    summary="The database answers (also tells whether this replica leads the reconciler and what it reaches)",
)
async def readyz(state: State) -> JSONResponse:
    async with state.pool.connection() as conn:
        await conn.execute("SELECT 1")
    body = {
        "ready": True,
        "leader": state.reconciler.is_leader,
        "airflow": await state.airflow.health(),
        "mlflow": await state.mlflow.health(),
    }
    return JSONResponse(body)
