"""The model-serving service: MLflow-alias variants, routing, hot swap, metrics.

`SERVING_COMMAND` is THE start command: the Dockerfile's CMD, `devstack.serving` (tests, benchmark,
demo) and the Kubernetes component all run exactly this; host, port and workers come from the
environment (`services.common.contract`).
"""

SERVING_COMMAND: tuple[str, ...] = ("python", "-m", "services.serving")
