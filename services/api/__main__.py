"""`python -m services.api`: THE start command (Dockerfile CMD, tests, component).

Checks the settings first (a misconfiguration exits at once with a message naming the variable), then runs
uvicorn with one worker: the process is asynchronous, state lives in PostgreSQL, and replicas scale it out.
"""

from __future__ import annotations

import sys

import uvicorn

from services.api.settings import Settings, SettingsError


def main() -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"api: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(
        "services.api.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=1,
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=5,
        server_header=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
