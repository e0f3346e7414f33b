"""Request and response bodies of the API (the OpenAPI document; schemathesis checks answers against it) and
the one shape of every error answer: `{"detail", "field"}` (+ `dependency` on a 503)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from services.api.auth import Scope
from services.api.states import RunState
from services.common.catalog import MODEL_NAME_PATTERN, ParamValue
from services.common.serving_rules import ALIAS_PATTERN

_PROFILE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"


class ErrorBody(BaseModel):
    detail: str = Field(description="What is wrong")
    field: str | None = Field(default=None, description="The offending field (JSON path, header or parameter)")
    dependency: str | None = Field(default=None, description="On 503: the dependency that is unavailable")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrainingRequest(_Strict):
    model: str = Field(pattern=MODEL_NAME_PATTERN, description="A model of the catalog")
    params: dict[str, ParamValue] = Field(
        default_factory=dict, description="Overrides of the model's params (same names and types as its defaults)"
    )
    profile: str | None = Field(default=None, pattern=_PROFILE, description="A resource profile of the catalog")
    alias: str | None = Field(
        default=None,
        pattern=ALIAS_PATTERN,
        description="Alias a candidate that passes the gate is registered under, one the model's serving loads "
        "(e.g. challenger, for a rollout); default: the catalog's training.alias. Gated against the champion always.",
    )


class RollbackRequest(_Strict):
    version: str | None = Field(
        default=None, pattern=r"^[1-9][0-9]{0,9}$", description="Version to restore; unset = the previous one"
    )


class SetRoutingRequest(_Strict):
    routing: dict[str, Any] = Field(
        description='A routing mode, e.g. {"mode": "canary", "primary": "champion", "challenger": "challenger", '
        '"percent": 25}; it may only name aliases the model\'s deployment loads'
    )
    reason: str = Field(min_length=1, max_length=500, description="Why: recorded with who and when")


class RoutingView(BaseModel):
    model: str
    routing: dict[str, Any] = Field(description="The routing every serving replica applies")
    source: str = Field(description="registry (set at run time) or stack (the stack's routing)")
    by: str | None
    at: str | None
    reason: str | None
    stack_routing: dict[str, Any]
    weights: dict[str, float] = Field(description="The configured share of each routed alias")
    refused_tag: str | None = Field(default=None, description="Why a recorded routing is not applied, if so")


class AirflowRef(BaseModel):
    dag_id: str
    dag_run_id: str
    state: str | None


class Links(BaseModel):
    self: str
    events: str


class _RunBase(BaseModel):
    id: str
    kind: str
    model: str
    state: RunState
    airflow: AirflowRef
    error: str | None
    cancel_requested: bool
    created_at: str
    updated_at: str
    started_at: str | None
    finished_at: str | None
    links: Links


class Training(_RunBase):
    params: dict[str, Any]
    profile: str | None
    mlflow_run_id: str | None
    metrics: dict[str, float]
    registered_version: str | None
    aliases: list[str] = Field(description="Aliases the registered version holds")
    promoted: bool = Field(description="The registered version holds an alias")
    gate: dict[str, Any] | None = Field(description="The quality gate's decision and reason")


class Rollback(_RunBase):
    alias: str | None
    target_version: str | None
    version: str | None = Field(description="The version the alias points at after the rollback")


class TrainingPage(BaseModel):
    items: list[Training]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")


class ModelVersionInfo(BaseModel):
    version: str
    status: str
    run_id: str | None
    aliases: list[str]
    created_at: int | None


class ServingInfo(BaseModel):
    url: str
    ready: bool | None = Field(description="null when the model's serving did not answer")
    detail: str | None = None


class ModelInfo(BaseModel):
    name: str
    dag_id: str
    rollback_dag_id: str
    promote_alias: str
    params: dict[str, Any]
    training_profile: str
    schedule: str | None
    aliases: dict[str, str] = Field(description="Alias -> version")
    versions: list[ModelVersionInfo]
    routing: dict[str, Any]
    serving: ServingInfo


class ModelList(BaseModel):
    models: list[ModelInfo]


MAX_EXPIRES_IN = 3650 * 86_400  # the schema's bound; the API's own maximum (a setting) is checked on creation


class TokenRequest(_Strict):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[\x20-\x7e]+$")
    scopes: list[Scope] = Field(min_length=1, max_length=4)
    models: list[Annotated[str, Field(pattern=MODEL_NAME_PATTERN)]] | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="Limit the token to these catalog models (every route, every event stream); unset = every model",
    )
    expires_in: int | None = Field(
        default=None,
        ge=1,
        le=MAX_EXPIRES_IN,
        description="Seconds until the token expires; unset = the API's default; above the API's maximum: 400",
    )


class TokenInfo(BaseModel):
    id: str
    name: str
    scopes: list[Scope]
    models: list[str] | None = Field(description="The models the token is limited to; null = every model")
    created_by: str
    created_at: str
    expires_at: str
    last_used_at: str | None = Field(description="Last use (recorded at most once a minute)")
    revoked_at: str | None


class TokenCreated(TokenInfo):
    token: str = Field(description="The token; shown once, only its hash is stored")


class TokenList(BaseModel):
    tokens: list[TokenInfo]


def error(status: int, description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    400: error(400, "Malformed JSON body or an invalid header"),
    401: error(401, "No bearer token, or not a valid token (unknown, revoked or expired)"),
    403: error(403, "The token lacks the scope, or is limited to other models"),
    422: error(422, "A parameter or a field is invalid"),
    429: {
        "model": ErrorBody,
        "description": "The token exceeded its rate limit",
        "headers": {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}},
    },
    503: error(503, "The database is unavailable"),
}
Responses = dict[int | str, dict[str, Any]]
NOT_FOUND: Responses = {404: error(404, "Unknown id")}
DEPENDENCY_ERRORS: Responses = {503: error(503, "Airflow, MLflow or the database is unavailable")}


def error_response(status: int, detail: str, field: str | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": detail, "field": field, **extra}, status_code=status)
