"""Train an iris classifier, gate it, register it, promote it under an alias and make serving use it.

train -> evaluate -> quality_gate -> register -> wait_until_ready -> promote -> reload_serving -> verify_serving

- `quality_gate` short-circuits: a rejected candidate skips everything after it (no alias moves); the
  reason is in the task log, in the training run's `mlops.quality_gate_reason` tag and in a Slack alert.
- `promote` remembers the alias's previous holder under the XCom key `previous_version` before moving it.
- `rollback` runs when `promote`, `reload_serving` or `verify_serving` failed: it restores the previous
  version, reloads serving, verifies it and alerts. `fail_run` then marks the run failed.
- Every task failure is alerted (`on_failure_callback`).

The DAG file imports only the Task SDK and light helpers; MLflow, scikit-learn and httpx are imported
inside the tasks.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import Param, PokeReturnValue, TriggerRule, dag, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from mlops_tasks.dag_tasks import TRIGGERED, default_args, model_name_param, reload_and_verify, verify_timeout_param
from mlops_tasks.settings import DEFAULT_ALIAS, PREVIOUS_VERSION_XCOM_KEY
from mlops_tasks.steps import announce_promotion

from services.common.serving_rules import ALIAS_PATTERN

DEFAULT_ARGS = default_args(
    retries=2,
    retry_delay=timedelta(seconds=30),
    retry_exponential_backoff=True,
    execution_timeout=timedelta(minutes=30),
)

PARAMS = {
    "model_name": model_name_param(),
    "alias": Param(DEFAULT_ALIAS, type="string", pattern=ALIAS_PATTERN, description="Alias to promote."),
    "C": Param(
        1.0, type="number", exclusiveMinimum=0, description="Inverse regularisation of the logistic regression."
    ),
    "max_iter": Param(200, type="integer", minimum=1, description="Solver iterations."),
    "min_accuracy": Param(0.9, type="number", minimum=0, maximum=1, description="Gate: held-out accuracy at least."),
    "max_regression": Param(
        0.02,
        type="number",
        minimum=0,
        maximum=1,
        description="Gate: largest accuracy drop allowed against the current alias holder (same held-out rows).",
    ),
    "verify_timeout_seconds": verify_timeout_param(),
}


@dag(
    dag_id="train_register_promote",
    description="Train, gate, register, promote (alias), reload serving, verify; automatic rollback.",
    **TRIGGERED,
    dagrun_timeout=timedelta(hours=2),
    default_args=DEFAULT_ARGS,
    params=PARAMS,
    tags=["mlops", "training", "promotion"],
    doc_md=__doc__,
)
def train_register_promote() -> None:
    # multiple_outputs=False on tasks returning a dict: TaskFlow would otherwise also push one XCom per
    # key, and the move record's "previous_version" key would overwrite the fixed XCom key of that name.
    @task(multiple_outputs=False)
    def train(**context: Any) -> dict[str, Any]:
        from mlops_tasks import steps

        return steps.train(context["params"], str(context["run_id"]))

    @task(multiple_outputs=False)
    def evaluate(trained: dict[str, Any]) -> dict[str, Any]:
        from mlops_tasks import steps

        return steps.evaluate(trained)

    @task.short_circuit
    def quality_gate(trained: dict[str, Any], evaluation: dict[str, Any], **context: Any) -> bool:
        from mlops_tasks import steps

        decision = steps.quality_gate(trained, evaluation, context["params"])
        context["ti"].xcom_push(key="gate", value=decision.as_dict())
        return decision.passed

    @task
    def register(trained: dict[str, Any]) -> str:
        from mlops_tasks import steps

        return steps.register(trained)

    @task.sensor(mode="reschedule", poke_interval=10, timeout=timedelta(minutes=10).total_seconds())
    def wait_until_ready(trained: dict[str, Any], version: str) -> PokeReturnValue:
        from mlops_tasks import steps

        return PokeReturnValue(is_done=steps.registration_done(str(trained["model"]), version), xcom_value=version)

    @task(multiple_outputs=False)
    def promote(trained: dict[str, Any], version: str, **context: Any) -> dict[str, str | None]:
        from mlops_tasks import steps

        ti = context["ti"]
        return steps.move_alias(
            str(trained["model"]),
            str(trained["alias"]),
            version,
            remember=lambda record: ti.xcom_push(key=PREVIOUS_VERSION_XCOM_KEY, value=record),
        )

    @task(trigger_rule=TriggerRule.ONE_FAILED, retries=3, retry_delay=timedelta(seconds=15))
    def rollback(**context: Any) -> str:
        from mlops_tasks import steps

        record = context["ti"].xcom_pull(task_ids="promote", key=PREVIOUS_VERSION_XCOM_KEY)
        if not record:
            raise AirflowSkipException("the alias was never moved: nothing to roll back")
        return steps.rollback(record, float(context["params"]["verify_timeout_seconds"]))

    # The watcher: without it the run would end "success" whenever `rollback` (the only leaf) succeeds.
    # Its own failure is not alerted: the failing task already was.
    @task(trigger_rule=TriggerRule.ONE_FAILED, retries=0, on_failure_callback=None)
    def fail_run() -> None:
        raise AirflowFailException("a task of this run failed (see the alerts and the failed tasks' logs)")

    # XComArgs stand for the tasks' return values at run time (typed Any: mypy sees XComArg here).
    trained: Any = train()
    evaluation: Any = evaluate(trained)
    gate: Any = quality_gate(trained, evaluation)
    version: Any = register(trained)
    gate >> version
    ready: Any = wait_until_ready(trained, version)
    move: Any = promote(trained, ready)
    reloaded, verified = reload_and_verify(move, announce_promotion)
    undo = rollback()
    [move, reloaded, verified] >> undo
    watcher = fail_run()
    [trained, evaluation, gate, version, ready, move, reloaded, verified, undo] >> watcher


train_register_promote()
