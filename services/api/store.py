"""The API's SQL: tokens, runs and events. Every function takes an open connection (see `services.api.db`).

Events are inserted only inside a transaction that first takes the transaction-scoped advisory lock
`EVENTS_LOCK`: event ids are then committed in increasing order, so a reader that has seen id N never later
finds a smaller id appear (`Last-Event-ID` resumes without loss).
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from services.api.db import EVENTS_LOCK, Connection
from services.api.errors import ApiError
from services.api.states import ACTIVE, RunState

Row = dict[str, Any]
_RUN_COLUMNS = (
    "state",
    "airflow_state",
    "mlflow_run_id",
    "metrics",
    "registered_version",
    "version_aliases",
    "gate",
    "error",
    "cancel_requested",
    "started_at",
    "finished_at",
)
_JSON_COLUMNS = {"metrics", "gate"}


# --- tokens --------------------------------------------------------------------------------------
_TOKEN_INFO = "id, name, scopes, models, created_by, created_at, expires_at, last_used_at, revoked_at"


async def insert_token(
    conn: Connection,
    token_id: str,
    name: str,
    scopes: Sequence[str],
    token_hash: str,
    created_by: str,
    *,
    expires_in: float,
    models: Sequence[str] | None = None,
) -> Row:
    """A new token expiring `expires_in` seconds from now (the database's clock); `models` None: every model."""
    cur = await conn.execute(
        "INSERT INTO api_tokens (id, name, scopes, token_hash, created_by, expires_at, models) "
        "VALUES (%s, %s, %s, %s, %s, now() + make_interval(secs => %s), %s) "
        f"RETURNING {_TOKEN_INFO}",
        (token_id, name, list(scopes), token_hash, created_by, expires_in, None if models is None else list(models)),
    )
    return dict(await _one(cur))


async def find_token(conn: Connection, token_id: str, used_within: float) -> Row | None:
    """The unrevoked token `token_id` with `expired` (by the database's clock) and `stale_use` (its
    `last_used_at` is older than `used_within` seconds, or unset)."""
    cur = await conn.execute(
        "SELECT id, name, scopes, models, token_hash, expires_at, expires_at <= now() AS expired,"
        " (last_used_at IS NULL OR last_used_at < now() - make_interval(secs => %s)) AS stale_use"
        " FROM api_tokens WHERE id = %s AND revoked_at IS NULL",
        (used_within, token_id),
    )
    row = await cur.fetchone()
    return dict(row) if row else None


async def touch_token(conn: Connection, token_id: str, used_within: float) -> None:
    """Record a use of the token, unless one was recorded less than `used_within` seconds ago (by any replica)."""
    await conn.execute(
        "UPDATE api_tokens SET last_used_at = now() WHERE id = %s"
        " AND (last_used_at IS NULL OR last_used_at < now() - make_interval(secs => %s))",
        (token_id, used_within),
    )


async def token_live(conn: Connection, token_id: str) -> bool:
    """Whether the token is neither revoked nor expired (an open event stream asks on every poll)."""
    cur = await conn.execute(
        "SELECT 1 FROM api_tokens WHERE id = %s AND revoked_at IS NULL AND expires_at > now()", (token_id,)
    )
    return await cur.fetchone() is not None


async def list_tokens(conn: Connection) -> list[Row]:
    cur = await conn.execute(f"SELECT {_TOKEN_INFO} FROM api_tokens ORDER BY created_at, id")
    return [dict(r) for r in await cur.fetchall()]


async def revoke_token(conn: Connection, token_id: str) -> Row | None:
    cur = await conn.execute(
        f"UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = %s RETURNING {_TOKEN_INFO}",
        (token_id,),
    )
    row = await cur.fetchone()
    return dict(row) if row else None


# --- runs ----------------------------------------------------------------------------------------
async def insert_run(
    conn: Connection,
    *,
    run_id: uuid.UUID,
    kind: str,
    model: str,
    request: Mapping[str, Any],
    principal: str,
    idempotency_key: str,
    request_hash: str,
    dag_id: str,
    dag_run_id: str,
) -> tuple[Row, bool]:
    """The run of (principal, key): inserted now (True) or the existing one (False). A concurrent insert of the
    same key waits for the other transaction, then sees its row."""
    cur = await conn.execute(
        "INSERT INTO runs (id, kind, model, request, principal, idempotency_key, request_hash, dag_id, dag_run_id,"
        " state) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING *",
        (
            run_id,
            kind,
            model,
            Jsonb(dict(request)),
            principal,
            idempotency_key,
            request_hash,
            dag_id,
            dag_run_id,
            RunState.QUEUED.value,
        ),
    )
    row = await cur.fetchone()
    if row is not None:
        return dict(row), True
    cur = await conn.execute(
        "SELECT * FROM runs WHERE principal = %s AND idempotency_key = %s", (principal, idempotency_key)
    )
    existing = await cur.fetchone()
    if existing is None:  # the id or DAG-run id is taken by another key: cannot happen with derived ids
        raise ApiError(409, "this Idempotency-Key cannot be used: its run id is taken", "Idempotency-Key")
    return dict(existing), False


async def get_run(conn: Connection, run_id: uuid.UUID, kind: str | None = None) -> Row | None:
    if kind is None:
        cur = await conn.execute("SELECT * FROM runs WHERE id = %s", (run_id,))
    else:
        cur = await conn.execute("SELECT * FROM runs WHERE id = %s AND kind = %s", (run_id, kind))
    row = await cur.fetchone()
    return dict(row) if row else None


async def lock_run(conn: Connection, run_id: uuid.UUID) -> Row | None:
    """The run, locked FOR UPDATE until the transaction ends (the reconciler and a cancel never interleave)."""
    cur = await conn.execute("SELECT * FROM runs WHERE id = %s FOR UPDATE", (run_id,))
    row = await cur.fetchone()
    return dict(row) if row else None


async def unfinished_runs(conn: Connection, limit: int = 200) -> list[Row]:
    cur = await conn.execute(
        "SELECT * FROM runs WHERE state = ANY(%s) ORDER BY created_at LIMIT %s",
        ([s.value for s in ACTIVE], limit),
    )
    return [dict(r) for r in await cur.fetchall()]


def encode_cursor(row: Mapping[str, Any]) -> str:
    raw = json.dumps([row["created_at"].isoformat(), str(row["id"])]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, run_id = json.loads(raw)
        return datetime.fromisoformat(created), uuid.UUID(run_id)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise ApiError(400, "cursor is not a cursor this API returned (use next_cursor as is)", "cursor") from None


async def list_runs(
    conn: Connection,
    kind: str,
    *,
    model: str | None,
    state: str | None,
    limit: int,
    cursor: str | None,
    models: Sequence[str] | None = None,
) -> tuple[list[Row], str | None]:
    """One page of runs, newest first, and the cursor of the next page (None on the last); `models`: only runs
    of these models (a model-scoped token's listing)."""
    where = ["kind = %s"]
    args: list[Any] = [kind]
    if model is not None:
        where.append("model = %s")
        args.append(model)
    if models is not None:
        where.append("model = ANY(%s)")
        args.append(list(models))
    if state is not None:
        where.append("state = %s")
        args.append(state)
    if cursor is not None:
        created, run_id = decode_cursor(cursor)
        where.append("(created_at, id) < (%s, %s)")
        args += [created, run_id]
    cur = await conn.execute(
        f"SELECT * FROM runs WHERE {' AND '.join(where)} ORDER BY created_at DESC, id DESC LIMIT %s",
        (*args, limit + 1),
    )
    rows = [dict(r) for r in await cur.fetchall()]
    page = rows[:limit]
    return page, (encode_cursor(page[-1]) if len(rows) > limit else None)


async def update_run(conn: Connection, run_id: uuid.UUID, changes: Mapping[str, Any]) -> Row:
    """Write `changes` (columns of `_RUN_COLUMNS`) and return the updated row."""
    unknown = set(changes) - set(_RUN_COLUMNS)
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    sets = [f"{column} = %s" for column in changes]
    values = [Jsonb(v) if k in _JSON_COLUMNS and v is not None else v for k, v in changes.items()]
    cur = await conn.execute(
        f"UPDATE runs SET {', '.join(sets)}, updated_at = now() WHERE id = %s RETURNING *", (*values, run_id)
    )
    return dict(await _one(cur))


# --- events --------------------------------------------------------------------------------------
async def add_event(conn: Connection, run: Mapping[str, Any], event_type: str, data: Mapping[str, Any]) -> int:
    """Append an event of `run` (call inside a transaction); its id."""
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (EVENTS_LOCK,))
    cur = await conn.execute(
        "INSERT INTO events (run_id, kind, model, type, state, data) VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
        (run["id"], run["kind"], run["model"], event_type, run["state"], Jsonb(dict(data))),
    )
    row = await _one(cur)
    return int(row["id"])


async def events_after(
    conn: Connection,
    after: int,
    *,
    run_id: uuid.UUID | None = None,
    model: str | None = None,
    kind: str | None = None,
    models: Sequence[str] | None = None,
    limit: int = 200,
) -> list[Row]:
    """Events after id `after`, filtered (`models`: only these models' events, for a model-scoped token)."""
    where = ["id > %s"]
    args: list[Any] = [after]
    for column, value in (("run_id", run_id), ("model", model), ("kind", kind)):
        if value is not None:
            where.append(f"{column} = %s")
            args.append(value)
    if models is not None:
        where.append("model = ANY(%s)")
        args.append(list(models))
    cur = await conn.execute(f"SELECT * FROM events WHERE {' AND '.join(where)} ORDER BY id LIMIT %s", (*args, limit))
    return [dict(r) for r in await cur.fetchall()]


async def last_event_id(conn: Connection) -> int:
    cur = await conn.execute("SELECT coalesce(max(id), 0) AS id FROM events")
    row = await _one(cur)
    return int(row["id"])


async def _one(cur: Any) -> Row:
    row = await cur.fetchone()
    if row is None:
        raise RuntimeError("the statement returned no row")
    return dict(row)
