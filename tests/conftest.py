"""Suite-wide rules.

- In CI (CI=true) no test may skip: tests that need PostgreSQL, MLflow, moto or Airflow must run,
  so a skip is turned into a failure that says why it would have skipped.
- PostgreSQL must answer on 127.0.0.1:5432 before tests that need it start (checked once).
- Under pytest-xdist (`-n N --dist loadfile`, as `make test` runs) a module's tests stay together on one worker, in
  their order, so the servers a module starts are started once, and a package's session fixtures once per worker
  that needs them. Every worker must collect the same tests: no random parameter ids.
"""

from __future__ import annotations

import os
import socket

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
POSTGRES = ("127.0.0.1", int(os.environ.get("MLOPS_TEST_PG_PORT", "5432")))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which is not allowed (every test must run): {reason}"


@pytest.fixture(scope="session")
def postgres_available() -> tuple[str, int]:
    """Fails (never skips) when the local PostgreSQL server does not answer."""
    try:
        with socket.create_connection(POSTGRES, timeout=3):
            pass
    except OSError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable on {POSTGRES[0]}:{POSTGRES[1]} ({exc}); start it with "
            "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`"
        )
    return POSTGRES


_RUNS: dict[str, object] = {}


@pytest.fixture(scope="session")
def stack_run():  # type: ignore[no-untyped-def]
    """`stack_run("dev")`: the whole program run under mocks with Pulumi.dev.yaml, once per session."""
    from harness.run import run_program

    def get(stack: str):  # type: ignore[no-untyped-def]
        if stack not in _RUNS:
            _RUNS[stack] = run_program(stack)
        return _RUNS[stack]

    return get
