"""PostgreSQL access of the API: a small asynchronous connection pool and the versioned migrations.

Migrations are the SQL files of `services/api/migrations` (`NNNN_<name>.sql`), applied in order at start, each
in its own transaction, under a session advisory lock: replicas starting together apply each file once. The
applied versions are recorded in `api_schema_migrations`. A migration may read the API's settings it needs as
`current_setting('mlops.<name>')` (`params` of `migrate`, set for the migration's transaction only).

`psycopg_pool` is not a dependency: `Pool` keeps at most `max_size` connections (autocommit; callers open a
transaction where they write), hands out idle ones first and drops broken ones. A failed connection attempt is
`DependencyUnavailable("database")`, which the API answers with 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

import psycopg
from psycopg.rows import dict_row

from services.api.errors import DATABASE, DependencyUnavailable

log = logging.getLogger("mlops.api.db")

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_MIGRATION = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# Advisory lock keys (one 64-bit key space per database: these are the API's own database).
MIGRATION_LOCK = 7_241_001
EVENTS_LOCK = 7_241_002  # serialises event inserts: ids become visible in the order they were taken
RECONCILER_LOCK = 7_241_003  # the reconciler's leader

Connection = psycopg.AsyncConnection[dict[str, object]]


def migrations(folder: Path = MIGRATIONS) -> list[tuple[int, str, str]]:
    """(version, file name, SQL) of every migration, in order; ValueError for a misnamed or duplicate file."""
    found: dict[int, tuple[int, str, str]] = {}
    for path in sorted(folder.glob("*.sql")):
        match = _MIGRATION.match(path.name)
        if not match:
            raise ValueError(f"migration {path.name} must be named NNNN_<name>.sql")
        version = int(match.group(1))
        if version in found:
            raise ValueError(f"two migrations with version {version}: {found[version][1]}, {path.name}")
        found[version] = (version, path.name, path.read_text())
    return [found[v] for v in sorted(found)]


async def migrate(conn: Connection, folder: Path = MIGRATIONS, params: Mapping[str, str] | None = None) -> list[str]:
    """Apply the migrations not applied yet; the names of those applied now. `params` are visible to them as
    `current_setting('mlops.<key>')`."""
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS api_schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cur = await conn.execute("SELECT version FROM api_schema_migrations")
        done = {int(str(row["version"])) for row in await cur.fetchall()}
        for version, name, sql in migrations(folder):
            if version in done:
                continue
            async with conn.transaction():
                for key, text in (params or {}).items():
                    await conn.execute("SELECT set_config(%s, %s, true)", (f"mlops.{key}", text))
                await conn.execute(sql.encode())
                await conn.execute("INSERT INTO api_schema_migrations (version, name) VALUES (%s, %s)", (version, name))
            applied_now.append(name)
            log.info("applied migration %s", name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
    return applied_now


class Pool:
    """At most `max_size` autocommit connections, created on demand, reused, dropped when broken."""

    def __init__(
        self,
        conninfo: str,
        connect_kwargs: dict[str, str] | Callable[[], dict[str, str]] | None = None,
        max_size: int = 10,
        timeout: float = 5.0,
    ) -> None:
        """`connect_kwargs`: libpq parameters over `conninfo`, or a function giving them for each new connection
        (credentials read again from their files, so a rotated password is used by the next connection)."""
        self.conninfo = conninfo
        fixed = dict(connect_kwargs or {}) if not callable(connect_kwargs) else {}
        self.connect_kwargs: Callable[[], dict[str, str]] = connect_kwargs if callable(connect_kwargs) else fixed.copy
        self.timeout = timeout
        self._idle: list[Connection] = []
        self._slots = asyncio.Semaphore(max_size)
        self._closed = False

    async def connect(self) -> Connection:
        """A new connection outside the pool (the reconciler's leader lock, the migrations)."""
        try:
            return await psycopg.AsyncConnection.connect(
                self.conninfo,
                autocommit=True,
                row_factory=dict_row,
                connect_timeout=max(1, int(self.timeout)),
                **self.connect_kwargs(),  # type: ignore[arg-type]
            )
        except psycopg.OperationalError as exc:
            raise DependencyUnavailable(DATABASE, _first_line(exc)) from exc

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        if self._closed:
            raise DependencyUnavailable(DATABASE, "the connection pool is closed (shutting down)")
        try:
            await asyncio.wait_for(self._slots.acquire(), self.timeout)
        except TimeoutError:
            raise DependencyUnavailable(DATABASE, "no database connection free within the timeout") from None
        conn: Connection | None = None
        try:
            while self._idle and conn is None:
                candidate = self._idle.pop()
                if not candidate.closed and not candidate.broken:
                    conn = candidate
            if conn is None:
                conn = await self.connect()
            try:
                yield conn
            except psycopg.OperationalError as exc:
                raise DependencyUnavailable(DATABASE, _first_line(exc)) from exc
            finally:
                await self._give_back(conn)
        finally:
            self._slots.release()

    async def _give_back(self, conn: Connection) -> None:
        if conn.closed or conn.broken or self._closed:
            await conn.close()
            return
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            await conn.close()  # left inside a transaction by an error: not reusable
            return
        self._idle.append(conn)

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
