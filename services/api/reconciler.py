"""The reconciler: one leader among the API's replicas brings every unfinished run up to date.

Each replica runs this loop in its lifespan. The leader is whoever holds the session advisory lock
`RECONCILER_LOCK` on its own database connection: when that process or its connection dies, PostgreSQL
releases the lock and another replica takes over within one interval. Every `interval` seconds the leader
refreshes each queued or running run from Airflow and MLflow (`services.api.runs.refresh`). Nothing lives only
in memory: a restarted API continues from the database, so a run that ended while no API was up gets its final
state at the next round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import psycopg

from services.api import runs, store
from services.api.airflow import AirflowClient
from services.api.db import RECONCILER_LOCK, Connection, Pool
from services.api.errors import DependencyUnavailable
from services.api.mlflow import MlflowClient

log = logging.getLogger("mlops.api.reconciler")


class Reconciler:
    def __init__(self, pool: Pool, airflow: AirflowClient, mlflow: MlflowClient, interval: float) -> None:
        self.pool = pool
        self.airflow = airflow
        self.mlflow = mlflow
        self.interval = interval
        self._leader: Connection | None = None
        self.rounds = 0

    @property
    def is_leader(self) -> bool:
        return self._leader is not None and not self._leader.closed

    async def _lead(self) -> bool:
        """Hold (or try to take) the leader lock."""
        if self.is_leader:
            return True
        conn = await self.pool.connect()
        cur = await conn.execute("SELECT pg_try_advisory_lock(%s) AS ok", (RECONCILER_LOCK,))
        row = await cur.fetchone()
        if row and row["ok"]:
            self._leader = conn
            log.info("this replica leads the reconciler")
            return True
        await conn.close()
        return False

    async def round(self) -> int:
        """Refresh every unfinished run once; how many were looked at."""
        async with self.pool.connection() as conn:
            pending = await store.unfinished_runs(conn)
        for run in pending:
            try:
                await runs.refresh(self.pool, self.airflow, self.mlflow, run)
            except DependencyUnavailable as exc:
                log.warning("reconciler round stopped: %s", exc)
                break
        self.rounds += 1
        return len(pending)

    async def run(self) -> None:
        while True:
            try:
                if await self._lead():
                    await self.round()
            except DependencyUnavailable as exc:
                log.warning("reconciler: %s", exc)
                await self._drop()
            except psycopg.Error as exc:
                log.warning("reconciler lost its database connection: %s", exc)
                await self._drop()
            except Exception:
                log.exception("reconciler round failed")
            await asyncio.sleep(self.interval)

    async def _drop(self) -> None:
        conn, self._leader = self._leader, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                await conn.close()

    async def close(self) -> None:
        await self._drop()
