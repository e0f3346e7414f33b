"""The Open Inference Protocol v2, REST (`services.serving.protocols.open_inference` has the request and answer
layouts).

`{model}` is the registered model this service serves; without `/versions/{version}` a request is routed like
`POST /predict` (sticky per `X-Client-Id`, shadow copies included), with it the loaded version answers
whichever alias loaded it (404 when no alias has it loaded; 503 with Retry-After while nothing at all is loaded).
Inference goes through the lean request path (`ENDPOINTS`); health, readiness and metadata are ordinary routes
(`router`). As the protocol says, readiness is a status code: 200 ready, 400 not ready; errors are `{"error": "..."}`.
The server is ready when `/readyz` is (every routed alias loaded or without a version in the registry); the model
is ready when it can infer: a routed alias has a loaded version.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from services.common import contract
from services.serving.protocols.open_inference import DATATYPES, V2, model_metadata
from services.serving.routes.bodies import json_response
from services.serving.routes.deps import ServingState, State
from services.serving.routes.lean import ADMISSION, Choice, Doc, Endpoint, nothing_loaded, routed
from services.serving.schema import RequestError
from services.serving.security import Refusal
from services.serving.variants import Variant

MODEL_PATH = contract.V2_MODEL_PATH
VERSION_PATH = f"{MODEL_PATH}/versions/{{version}}"
SERVER_NAME = "mlops-platform-serving"
EXTENSIONS = ("binary_tensor_data",)

Datatype = Literal[DATATYPES]  # type: ignore[valid-type]


class V2Error(BaseModel):
    error: str = Field(description="What is wrong, starting with the field it concerns")


# Keys the protocol does not define are ignored (as KServe and MLServer ignore them), hence extra="allow".
class V2InputTensor(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(description="A signature column, or any name for one 2-D tensor [N, columns]")
    shape: list[int]
    datatype: Datatype
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = Field(default=None, description="Row-major, flat or nested (absent: binary data)")


class V2RequestedOutput(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    parameters: dict[str, Any] | None = None


class V2InferenceRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model_name: str | None = Field(default=None, description="Ignored when it equals the path's model (else 400)")
    model_version: str | None = Field(
        default=None, description="Ignored when it equals the path's version, else the answering one (else 400)"
    )
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[V2InputTensor] = Field(min_length=1)
    outputs: list[V2RequestedOutput] | None = None


class V2OutputTensor(BaseModel):
    name: str
    shape: list[int]
    datatype: Datatype
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class V2InferenceResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str
    parameters: dict[str, Any] | None = None
    outputs: list[V2OutputTensor]


class V2Live(BaseModel):
    live: bool


class V2Ready(BaseModel):
    ready: bool


class V2ModelReady(BaseModel):
    name: str
    ready: bool


class V2ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class V2MetadataTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class V2ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[V2MetadataTensor]
    outputs: list[V2MetadataTensor]


# --- which variant ----------------------------------------------------------------------------------------
def _check_model(state: ServingState, model: str) -> None:
    if model != state.settings.model_name:
        raise RequestError(
            404, f"model: unknown model {model!r}; this service serves {state.settings.model_name!r}", "model"
        )


def _loaded_version(state: ServingState, version: str) -> Variant | None:
    """The variant that has `version` loaded, routed aliases first."""
    variants = state.manager.variants
    for alias in (*state.router.weights(), *state.settings.aliases):
        variant = variants.get(alias)
        if variant is not None and variant.version == version:
            return variant
    return None


def by_model(state: ServingState, headers: dict[str, str], params: dict[str, str]) -> Choice:
    _check_model(state, params["model"])
    version = params.get("version")
    if version is None:
        return routed(state, headers, params)
    variant = _loaded_version(state, version)
    if variant is None:
        if not state.manager.variants:
            raise nothing_loaded(state, state.router.candidates())
        loaded = sorted({v.version for v in state.manager.variants.values()})
        raise RequestError(404, f"version: version {version!r} is not loaded here (loaded: {loaded})", "version")
    return Choice(variant)


_ERRORS: dict[int, tuple[str, type[BaseModel]]] = {
    400: ("The request does not fit the protocol or the model's signature", V2Error),
    404: ("Unknown model, or version not loaded", V2Error),
    413: ("Too many rows or too large a body", V2Error),
    503: ("No version is loaded to answer yet (Retry-After)", V2Error),
    **{status: (description, V2Error) for status, description in ADMISSION.items()},
}


def _doc(summary: str, params: tuple[str, ...]) -> Doc:
    return Doc(
        summary=summary,
        body={"application/json": V2InferenceRequest},
        ok={"application/json": V2InferenceResponse, "application/octet-stream": {"type": "string"}},
        errors=_ERRORS,
        params=params,
        description="Open Inference Protocol v2. Binary tensors (Triton's extension) follow the JSON header "
        "when the request sets the Inference-Header-Content-Length header; binary outputs are answered "
        "as application/octet-stream with that header.",
    )


ENDPOINTS = (
    Endpoint("POST", f"{MODEL_PATH}/infer", V2, by_model, _doc("Infer (routed like /predict)", ("model",))),
    Endpoint(
        "POST", f"{VERSION_PATH}/infer", V2, by_model, _doc("Infer with one loaded version", ("model", "version"))
    ),
)


# --- health, readiness, metadata ------------------------------------------------------------------------------
router = APIRouter(tags=["Open Inference Protocol v2"])
_NOT_READY: dict[int | str, dict[str, Any]] = {400: {"model": V2Ready, "description": "Not ready"}}
_UNKNOWN: dict[int | str, dict[str, Any]] = {404: {"model": V2Error, "description": "Unknown model or version"}}


def _error(exc: RequestError) -> Response:
    return json_response({"error": exc.message}, exc.status, headers=exc.headers if isinstance(exc, Refusal) else None)


@router.get("/v2", response_model=V2ServerMetadata, summary="Server metadata")
async def server_metadata() -> dict[str, Any]:
    return {"name": SERVER_NAME, "version": "1.0", "extensions": list(EXTENSIONS)}


@router.get("/v2/health/live", response_model=V2Live, summary="The server is alive")
async def live() -> dict[str, Any]:
    return {"live": True}


@router.get(
    "/v2/health/ready",
    response_model=V2Ready,
    responses=_NOT_READY,
    summary="Ready as /readyz: every routed alias is loaded or has no version in the registry",
)
async def ready(state: State) -> Response:
    is_ready = state.manager.ready
    return json_response({"ready": is_ready}, 200 if is_ready else 400)


@router.get(
    f"{MODEL_PATH}/ready",
    response_model=V2ModelReady,
    responses={**_NOT_READY, **_UNKNOWN},
    summary="The model can infer: a routed alias has a loaded version",
)
async def model_ready(model: str, state: State) -> Response:
    try:
        _check_model(state, model)
    except RequestError as exc:
        return _error(exc)
    is_ready = bool(state.router.effective())
    return json_response({"name": model, "ready": is_ready}, 200 if is_ready else 400)


@router.get(
    f"{VERSION_PATH}/ready",
    response_model=V2ModelReady,
    responses={**_NOT_READY, **_UNKNOWN},
    summary="The version is loaded",
)
async def version_ready(model: str, version: str, state: State) -> Response:
    try:
        _check_model(state, model)
    except RequestError as exc:
        return _error(exc)
    is_ready = _loaded_version(state, version) is not None
    return json_response({"name": model, "ready": is_ready}, 200 if is_ready else 400)


def _metadata(state: ServingState, variant: Variant) -> Response:
    versions = list(dict.fromkeys(v.version for v in state.manager.variants.values()))
    body = model_metadata(state.settings.model_name, versions, variant.validator, f"mlflow-{variant.flavor}")
    return json_response(body)


@router.get(
    MODEL_PATH,
    response_model=V2ModelMetadata,
    responses={**_UNKNOWN, 503: {"model": V2Error, "description": "No version is loaded yet (Retry-After)"}},
    summary="Model metadata: one input tensor per signature column, the signature's outputs",
)
async def metadata(model: str, state: State) -> Response:
    try:
        _check_model(state, model)
        variants = state.manager.variants
        candidates = state.router.candidates()
        primary = next((variants[a] for a in candidates if a in variants), None)
        if primary is None:
            raise nothing_loaded(state, candidates)
    except RequestError as exc:
        return _error(exc)
    return _metadata(state, primary)


@router.get(VERSION_PATH, response_model=V2ModelMetadata, responses=_UNKNOWN, summary="Metadata of one loaded version")
async def version_metadata(model: str, version: str, state: State) -> Response:
    try:
        choice = by_model(state, {}, {"model": model, "version": version})
    except RequestError as exc:
        return _error(exc)
    return _metadata(state, choice.variant)
