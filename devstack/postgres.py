"""A fresh PostgreSQL database per test run (or demo), dropped afterwards.

`fresh_database("mlflow")` creates `mlflow_<random>` on the local server (default
`postgresql://postgres@127.0.0.1:5432`, trust auth), yields its SQLAlchemy URL and drops it (with
FORCE, so leftover connections do not block) on exit. `check_server()` fails clearly when PostgreSQL
does not answer.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

from devstack.procs import DevstackError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5432
DEFAULT_USER = "postgres"


@dataclass(frozen=True)
class PostgresServer:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    user: str = DEFAULT_USER
    password: str | None = None

    def conninfo(self, dbname: str = "postgres") -> str:
        parts = [f"host={self.host}", f"port={self.port}", f"user={self.user}", f"dbname={dbname}"]
        if self.password:
            parts.append(f"password={self.password}")
        return " ".join(parts)

    def sqlalchemy_url(self, dbname: str) -> str:
        """URL for SQLAlchemy (MLflow's `--backend-store-uri`), using the psycopg (v3) driver."""
        auth = self.user if not self.password else f"{self.user}:{self.password}"
        return f"postgresql+psycopg://{auth}@{self.host}:{self.port}/{dbname}"


def check_server(server: PostgresServer | None = None) -> None:
    """Raise `DevstackError` with the reason when PostgreSQL does not accept a connection."""
    import psycopg

    server = server or PostgresServer()
    try:
        with psycopg.connect(server.conninfo(), connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        raise DevstackError(
            f"PostgreSQL at {server.host}:{server.port} (user {server.user}) is not reachable: {exc}. "
            "Start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
        ) from exc


def create_database(name: str, server: PostgresServer | None = None) -> None:
    import psycopg
    from psycopg import sql

    server = server or PostgresServer()
    with psycopg.connect(server.conninfo(), autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(name: str, server: PostgresServer | None = None) -> None:
    import psycopg
    from psycopg import sql

    server = server or PostgresServer()
    with psycopg.connect(server.conninfo(), autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextlib.contextmanager
def fresh_database(prefix: str = "devstack", server: PostgresServer | None = None) -> Iterator[str]:
    """Create a uniquely named database, yield its SQLAlchemy URL, drop it on exit."""
    server = server or PostgresServer()
    check_server(server)
    name = f"{prefix}_{secrets.token_hex(4)}"
    create_database(name, server)
    try:
        yield server.sqlalchemy_url(name)
    finally:
        drop_database(name, server)
