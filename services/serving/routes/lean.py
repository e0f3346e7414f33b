"""THE request path of every prediction endpoint, as plain ASGI: no routing table walk, no dependency solving,
no request or response objects, no pydantic on the way out.

`LeanPath` is the application's outermost layer (`services.serving.app.ServingApp` puts it before Starlette's
error middleware; the lean path answers its own errors). For
every HTTP request it sets the request id (`X-Request-Id`, the caller's or a new one), echoes it, and writes
one access-log line (`services.serving.accesslog`). A request for one of the prediction `Endpoint`s (exact
method and path, or a path template of `{param}` segments) is served by `serve` directly; any other request
goes on to FastAPI (status, admin, metadata, docs).

`serve` is the same for every protocol (`services.serving.protocols`):

1. admission (`guards.admit`: credentials, then a slot under the concurrency limit; given back at the end);
2. the body, 413 beyond `max_body` bytes (announced or read);
3. the variant: routed (`X-Client-Id` sticky, among the loaded aliases), one alias, or one loaded version, by the
   endpoint's `Choose`; 503 with `Retry-After` naming the model and each alias and why it has nothing loaded
   (`nothing_loaded`) when no variant can answer;
4. the codec decodes and validates the body against that version's signature, the model predicts
   (micro-batched), the codec answers; `serving_requests_total` and the latency histogram count it, and
   shadow routing sends a copy to the shadow alias after the answer;
5. a `RequestError` (or an admission `Refusal`) is answered in the protocol's error shape, anything else is
   logged and answered 500 naming the request id.

Each `Endpoint` also carries its OpenAPI operation; `openapi_paths` merges them into the document FastAPI
writes for its own routes, so `/openapi.json` describes every endpoint.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pydantic import BaseModel

from services.serving.accesslog import AccessLog
from services.serving.observability import request_id_var
from services.serving.protocols import Answered, Codec, Decoded, Reply, Request
from services.serving.routes.deps import ServingState, check_alias
from services.serving.routes.guards import admit
from services.serving.routing import CLIENT_ID_HEADER
from services.serving.schema import RequestError
from services.serving.security import Refusal
from services.serving.variants import Variant, VariantMeters

log = logging.getLogger("mlops.serving")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUEST_ID_HEADER = "x-request-id"
_RID_HEADER = REQUEST_ID_HEADER.encode("latin-1")
_MAX_REQUEST_ID = 128
_MAX_SHADOW_IN_FLIGHT = 64
_MAX_MATCHED = 1024
CLIENT_GONE = 499  # the access log's status of a request whose client left before the answer

# Request ids: a random prefix per process and a counter (unique, and cheaper than a uuid4 per request).
_ID_PREFIX = os.urandom(8).hex()
_ids = itertools.count()


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ids):016x}"


class Choice(NamedTuple):
    variant: Variant
    shadow: str | None = None  # the alias that gets a copy (shadow routing), if any


# (state, request headers, path parameters) -> the variant that answers; RequestError 404/503 when none can.
Choose = Callable[[ServingState, dict[str, str], dict[str, str]], Choice]


# The admission's refusals (`guards.admit`), documented on every prediction endpoint.
ADMISSION: dict[int, str] = {
    401: "No credentials (when MLOPS_SERVING_AUTH asks for them)",
    403: "Credentials refused",
    429: "Too many predictions in flight in this process (Retry-After)",
}

Schema = type[BaseModel] | dict[str, Any]  # a documented model, or a JSON schema as is


@dataclass(frozen=True)
class Doc:
    """The OpenAPI operation of an endpoint: its request bodies (by media type), its answer and its errors."""

    summary: str
    body: Mapping[str, Schema]
    ok: Mapping[str, Schema]
    errors: Mapping[int, tuple[str, Schema]]
    params: tuple[str, ...] = ()  # path parameters (strings)
    description: str = ""

    def operation(self, components: dict[str, Any], operation_id: str) -> dict[str, Any]:
        def ref(schema: Schema) -> dict[str, Any]:
            if isinstance(schema, dict):
                return schema
            full = schema.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, sub in full.pop("$defs", {}).items():
                components.setdefault(name, sub)
            components.setdefault(schema.__name__, full)
            return {"$ref": f"#/components/schemas/{schema.__name__}"}

        responses: dict[str, Any] = {
            "200": {"description": "Predictions", "content": {m: {"schema": ref(s)} for m, s in self.ok.items()}}
        }
        for status, (description, schema) in sorted(self.errors.items()):
            responses[str(status)] = {
                "description": description,
                "content": {"application/json": {"schema": ref(schema)}},
            }
        operation: dict[str, Any] = {
            "summary": self.summary,
            "operationId": operation_id,
            "requestBody": {"required": True, "content": {m: {"schema": ref(s)} for m, s in self.body.items()}},
            "responses": responses,
        }
        if self.description:
            operation["description"] = self.description
        if self.params:
            operation["parameters"] = [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string", "title": p.title()}}
                for p in self.params
            ]
        return operation


@dataclass(frozen=True)
class Endpoint:
    """One prediction endpoint: method, path (with `{param}` segments), codec, variant choice, OpenAPI."""

    method: str
    path: str
    codec: Codec
    choose: Choose
    doc: Doc = field(compare=False)

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(self.path.split("/"))


def routed(state: ServingState, headers: dict[str, str], params: dict[str, str]) -> Choice:
    """The variant the routing chooses among the loaded aliases (sticky per `X-Client-Id`); any loaded candidate
    when the chosen one is not loaded (a swap between the router's refresh and now); 503 when none is."""
    decision = state.router.choose(headers.get(CLIENT_ID_HEADER))
    variants = state.manager.variants
    variant = variants.get(decision.alias)
    if variant is None:
        candidates = state.router.candidates()
        for alias in candidates:
            if alias in variants:
                return Choice(variants[alias], decision.shadow)
        raise nothing_loaded(state, candidates)
    return Choice(variant, decision.shadow)


def by_alias(state: ServingState, headers: dict[str, str], params: dict[str, str]) -> Choice:
    """The variant of the path's `{alias}`: 404 unless this service serves it, 503 until it is loaded."""
    alias = check_alias(state, params["alias"])
    variant = state.manager.variants.get(alias)
    if variant is None:
        raise nothing_loaded(state, (alias,))
    return Choice(variant)


def nothing_loaded(state: ServingState, aliases: Sequence[str]) -> Refusal:
    """503 with Retry-After (counted in `serving_rejected_requests`): none of `aliases` has a loaded version; the
    message names the model and, for each alias, whether the registry has no version under it yet or why it is
    not loaded."""
    manager, model = state.manager, state.settings.model_name
    why = []
    for alias in aliases:
        if alias in manager.missing:
            why.append(f"{model}@{alias} has no version in the registry yet")
        else:
            error = manager.errors.get(alias)
            why.append(f"{model}@{alias} is not loaded yet" + (f" (last error: {error})" if error else ""))
    state.metrics.rejected.labels("503").inc()
    return Refusal(
        503,
        f"no version of {model} is loaded to answer: {'; '.join(why)}; retry after {state.retry_after} s",
        {"Retry-After": str(state.retry_after)},
    )


class ClientGone(Exception):
    """The client disconnected before its body was read."""


async def read_body(receive: Receive, headers: dict[str, str], state: ServingState) -> bytes:
    """The request body; 413 (counted) when it is larger than `max_body`, announced or read."""
    limit = state.max_body
    length = headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        state.metrics.rejected.labels("413").inc()
        raise RequestError(413, f"request body larger than {limit} bytes", "body")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            state.metrics.rejected.labels("413").inc()
            raise RequestError(413, f"request body larger than {limit} bytes", "body")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _respond(send: Send, reply: Reply, rid: str, extra: Sequence[tuple[bytes, bytes]] = ()) -> int:
    headers = [
        (b"content-type", reply.content_type),
        (b"content-length", str(len(reply.body)).encode()),
        (_RID_HEADER, rid.encode("latin-1")),
        *reply.headers,
        *extra,
    ]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})
    return reply.status


def _refusal_headers(exc: RequestError) -> list[tuple[bytes, bytes]]:
    if isinstance(exc, Refusal):
        return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in exc.headers.items()]
    return []


async def _model_predict(variant: Variant, inputs: Any) -> list[Any]:
    """The variant's predictions; 422 when the model refuses the input."""
    try:
        return await variant.apredict(inputs)
    except (ValueError, TypeError, KeyError) as exc:
        raise RequestError(422, f"the model rejected the input: {type(exc).__name__}: {exc}", "inputs") from exc
    except Exception as exc:
        if type(exc).__name__ == "MlflowException":
            raise RequestError(422, f"the model rejected the input: {exc}", "inputs") from exc
        raise


async def serve(endpoint: Endpoint, scope: Scope, receive: Receive, send: Send, params: dict[str, str]) -> int:
    """Answer one prediction request (see the module's docstring); returns the status sent."""
    state: ServingState = scope["app"].state.serving
    context = scope["state"]
    rid: str = context["request_id"]
    codec = endpoint.codec
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    refusal = await admit(state, headers)
    if refusal is not None:
        return await _respond(send, codec.error(refusal), rid, _refusal_headers(refusal))
    meters: VariantMeters | None = None
    try:
        request = Request(await read_body(receive, headers, state), headers, params)
        choice = endpoint.choose(state, headers, params)
        variant = choice.variant
        context["alias"] = variant.alias
        context["version"] = variant.version
        meters = variant.meters or VariantMeters(state.metrics, variant.alias, variant.version)
        started = time.perf_counter()
        decoded = codec.decode(request, variant.validator)
        predictions = await _model_predict(variant, decoded.inputs)
        who = Answered(state.settings.model_name, variant.alias, variant.version, rid)
        reply = codec.answer(predictions, decoded, who)
        meters.answered(time.perf_counter() - started)
        if choice.shadow is not None:
            _shadow(state, codec, request, choice, predictions, rid)
        alias_headers = ((b"x-model-alias", variant.alias.encode()), (b"x-model-version", variant.version.encode()))
        return await _respond(send, reply, rid, alias_headers)
    except RequestError as exc:
        if meters is not None:
            meters.requests(exc.status).inc()
        return await _respond(send, codec.error(exc), rid, _refusal_headers(exc))
    except ClientGone:
        return CLIENT_GONE
    except Exception as exc:
        log.error("unhandled error: %s", type(exc).__name__, exc_info=exc, extra={"request_id": rid})
        if meters is not None:
            meters.requests(500).inc()
        error = RequestError(500, f"internal error ({type(exc).__name__}); request id {rid}", None)
        return await _respond(send, codec.error(error), rid)
    finally:
        state.limiter.leave()


# --- shadow routing ---------------------------------------------------------------------------------------
def _shadow(state: ServingState, codec: Codec, request: Request, choice: Choice, primary: list[Any], rid: str) -> None:
    assert choice.shadow is not None
    shadow = state.manager.variants.get(choice.shadow)
    if shadow is None or len(state.shadow_tasks) >= _MAX_SHADOW_IN_FLIGHT:
        state.metrics.shadow.labels("skipped").inc()
        return
    task = asyncio.get_running_loop().create_task(_compare(state, codec, request, shadow, primary, choice.variant, rid))
    state.shadow_tasks.add(task)
    task.add_done_callback(state.shadow_tasks.discard)


async def _compare(
    state: ServingState,
    codec: Codec,
    request: Request,
    shadow: Variant,
    primary: list[Any],
    answered: Variant,
    rid: str,
) -> None:
    await asyncio.sleep(0)  # after the primary's response is on its way
    alias = shadow.alias
    try:
        decoded: Decoded = codec.decode(request, shadow.validator)
        predictions = await shadow.apredict(decoded.inputs)
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
    agree = state.settings.shadow_agreement.agrees(primary, predictions)
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


# --- the middleware -----------------------------------------------------------------------------------------
class LeanPath:
    """Request id and access log for every HTTP request; the prediction `endpoints` answered by `serve`."""

    def __init__(self, app: ASGIApp, endpoints: Sequence[Endpoint], access_log: AccessLog) -> None:
        self.app = app
        self.access_log = access_log
        self._exact: dict[tuple[str, str], Endpoint] = {}
        self._templated: dict[tuple[str, int], list[Endpoint]] = {}
        for endpoint in endpoints:
            if "{" in endpoint.path:
                self._templated.setdefault((endpoint.method, len(endpoint.segments)), []).append(endpoint)
            else:
                self._exact[(endpoint.method, endpoint.path)] = endpoint
        # templated paths matched before (bounded: a path parameter can be anything a client sends)
        self._matched: dict[tuple[str, str], tuple[Endpoint, dict[str, str]]] = {}

    def match(self, method: str, path: str) -> tuple[Endpoint, dict[str, str]] | None:
        """The endpoint of a request and its path parameters (not to be modified), or None."""
        endpoint = self._exact.get((method, path))
        if endpoint is not None:
            return endpoint, {}
        known = self._matched.get((method, path))
        if known is not None:
            return known
        parts = path.split("/")
        for candidate in self._templated.get((method, len(parts)), ()):
            params: dict[str, str] = {}
            for want, got in zip(candidate.segments, parts, strict=True):
                if want.startswith("{"):
                    if not got:
                        break
                    params[want[1:-1]] = got
                elif want != got:
                    break
            else:
                if len(self._matched) < _MAX_MATCHED:
                    self._matched[(method, path)] = (candidate, params)
                return candidate, params
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = None
        for name, value in scope["headers"]:
            if name == _RID_HEADER:
                candidate = value.decode("latin-1")
                if 0 < len(candidate) <= _MAX_REQUEST_ID and candidate.isprintable():
                    rid = candidate
                break
        rid = rid or new_request_id()
        token = request_id_var.set(rid)
        context = scope.setdefault("state", {})
        context["request_id"] = rid
        started = time.perf_counter()
        status = 500
        method, path = scope["method"], scope["path"]
        try:
            matched = self.match(method, path)
            if matched is not None:
                status = await serve(matched[0], scope, receive, send, matched[1])
                return
            rid_header = (_RID_HEADER, rid.encode("latin-1"))

            async def send_with_id(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    headers = list(message.get("headers", []))
                    if not any(name == _RID_HEADER for name, _ in headers):  # an error handler may have set it
                        headers.append(rid_header)
                    message["headers"] = headers
                await send(message)

            await self.app(scope, receive, send_with_id)
        finally:
            duration = round((time.perf_counter() - started) * 1000, 3)
            self.access_log.record(rid, method, path, status, duration, context.get("alias"), context.get("version"))
            request_id_var.reset(token)


# --- OpenAPI ------------------------------------------------------------------------------------------------
def openapi_paths(document: dict[str, Any], endpoints: Sequence[Endpoint]) -> None:
    """Add the endpoints' operations (and the schemas they name) to an OpenAPI document, in place."""
    paths = document.setdefault("paths", {})
    components = document.setdefault("components", {}).setdefault("schemas", {})
    for endpoint in endpoints:
        slug = "".join(c if c.isalnum() else "_" for c in endpoint.path).strip("_")
        operation_id = f"{endpoint.codec.name}_{slug}_{endpoint.method.lower()}"
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = endpoint.doc.operation(components, operation_id)
