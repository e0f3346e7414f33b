"""Server-Sent Events: every state change and new fact of runs, from the database (see services.api.events).
A model-scoped token's global stream carries only its models' events (filtered in the query); asking for
another model's stream, or a run of another model, is 403 naming the model."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from services.api import auth, events, runs, store
from services.api.errors import ApiError
from services.api.routes.bodies import AUTH_ERRORS, NOT_FOUND, Responses
from services.api.routes.deps import Reader, State

router = APIRouter(tags=["events"], responses=AUTH_ERRORS)

# One event of the stream (as OpenAPI 3.2 describes Server-Sent Events: `id`, `event`, `data`, `retry`)
_EVENT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9]+$"},
        "event": {
            "type": "string",
            "pattern": r"^(training|rollback)\.(queued|running|success|failed|cancelled|updated)$",
        },
        "retry": {"type": "integer"},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {
                "type": "object",
                "required": ["id", "type", "run_id", "kind", "model", "state", "created_at", "run"],
                "properties": {
                    "id": {"type": "integer"},
                    "type": {"type": "string"},
                    "run_id": {"type": "string", "format": "uuid"},
                    "kind": {"type": "string", "enum": ["training", "rollback"]},
                    "model": {"type": "string"},
                    "state": {"type": "string", "enum": ["queued", "running", "success", "failed", "cancelled"]},
                    "created_at": {"type": "string"},
                    "run": {"type": "object", "description": "The run as GET returns it, at the time of the event"},
                },
            },
        },
    },
    "required": ["event", "data"],
}
_SSE: Responses = {
    200: {
        "description": "A text/event-stream: `id`, `event` (e.g. training.running) and `data` (JSON) per event",
        "content": {events.MEDIA_TYPE: {"schema": _EVENT}},
    }
}
LastEventId = Annotated[
    str | None,
    Header(alias="Last-Event-ID", max_length=20, pattern=r"^[0-9]+$", description="Resume after this event id"),
]
After = Annotated[int | None, Query(ge=0, le=2**62, description="Resume after this event id (as Last-Event-ID)")]
Follow = Annotated[bool, Query(description="false: send the events there are and end")]


def _after(last_event_id: str | None, after: int | None, default: int) -> int:
    if last_event_id is not None:
        return int(last_event_id)
    return after if after is not None else default


def _stored(caller: auth.Principal) -> str | None:
    """The id of a stored token (None for the admin token, which the database does not hold)."""
    return None if caller is auth.ADMIN else caller.id


def _response(state: Any, request: Request, selection: events.StreamFilter) -> StreamingResponse:
    body = events.stream(
        state.pool,
        selection,
        poll=state.settings.events_poll_seconds,
        disconnected=request.is_disconnected,
        stopping=state.stopping,
    )
    return StreamingResponse(
        body,
        media_type=events.MEDIA_TYPE,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get(
    "/v1/events",
    response_class=StreamingResponse,
    responses=_SSE,
    summary="Every run's events as they happen (from now on, or after Last-Event-ID / after)",
)
async def all_events(
    request: Request,
    caller: Reader,
    state: State,
    last_event_id: LastEventId = None,
    after: After = None,
    model: Annotated[str | None, Query(max_length=63)] = None,
    kind: Annotated[str | None, Query(pattern="^(training|rollback)$")] = None,
    follow: Follow = True,
) -> StreamingResponse:
    if model is not None:
        caller.check_model(model)
    scoped = caller.model_filter()
    if last_event_id is None and after is None:
        async with state.pool.connection() as conn:
            start = await store.last_event_id(conn)
    else:
        start = _after(last_event_id, after, 0)
    selection = events.StreamFilter(
        start,
        model=model,
        kind=kind,
        follow=follow,
        models=None if scoped is None else tuple(scoped),
        token_id=_stored(caller),
    )
    return _response(state, request, selection)


def _run_stream(kind: str) -> None:
    """Register `GET <kind path>/{id}/events`: one run's events from its start (or after Last-Event-ID)."""

    async def run_events(
        id: uuid.UUID,
        request: Request,
        caller: Reader,
        state: State,
        last_event_id: LastEventId = None,
        after: After = None,
        follow: Follow = True,
    ) -> StreamingResponse:
        async with state.pool.connection() as conn:
            row = await store.get_run(conn, id, kind)
        if row is None:
            raise ApiError(404, f"no {kind} {id}", "id")
        caller.check_model(row["model"])
        selection = events.StreamFilter(
            _after(last_event_id, after, 0), run_id=id, follow=follow, token_id=_stored(caller)
        )
        return _response(state, request, selection)

    router.add_api_route(
        f"{runs.PATHS[kind]}/{{id}}/events",
        run_events,
        methods=["GET"],
        name=f"{kind}_events",
        response_class=StreamingResponse,
        responses={**_SSE, **NOT_FOUND},
        summary=f"One {kind}'s events from its start (or after Last-Event-ID); ends after its final state",
    )


for _kind in runs.KINDS:
    _run_stream(_kind)
