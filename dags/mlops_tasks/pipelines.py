"""The DAG factory: one training DAG and one manual-rollback DAG per model of the catalog.

`train_<model>` (schedule: the catalog's `training.schedule`, or triggered only):

    train -> evaluate -> quality_gate -> register -> wait_until_ready -> promote -> reload_serving -> verify_serving

- `train` runs the model's entrypoint through the runner (`mlops_tasks.runner`: a subprocess under the training
  contract, its output in the task log), handing it the alias's current holder as the champion to score. On
  Kubernetes the task runs in a pod shaped by the model's training profile (`services.common.training_pod`:
  image, resources, GPUs, placement) through the executor's `pod_override`. A broken contract (crash, no model,
  no gate metric...) fails the task at once, without retries, with a message naming the problem.
- `evaluate` collects what the gate compares; `quality_gate` decides with the catalog's gate (threshold in the
  gate's direction, and `minImprovement` over the champion scored on the same held-out data) and short-circuits:
  a rejected candidate skips everything after it (no alias moves); the reason is in the task log, in the training
  run's `mlops.quality_gate_reason` tag and in a Slack alert.
- `promote` remembers the alias's previous holder under the XCom key `previous_version` before moving it.
- `rollback` runs when `promote`, `reload_serving` or `verify_serving` failed: it restores the previous version,
  reloads the model's serving, verifies it and alerts. `fail_run` then marks the run failed.
- Every task failure is alerted (`on_failure_callback`).

`rollback_<model>` (triggered): resolve_target -> move_alias -> reload_serving -> verify_serving. It refuses (the
run fails, nothing changes) when the target does not exist, is not READY or already holds the alias. "previous"
follows the version recorded when the current holder was promoted, else the newest older READY version.

Each DAG works on its own model only: its registered model, its aliases and its serving URLs from its catalog
entry. Only the Task SDK and light helpers are imported here; MLflow, httpx and the model's code run inside tasks.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, Param, PokeReturnValue, TriggerRule, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from mlops_tasks.dag_tasks import (
    RUN_POLICY,
    alias_param,
    default_args,
    reload_and_verify,
    verify_timeout_param,
)
from mlops_tasks.steps import announce_manual_rollback, announce_promotion
from services.common import training_pod
from services.common.catalog import ParamValue
from services.common.catalog_file import CatalogModel

TRAINING_MARGIN = timedelta(minutes=15)  # checkout, MLflow calls and checks around the entrypoint's own timeout
_JSON_TYPES: dict[type, str] = {bool: "boolean", int: "integer", float: "number", str: "string"}
# XCom key under which `promote` (and the manual rollback's `move_alias`) remembers the version that
# held the alias before it was moved: {"model", "alias", "previous_version", "new_version"}.
PREVIOUS_VERSION_XCOM_KEY = "previous_version"


def param_of(name: str, default: ParamValue) -> Param:
    """A model param as a DAG param of the same JSON type as its catalog default (null: any scalar)."""
    description = f"Training param {name} (catalog default: {default!r}); the entrypoint reads it from its params."
    if default is None:
        return Param(None, type=["null", "string", "number", "boolean"], description=description)
    return Param(default, type=_JSON_TYPES[type(default)], description=description)


def training_params(entry: CatalogModel) -> dict[str, Param]:
    params = {name: param_of(name, default) for name, default in entry.spec.training.params.items()}
    params["alias"] = alias_param(
        entry,
        f"Alias a candidate that passes the gate is registered under (default: the catalog's training.alias); it is "
        f"gated against the champion, the holder of {entry.promote_alias}, whatever the alias.",
        entry.training_alias,
    )
    params["dataset"] = Param(
        None,
        type=["null", "string"],
        description=f"Dataset URI of this run; empty = the catalog's ({entry.spec.training.dataset or 'none'}).",
    )
    params["verify_timeout_seconds"] = verify_timeout_param()
    return params


def executor_config(entry: CatalogModel) -> dict[str, Any]:
    """`executor_config` of the training task: the profile's pod as `pod_override` where the Kubernetes client is
    installed (the cluster's Airflow image); nothing locally, where tasks run in-process."""
    pod = training_pod.as_v1_pod(
        training_pod.training_pod(entry.name, dict(entry.document), dict(entry.training_profile))
    )
    return {} if pod is None else {"pod_override": pod}


def _doc(entry: CatalogModel) -> str:
    spec = entry.spec
    gate = spec.gate
    entrypoint = (
        spec.training.entrypoint if isinstance(spec.training.entrypoint, str) else " ".join(spec.training.entrypoint)
    )
    lines = [
        f"# {entry.name}",
        "",
        f"- entrypoint `{entrypoint}` in `{spec.training.source.subdir or '.'}` "
        f"(repo {spec.training.source.repo or 'of the platform'}, ref {spec.training.source.ref or 'default'})",
        f"- profile `{spec.training.profile}`, timeout {spec.training.timeout_minutes} min",
        f"- params {dict(spec.training.params) or 'none'}",
        f"- gate `{gate.metric}` ({gate.direction}), threshold {gate.threshold}, minImprovement {gate.min_improvement}",
        f"- serving {entry.serving_url} (aliases {', '.join(entry.aliases)})",
        "",
        __doc__ or "",
    ]
    return "\n".join(lines)


def training_dag(entry: CatalogModel) -> DAG:
    """`train_<model>`: train, evaluate, gate, register, wait until READY, promote, reload and verify serving."""
    spec = entry.spec
    training_timeout = timedelta(minutes=spec.training.timeout_minutes)
    with DAG(
        dag_id=entry.dag_id,
        description=f"Train {entry.name}, gate, register, promote, reload its serving, verify; automatic rollback.",
        schedule=spec.training.schedule,
        **RUN_POLICY,
        dagrun_timeout=training_timeout + timedelta(hours=2),
        default_args=default_args(
            retries=2,
            retry_delay=timedelta(seconds=30),
            retry_exponential_backoff=True,
            execution_timeout=timedelta(minutes=30),
        ),
        params=training_params(entry),
        tags=["mlops", "training", entry.names["slug"]],
        doc_md=_doc(entry),
    ) as dag:
        upstream = _train_to_ready(entry, training_timeout)
        _promote_and_guard(entry, upstream)
    return dag


def _train_to_ready(entry: CatalogModel, training_timeout: timedelta) -> list[Any]:
    """In the DAG being defined: train, evaluate, gate, register, wait until READY; their XComArgs in that order."""

    # multiple_outputs=False on tasks returning a dict: TaskFlow would otherwise also push one XCom per
    # key, and the move record's "previous_version" key would overwrite the fixed XCom key of that name.
    @task(
        multiple_outputs=False,
        execution_timeout=training_timeout + TRAINING_MARGIN,
        executor_config=executor_config(entry),
    )
    def train(**context: Any) -> dict[str, Any]:
        from mlops_tasks import steps

        conf = getattr(context.get("dag_run"), "conf", None) or {}
        return steps.train(entry, context["params"], conf, str(context["run_id"]))

    @task(multiple_outputs=False)
    def evaluate(trained: dict[str, Any]) -> dict[str, Any]:
        from mlops_tasks import steps

        return steps.evaluate(entry, trained)

    @task.short_circuit
    def quality_gate(trained: dict[str, Any], evaluation: dict[str, Any], **context: Any) -> bool:
        from mlops_tasks import steps

        decision = steps.quality_gate(entry, trained, evaluation)
        context["ti"].xcom_push(key="gate", value=decision.as_dict())
        return decision.passed

    @task
    def register(trained: dict[str, Any]) -> str:
        from mlops_tasks import steps

        return steps.register(entry, trained)

    @task.sensor(mode="reschedule", poke_interval=10, timeout=timedelta(minutes=10).total_seconds())
    def wait_until_ready(version: str) -> PokeReturnValue:
        from mlops_tasks import steps

        return PokeReturnValue(is_done=steps.registration_done(entry, version), xcom_value=version)

    # XComArgs stand for the tasks' return values at run time (typed Any: mypy sees XComArg here).
    trained: Any = train()
    evaluation: Any = evaluate(trained)
    gate: Any = quality_gate(trained, evaluation)
    version: Any = register(trained)
    gate >> version
    ready: Any = wait_until_ready(version)
    return [trained, evaluation, gate, version, ready]


def _promote_and_guard(entry: CatalogModel, upstream: list[Any]) -> None:
    """In the DAG being defined: promote, reload and verify serving, the automatic rollback and the watcher."""

    # multiple_outputs=False: see `_train_to_ready` (the move record has a "previous_version" key).
    @task(multiple_outputs=False)
    def promote(trained: dict[str, Any], version: str, **context: Any) -> dict[str, str | None]:
        from mlops_tasks import steps

        ti = context["ti"]
        return steps.move_alias(
            entry,
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
        return steps.rollback(entry, record, float(context["params"]["verify_timeout_seconds"]))

    # The watcher: without it the run would end "success" whenever `rollback` (the only leaf) succeeds.
    # Its own failure is not alerted: the failing task already was.
    @task(trigger_rule=TriggerRule.ONE_FAILED, retries=0, on_failure_callback=None)
    def fail_run() -> None:
        raise AirflowFailException("a task of this run failed (see the alerts and the failed tasks' logs)")

    trained, evaluation, gate, version, ready = upstream
    move: Any = promote(trained, ready)
    reloaded, verified = reload_and_verify(entry, move, announce_promotion)
    undo = rollback()
    [move, reloaded, verified] >> undo
    watcher = fail_run()
    [trained, evaluation, gate, version, ready, move, reloaded, verified, undo] >> watcher


def rollback_dag(entry: CatalogModel) -> DAG:
    """`rollback_<model>`: point an alias of the model back at a chosen READY version and make its serving use it."""
    with DAG(
        dag_id=entry.rollback_dag_id,
        description=f"Manual rollback of an alias of {entry.name} to a chosen READY version; reload serving, verify.",
        schedule=None,
        **RUN_POLICY,
        default_args=default_args(
            retries=2, retry_delay=timedelta(seconds=20), execution_timeout=timedelta(minutes=15)
        ),
        params={
            "alias": alias_param(entry, "Alias to move back."),
            "target_version": Param(
                "previous",
                type="string",
                pattern="^(previous|[1-9][0-9]*)$",
                description="Version number to restore, or 'previous'.",
            ),
            "verify_timeout_seconds": verify_timeout_param(),
        },
        tags=["mlops", "rollback", entry.names["slug"]],
        doc_md=_doc(entry),
    ) as dag:

        @task(retries=0, multiple_outputs=False)
        def resolve_target(**context: Any) -> dict[str, str | None]:
            from mlops_tasks import steps

            return steps.resolve_rollback_target(entry, context["params"])

        @task(multiple_outputs=False)
        def move_alias(target: dict[str, str | None], **context: Any) -> dict[str, str | None]:
            from mlops_tasks import steps

            ti = context["ti"]
            return steps.move_alias(
                entry,
                str(target["alias"]),
                str(target["target_version"]),
                remember=lambda record: ti.xcom_push(key=PREVIOUS_VERSION_XCOM_KEY, value=record),
                record_previous=False,
            )

        target: Any = resolve_target()
        move: Any = move_alias(target)
        reload_and_verify(entry, move, announce_manual_rollback)
    return dag


def dags_for(entries: dict[str, CatalogModel]) -> dict[str, DAG]:
    """Every DAG of the catalog, by DAG id: `train_<model>` and `rollback_<model>` per model."""
    out: dict[str, DAG] = {}
    for entry in entries.values():
        for build in (training_dag, rollback_dag):
            built = build(entry)
            out[built.dag_id] = built
    return out
