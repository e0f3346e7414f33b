"""`POST /predict` (the variant the routing chooses) and `POST /variants/{alias}/predict` (one variant).

Both are admitted by `guards.Admitted` (credentials, concurrency limit). Bodies are read raw and parsed by
`services.serving.jsonbody.parse_json` (NaN, Infinity and out-of-range integers reported by field), then
validated against the answering version's signature (`services.serving.schema`). Shadow routing sends a
copy to the shadow alias after the answer, compares, logs and counts the outcome, never returns it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.common import contract
from services.serving.api.bodies import ERRORS, PredictResponse, json_response
from services.serving.api.deps import KnownAlias, RequestBody, ServingState, State
from services.serving.api.guards import Admitted
from services.serving.jsonbody import parse_json
from services.serving.observability import request_id_var
from services.serving.routing import CLIENT_ID_HEADER, Decision
from services.serving.schema import RequestError
from services.serving.variants import Variant

log = logging.getLogger("mlops.serving")

_MAX_SHADOW_IN_FLIGHT = 64

router = APIRouter(dependencies=[Admitted])

_PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}}},
    }
}


@router.post(
    "/predict",
    response_model=PredictResponse,
    responses=ERRORS,
    openapi_extra=_PREDICT_BODY,
    summary="Predict with the variant chosen by the routing (sticky with X-Client-Id)",
)
async def predict(request: Request, raw: RequestBody, state: State) -> Response:
    decision = state.router.choose(request.headers.get(CLIENT_ID_HEADER))
    return await _serve(state, request, raw, decision, explicit=False)


@router.post(
    contract.variant_predict_path("{alias}"),
    response_model=PredictResponse,
    responses=ERRORS,
    openapi_extra=_PREDICT_BODY,
    summary="Predict with one variant",
)
async def predict_variant(alias: KnownAlias, request: Request, raw: RequestBody, state: State) -> Response:
    return await _serve(state, request, raw, Decision(alias), explicit=True)


def _variant_for(state: ServingState, decision: Decision, explicit: bool) -> Variant:
    variants = state.manager.variants
    variant = variants.get(decision.alias)
    if variant is not None:
        return variant
    if not explicit:  # a routed variant that never loaded: any loaded routed variant answers
        for alias in state.router.weights():
            if alias in variants:
                return variants[alias]
    reason = state.manager.errors.get(decision.alias)
    raise RequestError(
        503,
        f"no version of {state.settings.model_name}@{decision.alias} is loaded yet"
        + (f" (last error: {reason})" if reason else ""),
        None,
    )


async def _serve(state: ServingState, request: Request, raw: bytes, decision: Decision, explicit: bool) -> Response:
    variant = _variant_for(state, decision, explicit)
    scope_state = request.scope["state"]
    scope_state["alias"] = variant.alias
    scope_state["version"] = variant.version
    metrics = state.metrics
    started = time.perf_counter()
    try:
        payload = parse_json(raw)
        predictions = await _predict(variant, payload)
    except RequestError as exc:
        metrics.requests.labels(variant.alias, variant.version, str(exc.status)).inc()
        raise
    metrics.latency.labels(variant.alias, variant.version).observe(time.perf_counter() - started)
    metrics.requests.labels(variant.alias, variant.version, "200").inc()
    if decision.shadow is not None:
        _shadow(state, decision.shadow, payload, predictions, variant)
    body = {
        "alias": variant.alias,
        "version": variant.version,
        "predictions": predictions,
        "request_id": scope_state["request_id"],
    }
    return json_response(body, headers={"x-model-alias": variant.alias, "x-model-version": variant.version})


async def _predict(variant: Variant, payload: Any) -> list[Any]:
    """The variant's predictions for a parsed body; 422 when the input or the model refuses it."""
    matrix = variant.validator.validate(payload)
    try:
        return await variant.apredict(matrix)
    except (ValueError, TypeError, KeyError) as exc:
        raise RequestError(422, f"the model rejected the input: {type(exc).__name__}: {exc}", "rows") from exc
    except Exception as exc:
        if type(exc).__name__ == "MlflowException":
            raise RequestError(422, f"the model rejected the input: {exc}", "rows") from exc
        raise


def _shadow(state: ServingState, alias: str, payload: Any, primary: list[Any], answered: Variant) -> None:
    shadow = state.manager.variants.get(alias)
    if shadow is None or len(state.shadow_tasks) >= _MAX_SHADOW_IN_FLIGHT:
        state.metrics.shadow.labels("skipped").inc()
        return
    compare = _compare(state, shadow, payload, primary, answered, request_id_var.get())
    task = asyncio.get_running_loop().create_task(compare)
    state.shadow_tasks.add(task)
    task.add_done_callback(state.shadow_tasks.discard)


async def _compare(
    state: ServingState, shadow: Variant, payload: Any, primary: list[Any], answered: Variant, rid: str | None
) -> None:
    await asyncio.sleep(0)  # after the primary's response is on its way
    alias = shadow.alias
    try:
        predictions = await shadow.apredict(shadow.validator.validate(payload))
    except Exception as exc:
        state.metrics.shadow.labels("error").inc()
        log.warning(
            "shadow %s v%s failed: %s",
            alias,
            shadow.version,
            exc,
            extra={"shadow_alias": alias, "shadow_version": shadow.version, "request_id": rid},
        )
        return
    agree = predictions == primary
    state.metrics.shadow.labels("agree" if agree else "differ").inc()
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
