"""The MLflow tag names of the platform, in one place: the training runner and the DAGs write them, the platform
API reads them (a run's Airflow DAG run id, the quality gate's decision).
"""

from __future__ import annotations

# Tags of the MLflow run (the Airflow side links back through the run id the task returns).
TAG_MODEL = "mlops.model"
TAG_DAG_ID = "mlops.airflow.dag_id"
TAG_DAG_RUN_ID = "mlops.airflow.run_id"
TAG_ENTRYPOINT = "mlops.training.entrypoint"
TAG_SOURCE = "mlops.training.source"
TAG_GATE_METRIC = "mlops.gate.metric"
TAG_FAILURE = "mlops.training.failure"
TAG_CHAMPION = "mlops.training.champion"  # the champion's model URI handed to the code
TAG_GIT_COMMIT = "mlflow.source.git.commit"  # MLflow's own tag: the UI shows it

# Tags written on training runs by the quality gate.
GATE_TAG = "mlops.quality_gate"
GATE_REASON_TAG = "mlops.quality_gate_reason"

# Model-version tag written on promotion: the version that held the alias before this one.
# `rollback_<model>` with target "previous" follows it.
PREVIOUS_TAG_PREFIX = "mlops.previous_version."


def previous_tag(alias: str) -> str:
    return f"{PREVIOUS_TAG_PREFIX}{alias}"


# Registered-model tags the serving pods follow on every watcher pass (every replica within one poll period):
# the blue-green active alias, and the model's routing as data (`serving_rules.RoutingRecord` as JSON), which
# overrides the stack's routing until the tag is deleted.
ACTIVE_TAG = "mlops.serving.active"
ROUTING_TAG = "mlops.serving.routing"
