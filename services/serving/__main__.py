"""`python -m services.serving`: THE start command (Dockerfile CMD, tests, benchmark, demo).

Runs uvicorn on `MLOPS_SERVING_HOST`:`MLOPS_SERVING_PORT` with `MLOPS_SERVING_WORKERS` worker processes
(uvloop + httptools, no uvicorn access log: the service writes its own JSON access lines; no proxy-header
parsing: nothing reads the client's address). With several workers, Prometheus multiprocess mode is switched
on so that /metrics covers all of them. Settings are checked before uvicorn starts, so a misconfiguration exits
at once with a message naming the variable.
"""

from __future__ import annotations

import os
import sys
import tempfile

import uvicorn

from services.common import contract
from services.serving.http import HttpProtocol
from services.serving.settings import Settings, SettingsError


def main() -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"serving: {exc}", file=sys.stderr)
        return 2
    if settings.workers > 1:
        # One metrics directory per start, shared by the workers (prometheus_client multiprocess mode).
        os.environ[contract.PROMETHEUS_MULTIPROC_DIR.name] = tempfile.mkdtemp(prefix="serving-metrics-")
    uvicorn.run(
        "services.serving.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http=HttpProtocol,  # uvicorn's httptools protocol, one write per response (services/serving/http.py)
        access_log=False,
        proxy_headers=False,  # nothing reads the client's address: no X-Forwarded-* parsing per request
        log_config=None,
        timeout_graceful_shutdown=10,
        server_header=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
