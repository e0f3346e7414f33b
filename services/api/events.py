"""Server-Sent Events of the API, read from PostgreSQL (never from memory), so any replica serves any client.

A stream sends every event with an id greater than the client's `Last-Event-ID` header (or the `after` query
parameter): ids come from one identity column and are committed in increasing order, so resuming loses nothing
and repeats nothing. New events are found by polling the table every `poll` seconds; a comment line is sent
every `HEARTBEAT_SECONDS` so that proxies keep the connection open. A run's stream ends after the run's terminal
event; the global stream runs until the client leaves; with `follow=false` both end once the backlog is sent.
A model-scoped token's streams are filtered in the query: other models' events never leave the database. A stream
opened with a stored token ends (after a comment saying why) at the first poll after the token is revoked or
expires.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from services.api import store
from services.api.db import Pool
from services.api.errors import DependencyUnavailable
from services.api.states import is_terminal

log = logging.getLogger("mlops.api.events")

HEARTBEAT_SECONDS = 15.0
RETRY_MILLISECONDS = 2000
MEDIA_TYPE = "text/event-stream"


@dataclass(frozen=True)
class StreamFilter:
    after: int
    run_id: uuid.UUID | None = None
    model: str | None = None
    kind: str | None = None
    follow: bool = True
    models: tuple[str, ...] | None = None  # a model-scoped token sees only these models' events
    token_id: str | None = None  # a stored token's stream ends once it is revoked or expired


def event_payload(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": int(row["id"]),
        "type": row["type"],
        "run_id": str(row["run_id"]),
        "kind": row["kind"],
        "model": row["model"],
        "state": row["state"],
        "created_at": row["created_at"].isoformat(),
        "run": row["data"],
    }


def format_event(row: dict[str, Any]) -> str:
    data = json.dumps(event_payload(row), separators=(",", ":"), default=str)
    return f"id: {row['id']}\nevent: {row['type']}\ndata: {data}\n\n"


async def stream(
    pool: Pool,
    selection: StreamFilter,
    *,
    poll: float,
    disconnected: Callable[[], Any],
    stopping: asyncio.Event,
) -> AsyncIterator[str]:
    last = selection.after
    yield f"retry: {RETRY_MILLISECONDS}\n\n"
    quiet_since = time.monotonic()
    while not stopping.is_set():
        if await disconnected():
            return
        try:
            async with pool.connection() as conn:
                if selection.token_id is not None and not await store.token_live(conn, selection.token_id):
                    yield ": the token of this stream was revoked or expired\n\n"
                    return
                ended = False
                if selection.run_id is not None:
                    run = await store.get_run(conn, selection.run_id)
                    ended = run is None or is_terminal(run["state"])
                rows = await store.events_after(
                    conn,
                    last,
                    run_id=selection.run_id,
                    model=selection.model,
                    kind=selection.kind,
                    models=selection.models,
                )
        except DependencyUnavailable as exc:
            log.warning("event stream: %s", exc)
            yield f": {exc.detail}\n\n"
            await _sleep(stopping, poll)
            continue
        for row in rows:
            last = int(row["id"])
            yield format_event(row)
        if rows:
            quiet_since = time.monotonic()
            continue  # there may be more: read on before waiting
        if ended or not selection.follow:
            return  # the run's terminal event was committed with its state, so it was sent above
        if time.monotonic() - quiet_since >= HEARTBEAT_SECONDS:
            quiet_since = time.monotonic()
            yield ": keep-alive\n\n"
        await _sleep(stopping, poll)


async def _sleep(stopping: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stopping.wait(), seconds)
    except TimeoutError:
        pass
