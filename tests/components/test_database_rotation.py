"""Database password rotation replayed for real against the local PostgreSQL: the bootstrap SQL of three
consecutive rotation periods, run (twice each) by a CREATEDB/CREATEROLE admin that is no superuser, keeps every
application connected across each rotation (last period's login role keeps working while the new one takes over),
then ends the replaced password's sessions and logins; each login role reaches its own database only, and what
either login role creates belongs to the NOLOGIN owner role, usable by the other. A role that logged in itself
before the login roles existed keeps its login for one period, then loses it.

The shared server trusts 127.0.0.1, so it does not check passwords at login: a password "logs in" here when the
role may log in and connect (a real connection) and the password matches the server's own SCRAM verifier of the
role (what scram-sha-256 authentication checks)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from components.artifact_store import ROTATION_EPOCH, rotation_plan
from components.database import AppDatabase, bootstrap_sql, login_role, password_variable

pytestmark = pytest.mark.servers

DAYS = 30
FIRST = 40  # a rotation period: slot a (0) is active in even periods


def _connect(role: str, database: str) -> psycopg.Connection[Any]:
    return psycopg.connect(host="127.0.0.1", user=role, dbname=database, autocommit=True, connect_timeout=5)


def _scram_matches(verifier: str | None, password: str) -> bool:
    """Whether `password` matches a `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` verifier."""
    match = re.fullmatch(r"SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)", verifier or "")
    if match is None:
        return False
    iterations, salt, stored_key, _ = match.groups()
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    return hmac.compare_digest(hashlib.sha256(client_key).digest(), base64.b64decode(stored_key))


def _reaches(role: str, database: str) -> bool:
    try:
        with _connect(role, database) as conn:
            conn.execute("SELECT 1")
            return True
    except psycopg.OperationalError as exc:
        assert "permission denied" in str(exc) or "not permitted to log in" in str(exc), exc
        return False


def logs_in(role: str, password: str, database: str) -> bool:
    """`role` with `password` gets a session on `database` (see the module's docstring)."""
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres") as conn:
        row = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)).fetchone()
    return row is not None and _scram_matches(row[0], password) and _reaches(role, database)


def alive(conn: psycopg.Connection[Any]) -> bool:
    try:
        conn.execute("SELECT 1")
        return True
    except psycopg.OperationalError:
        return False


@dataclass
class Replay:
    """Two applications under names unique to this run, their admin, and each (login role, period)'s password."""

    apps: list[AppDatabase]
    admin: str
    tmp: Path
    passwords: dict[tuple[str, int], str] = field(default_factory=dict)
    sessions: list[psycopg.Connection[Any]] = field(default_factory=list)

    def password(self, login: str, period: int) -> str:
        return self.passwords.setdefault((login, period), "pw-" + uuid.uuid4().hex)

    def run(self, period: int) -> None:
        """The bootstrap of `period`, as the Job runs it: psql, the SQL from a file, each login role's password of
        its slot's period as a variable."""
        plan = rotation_plan(ROTATION_EPOCH + timedelta(days=DAYS * period, hours=12), DAYS)
        assert plan.period == period
        variables = []
        for app in self.apps:
            for slot in plan.slots:
                login = login_role(app.role, slot.slot)
                variables += ["-v", f"{password_variable(login)}={self.password(login, slot.generation)}"]
        path = self.tmp / f"bootstrap-{period}.sql"
        path.write_text(bootstrap_sql(self.apps, plan))
        result = subprocess.run(
            ["psql", "-X", "-h", "127.0.0.1", "-U", self.admin, "-d", "postgres", *variables, "-f", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr

    def session(self, role: str, database: str) -> psycopg.Connection[Any]:
        conn = _connect(role, database)
        self.sessions.append(conn)
        return conn


@pytest.fixture
def replay(postgres_available: Any, tmp_path: Path) -> Iterator[Replay]:
    prefix = f"rot{uuid.uuid4().hex[:8]}"
    apps = [
        AppDatabase(f"{prefix}_mlflow", f"{prefix}_mlflow", "ns", "s", "username-password", "mlflow"),
        AppDatabase(f"{prefix}_airflow", f"{prefix}_airflow", "ns", "s", "sqlalchemy-url", "airflow"),
    ]
    admin = f"{prefix}_admin"
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {admin} LOGIN CREATEDB CREATEROLE NOSUPERUSER")  # like the RDS master
    state = Replay(apps, admin, tmp_path)
    yield state
    for session in state.sessions:
        session.close()
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True) as conn:
        for app in apps:
            conn.execute(f"DROP DATABASE IF EXISTS {app.database} WITH (FORCE)")
        for app in apps:
            for slot in (0, 1):
                conn.execute(f"DROP ROLE IF EXISTS {login_role(app.role, slot)}")
            conn.execute(f"DROP ROLE IF EXISTS {app.role}")
        conn.execute(f"DROP ROLE IF EXISTS {admin}")


def _owner_of(table: str, database: str) -> str:
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname=database) as conn:
        row = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = %s", (table,)).fetchone()
    assert row is not None, table
    return str(row[0])


def test_three_periods_keep_every_app_connected_and_retire_the_replaced_password(replay: Replay) -> None:
    mlflow, airflow = replay.apps
    a, b = login_role(mlflow.role, 0), login_role(mlflow.role, 1)
    replay.run(FIRST)
    replay.run(FIRST)  # the Job may run again within a period
    # period FIRST: slot a active with this period's password; b holds last period's
    assert logs_in(a, replay.password(a, FIRST), mlflow.database)
    assert logs_in(b, replay.password(b, FIRST - 1), mlflow.database)
    assert not _reaches(mlflow.role, mlflow.database), "the owner role does not log in"
    pod_a = replay.session(a, mlflow.database)
    pod_a.execute("CREATE TABLE made_by_a (x int)")
    pod_a.execute("INSERT INTO made_by_a VALUES (1)")

    # the next period: b gets a new password and takes over; a's sessions and password keep working (overlap)
    replay.run(FIRST + 1)
    assert logs_in(b, replay.password(b, FIRST + 1), mlflow.database)
    assert not logs_in(b, replay.password(b, FIRST - 1), mlflow.database), "b's password of two periods ago"
    assert alive(pod_a) and logs_in(a, replay.password(a, FIRST), mlflow.database)
    pod_b = replay.session(b, mlflow.database)
    replay.run(FIRST + 1)  # run again: the new role's sessions stay
    assert alive(pod_b) and alive(pod_a)
    pod_b.execute("INSERT INTO made_by_a VALUES (2)")
    pod_b.execute("CREATE TABLE made_by_b (x int)")
    assert _owner_of("made_by_a", mlflow.database) == _owner_of("made_by_b", mlflow.database) == mlflow.role

    # once more: a gets a new password; its old password no longer logs in and its old sessions end; b stays
    replay.run(FIRST + 2)
    assert not alive(pod_a), "the replaced password's sessions end"
    assert not logs_in(a, replay.password(a, FIRST), mlflow.database)
    assert logs_in(a, replay.password(a, FIRST + 2), mlflow.database)
    assert alive(pod_b) and logs_in(b, replay.password(b, FIRST + 1), mlflow.database)
    pod_a = replay.session(a, mlflow.database)
    assert pod_a.execute("SELECT count(*) FROM made_by_a").fetchone() == (2,)
    pod_a.execute("DROP TABLE made_by_b")  # either login role may do what the owner may

    # each login role reaches its own database and no other (the other application's)
    for slot in (0, 1):
        assert _reaches(login_role(airflow.role, slot), airflow.database)
        assert not _reaches(login_role(mlflow.role, slot), airflow.database)
        assert not _reaches(login_role(airflow.role, slot), mlflow.database)
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres") as conn:
        flags = conn.execute(
            "SELECT rolname, rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname IN (%s, %s, %s)",
            (mlflow.role, a, b),
        ).fetchall()
    assert sorted(flags) == sorted((r, False, False, False) for r in (mlflow.role, a, b))


def test_a_role_that_logged_in_itself_keeps_its_login_one_period(replay: Replay) -> None:
    """An earlier release's role (it logged in and owned the database) becomes the owner role: its pods keep
    working while they roll onto a login role, and in the next period it loses its login and its sessions."""
    mlflow, _ = replay.apps
    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {mlflow.role} LOGIN PASSWORD 'legacy-password'")
        conn.execute(f"GRANT {mlflow.role} TO {replay.admin}")
        conn.execute(f"CREATE DATABASE {mlflow.database} OWNER {mlflow.role}")
    legacy = replay.session(mlflow.role, mlflow.database)
    legacy.execute("CREATE TABLE legacy_table (x int)")
    replay.run(FIRST)
    replay.run(FIRST)
    assert alive(legacy) and logs_in(mlflow.role, "legacy-password", mlflow.database)
    a = login_role(mlflow.role, 0)
    with _connect(a, mlflow.database) as conn:
        conn.execute("INSERT INTO legacy_table VALUES (1)")  # the login role uses what the old role made
    replay.run(FIRST + 1)
    assert not alive(legacy) and not _reaches(mlflow.role, mlflow.database)
    assert logs_in(a, replay.password(a, FIRST), mlflow.database)
