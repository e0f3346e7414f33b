"""The API's migrations on a real PostgreSQL database: tokens that existed before expiry (migration 0002) get the
default expiry counted from the migration (the setting the runner passes), revoked ones expire when they were
revoked, none is left without an expiry; the migrations apply once."""

from __future__ import annotations

import asyncio
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from devstack.postgres import PostgresServer
from services.api import db

pytestmark = [pytest.mark.servers]


async def _connect(database: str) -> db.Connection:
    return await psycopg.AsyncConnection.connect(
        PostgresServer().conninfo(database), autocommit=True, row_factory=dict_row
    )


async def _upgrade(database: str, first_only: Path) -> tuple[list[str], list[dict[str, Any]], list[str]]:
    conn = await _connect(database)
    try:
        assert await db.migrate(conn, first_only) == ["0001_initial.sql"]
        await conn.execute(
            "INSERT INTO api_tokens (id, name, scopes, token_hash, created_by, created_at, revoked_at) VALUES"
            " ('aaaaaaaaaaaa', 'old', '{read}', 'h1', 'admin', now() - interval '400 days', NULL),"
            " ('bbbbbbbbbbbb', 'revoked', '{read}', 'h2', 'admin', now() - interval '9 days',"
            " now() - interval '2 days')"
        )
        before = await (await conn.execute("SELECT now() AS t")).fetchone()
        applied = await db.migrate(conn, params={"token_ttl_seconds": str(3 * 86_400)})
        after = await (await conn.execute("SELECT now() AS t")).fetchone()
        assert before is not None and after is not None
        cur = await conn.execute("SELECT id, expires_at, last_used_at, models, revoked_at FROM api_tokens ORDER BY id")
        rows = [dict(r) for r in await cur.fetchall()]
        again = await db.migrate(conn, params={"token_ttl_seconds": "1"})
    finally:
        await conn.close()
    rows[0]["migrated_between"] = (before["t"], after["t"])
    return applied, rows, again


def test_existing_tokens_get_the_default_expiry_from_the_migration(database: str, tmp_path: Path) -> None:
    shutil.copy(db.MIGRATIONS / "0001_initial.sql", tmp_path / "0001_initial.sql")
    applied, (old, revoked), again = asyncio.run(_upgrade(database, tmp_path))
    assert applied == [name for _, name, _ in db.migrations()][1:] and again == []
    start, end = old["migrated_between"]  # counted from the migration, not from the token's creation
    assert start + timedelta(days=3) <= old["expires_at"] <= end + timedelta(days=3)
    assert old["last_used_at"] is None and old["models"] is None
    assert revoked["expires_at"] == revoked["revoked_at"]
    with psycopg.connect(PostgresServer().conninfo(database), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.NotNullViolation):
            conn.execute(
                "INSERT INTO api_tokens (id, name, scopes, token_hash, created_by)"
                " VALUES ('c', 'x', '{read}', 'h', 'a')"
            )
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                "INSERT INTO api_tokens (id, name, scopes, token_hash, created_by, expires_at, models)"
                " VALUES ('d', 'x', '{read}', 'h', 'a', now(), '{}')"
            )
