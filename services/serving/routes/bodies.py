"""Request and response bodies of the serving API (documented in OpenAPI, checked by schemathesis) and
the one shape of every error answer: `{"detail", "field"}`."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from services.common.serving_rules import RoutingConfig


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
    weights: dict[str, float] = Field(description="The configured share of each routed alias")
    traffic: dict[str, float] = Field(
        description="The share each alias takes now: shares of aliases with nothing loaded go to the first loaded "
        "(the primary); empty when nothing is loaded"
    )
    active: str | None
    variants: list[VariantInfo]
    routing_source: dict[str, str] = Field(
        description="Where the routing comes from: the stack, or the registry (set at run time: by, at, reason)"
    )
    missing: list[str] = Field(description="Aliases with no version in the registry: nothing to load")
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


class RoutingRequest(BaseModel):
    """A routing to apply at run time, in every replica (the registry's routing tag)."""

    model_config = ConfigDict(extra="forbid")

    routing: RoutingConfig
    reason: str = Field(min_length=1, max_length=500, description="Why: shown in /models, the logs and the API")
    by: str = Field(default="serving-admin", min_length=1, max_length=200, description="Who asks")


class RoutingResponse(BaseModel):
    routing: dict[str, Any]
    routing_source: dict[str, str] = Field(description="source stack, or registry with by, at and reason")
    weights: dict[str, float]


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Malformed JSON"},
    404: {"model": ErrorBody, "description": "Unknown alias"},
    413: {"model": ErrorBody, "description": "Batch or body too large"},
    422: {"model": ErrorBody, "description": "The input does not match the model's signature"},
    503: {"model": ErrorBody, "description": "No version is loaded to answer yet (Retry-After)"},
}
AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No bearer token"},
    403: {"model": ErrorBody, "description": "Wrong bearer token (or no token configured)"},
}


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer serialised with orjson (NumPy values included)."""
    return Response(
        orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def error_response(status: int, detail: str, field: str | None = None) -> Response:
    return json_response({"detail": detail, "field": field}, status)
