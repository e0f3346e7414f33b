"""Settings group `mlflow.*`: the MLflow tracking server."""

from __future__ import annotations

from dataclasses import dataclass

from stacks.settings.engine import by_env, check_image_tag, check_quantity, setting


@dataclass(frozen=True)
class MlflowSettings:
    chart_version: str = setting("mlflow.chartVersion", "community-charts mlflow chart version", default="1.11.5")
    image_tag: str | None = setting(
        "mlflow.imageTag", "MLflow image tag; unset = the chart's appVersion", check=check_image_tag
    )
    basic_auth: bool = setting(
        "mlflow.basicAuth",
        "MLflow basic auth with a generated admin password and an ordinary user for the DAGs and serving (every "
        "environment: the tracking server holds the registry that serving loads models from)",
        default=True,
    )
    job_execution: bool = setting(
        "mlflow.jobExecution", "MLflow background job execution (~2 GB more memory)", default=False
    )
    replicas: int = setting("mlflow.replicas", "MLflow server replicas", default_fn=by_env(1, 2), minimum=1, maximum=20)
    cpu: str = setting("mlflow.cpu", "MLflow CPU request", default="250m", check=check_quantity)
    memory: str = setting(
        "mlflow.memory", "MLflow memory request and limit", default_fn=by_env("1Gi", "2Gi"), check=check_quantity
    )
