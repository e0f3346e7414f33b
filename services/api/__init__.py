"""The platform API: trainings and rollbacks on request, run by Airflow, tracked in PostgreSQL, pushed as SSE.

`API_COMMAND` is THE start command: the Dockerfile's CMD, the tests and the Kubernetes component run exactly
this; host and port come from the environment (`services.common.contract`, the `MLOPS_API_*` group).
"""

API_COMMAND: tuple[str, ...] = ("python", "-m", "services.api")
