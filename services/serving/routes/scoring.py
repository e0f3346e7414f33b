"""MLflow's scoring protocol, as `mlflow models serve` answers it (`services.serving.protocols.mlflow` has the
layouts): `POST /invocations` is routed like `POST /predict` (lean request path, `ENDPOINTS`); `GET /ping` and
`GET /health` answer 200 when the process is ready (as `/readyz`: every routed alias loaded or without a version in
the registry; 503 before), `GET /version` the MLflow version this service is built with."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, Field

from services.serving.protocols.mlflow import MLFLOW
from services.serving.routes.deps import State
from services.serving.routes.lean import ADMISSION, Doc, Endpoint, routed


def _mlflow_version() -> str:
    for package in ("mlflow", "mlflow-skinny"):
        try:
            return version(package)
        except PackageNotFoundError:
            continue
    return "unknown"


MLFLOW_VERSION = _mlflow_version()


class MlflowError(BaseModel):
    error_code: str
    message: str = Field(description="What is wrong, starting with the field it concerns")


class MlflowPredictions(BaseModel):
    predictions: list[Any]


_ROW = {"type": "object", "additionalProperties": {"type": ["number", "string", "boolean", "null"]}}
_VALUES = {"type": "array", "items": {"type": ["number", "string", "boolean", "null"]}}
SCORING_REQUEST: dict[str, Any] = {
    "title": "MlflowScoringRequest",
    "description": "Exactly one of dataframe_split, dataframe_records, instances, inputs. Other keys are ignored, "
    "as mlflow models serve ignores them; so is params, except parameters the version's signature declares (400: "
    "this service predicts with their defaults).",
    "oneOf": [
        {
            "type": "object",
            "required": ["dataframe_split"],
            "properties": {
                "dataframe_split": {
                    "type": "object",
                    "required": ["data"],
                    "additionalProperties": False,
                    "properties": {
                        "columns": {"type": "array", "items": {"type": "string"}},
                        "data": {"type": "array", "items": _VALUES},
                        "index": {"type": "array"},
                    },
                }
            },
        },
        {
            "type": "object",
            "required": ["dataframe_records"],
            "properties": {"dataframe_records": {"type": "array", "items": _ROW}},
        },
        {
            "type": "object",
            "required": ["instances"],
            "properties": {"instances": {"type": "array", "items": {"anyOf": [_ROW, _VALUES]}}},
        },
        {
            "type": "object",
            "required": ["inputs"],
            "properties": {
                "inputs": {"anyOf": [{"type": "object", "additionalProperties": _VALUES}, {"type": "array"}]}
            },
        },
    ],
}

ENDPOINTS = (
    Endpoint(
        "POST",
        "/invocations",
        MLFLOW,
        routed,
        Doc(
            summary="MLflow scoring protocol (as `mlflow models serve`), routed like /predict",
            body={"application/json": SCORING_REQUEST, "text/csv": {"type": "string"}},
            ok={"application/json": MlflowPredictions},
            errors={
                400: ("The input does not fit the protocol or the model's signature", MlflowError),
                413: ("Too many rows or too large a body", MlflowError),
                415: ("Not JSON or CSV, or not UTF-8", MlflowError),
                503: ("No version is loaded to answer yet (Retry-After)", MlflowError),
                **{status: (description, MlflowError) for status, description in ADMISSION.items()},
            },
        ),
    ),
)

router = APIRouter(tags=["MLflow scoring protocol"])
_PING_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/plain": {}}},
    503: {"description": "Not ready", "content": {"text/plain": {}}},
}


@router.get("/ping", response_class=PlainTextResponse, responses=_PING_RESPONSES, summary="200 once ready")
async def ping(state: State) -> Response:
    """200 once ready (as `/readyz`), 503 before (body: a newline, as MLflow answers)."""
    return PlainTextResponse("\n", 200 if state.manager.ready else 503)


@router.get("/health", response_class=PlainTextResponse, responses=_PING_RESPONSES, summary="The same as /ping")
async def health(state: State) -> Response:
    return await ping(state)


@router.get("/version", response_class=PlainTextResponse, summary="The MLflow version this service is built with")
async def mlflow_version() -> str:
    return MLFLOW_VERSION
