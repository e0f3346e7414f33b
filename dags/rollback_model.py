"""Manual rollback: point an alias back at a chosen version ("previous" or a number) and make serving
use it.

resolve_target -> move_alias -> reload_serving -> verify_serving

`resolve_target` refuses (the run fails, nothing changes) when the target does not exist, is not READY
or already holds the alias. "previous" follows the version recorded when the current holder was
promoted (tag `mlops.previous_version.<alias>`), else the newest older READY version.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import Param, dag, task
from mlops_tasks.dag_tasks import TRIGGERED, default_args, model_name_param, reload_and_verify, verify_timeout_param
from mlops_tasks.settings import DEFAULT_ALIAS, PREVIOUS_VERSION_XCOM_KEY
from mlops_tasks.steps import announce_manual_rollback

from services.common.serving_rules import ALIAS_PATTERN

DEFAULT_ARGS = default_args(retries=2, retry_delay=timedelta(seconds=20), execution_timeout=timedelta(minutes=15))


@dag(
    dag_id="rollback_model",
    description="Manual rollback of a model alias to a chosen READY version; reload serving and verify.",
    **TRIGGERED,
    default_args=DEFAULT_ARGS,
    params={
        "model_name": model_name_param(),
        "alias": Param(DEFAULT_ALIAS, type="string", pattern=ALIAS_PATTERN),
        "target_version": Param(
            "previous",
            type="string",
            pattern="^(previous|[1-9][0-9]*)$",
            description="Version number to restore, or 'previous'.",
        ),
        "verify_timeout_seconds": verify_timeout_param(),
    },
    tags=["mlops", "rollback"],
    doc_md=__doc__,
)
def rollback_model() -> None:
    @task(retries=0, multiple_outputs=False)
    def resolve_target(**context: Any) -> dict[str, str | None]:
        from mlops_tasks import steps

        return steps.resolve_rollback_target(context["params"])

    @task(multiple_outputs=False)
    def move_alias(target: dict[str, str | None], **context: Any) -> dict[str, str | None]:
        from mlops_tasks import steps

        ti = context["ti"]
        return steps.move_alias(
            str(target["model"]),
            str(target["alias"]),
            str(target["target_version"]),
            remember=lambda record: ti.xcom_push(key=PREVIOUS_VERSION_XCOM_KEY, value=record),
            record_previous=False,
        )

    # XComArgs stand for the tasks' return values at run time (typed Any: mypy sees XComArg here).
    target: Any = resolve_target()
    move: Any = move_alias(target)
    reload_and_verify(move, announce_manual_rollback)


rollback_model()
