"""The body of every DAG task, as plain functions (Airflow only provides params, XCom and retries)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from mlops_tasks import settings
from mlops_tasks.errors import PermanentError
from mlops_tasks.gate import GateDecision, decide
from services.common.alerts import Alert, Severity, send_alert

log = logging.getLogger(__name__)

GATE_REJECTED_EVENT = "model.rejected"
ROLLED_BACK_EVENT = "model.rolled_back"
MANUAL_ROLLBACK_EVENT = "model.manual_rollback"
PROMOTED_EVENT = "model.promoted"


# --- train_register_promote -------------------------------------------------------------------


def train(params: Mapping[str, Any], airflow_run_id: str) -> dict[str, Any]:
    from mlops_tasks.training import Hyperparameters, train_and_log

    endpoints = settings.Endpoints.from_env()
    model = settings.model_name(params)
    alias = settings.alias(params)
    hyper = Hyperparameters.from_params(dict(params))
    logged = train_and_log(
        tracking_uri=endpoints.tracking_uri,
        experiment=f"{model}-training",
        hyper=hyper,
        tags={"mlops.airflow_run_id": airflow_run_id, "mlops.model_name": model, "mlops.alias": alias},
    )
    return {"model": model, "alias": alias, **logged}


def evaluate(trained: Mapping[str, Any]) -> dict[str, Any]:
    """Score the candidate and the current alias holder on the same held-out split."""
    import mlflow

    from mlops_tasks import registry
    from mlops_tasks.training import score

    endpoints = settings.Endpoints.from_env()
    mlflow.set_tracking_uri(endpoints.tracking_uri)
    candidate = score(str(trained["model_uri"]))
    client = registry.client(endpoints.tracking_uri)
    for key, value in candidate.items():
        client.log_metric(str(trained["run_id"]), key, value)
    holder = registry.alias_holder(client, str(trained["model"]), str(trained["alias"]))
    baseline = score(f"models:/{trained['model']}/{holder}") if holder is not None else None
    log.info(
        "candidate %s; current %s@%s: version %s %s", candidate, trained["model"], trained["alias"], holder, baseline
    )
    return {"candidate": candidate, "baseline_version": holder, "baseline": baseline}


def quality_gate(trained: Mapping[str, Any], evaluation: Mapping[str, Any], params: Mapping[str, Any]) -> GateDecision:
    """Decide, record the decision on the training run, and alert when the candidate is rejected."""
    from mlops_tasks import registry
    from mlops_tasks.training import METRIC

    baseline = evaluation.get("baseline")
    decision = decide(
        metric=METRIC,
        candidate=float(evaluation["candidate"][METRIC]),
        threshold=float(params["min_accuracy"]),
        max_regression=float(params["max_regression"]),
        baseline=float(baseline[METRIC]) if baseline else None,
        baseline_version=evaluation.get("baseline_version"),
    )
    client = registry.client(settings.Endpoints.from_env().tracking_uri)
    run_id = str(trained["run_id"])
    client.set_tag(run_id, settings.GATE_TAG, "passed" if decision.passed else "rejected")
    client.set_tag(run_id, settings.GATE_REASON_TAG, decision.reason)
    if decision.passed:
        log.info("quality gate PASSED: %s", decision.reason)
    else:
        log.warning("quality gate REJECTED the candidate, no alias changes: %s", decision.reason)
        send_alert(
            Alert(
                event=GATE_REJECTED_EVENT,
                summary=f"candidate of {trained['model']} rejected, {trained['alias']} unchanged: {decision.reason}",
                severity=Severity.WARNING,
                fields={"model": str(trained["model"]), "alias": str(trained["alias"]), "run": run_id},
            )
        )
    return decision


def register(trained: Mapping[str, Any]) -> str:
    import mlflow

    from mlops_tasks import registry

    mlflow.set_tracking_uri(settings.Endpoints.from_env().tracking_uri)
    return registry.register(
        str(trained["model"]), str(trained["model_uri"]), tags={"mlops.candidate_for": str(trained["alias"])}
    )


def registration_done(model: str, version: str) -> bool:
    """True when READY, False while pending; a failed registration is permanent."""
    from mlops_tasks import registry

    client = registry.client(settings.Endpoints.from_env().tracking_uri)
    status = registry.version_status(client, model, version)
    log.info("%s version %s: %s", model, version, status)
    if status is None:
        raise PermanentError(f"version {version} of {model} does not exist")
    if status == registry.FAILED_REGISTRATION:
        raise PermanentError(f"registration of {model} version {version} failed (FAILED_REGISTRATION)")
    return status == registry.READY


def move_alias(
    model: str,
    alias: str,
    version: str,
    remember: Callable[[dict[str, str | None]], None],
    record_previous: bool = True,
) -> dict[str, str | None]:
    """Move `alias` to `version`. `remember` receives the move record BEFORE the alias moves, so a
    rollback knows what to restore even if this task dies half way. With `record_previous` the new
    version is tagged with the version it replaces (what `rollback_model` calls "previous"); a manual
    rollback does not re-tag, so rolling back twice walks further back instead of flip-flopping."""
    from mlops_tasks import registry

    client = registry.client(settings.Endpoints.from_env().tracking_uri)
    previous = registry.alias_holder(client, model, alias)
    if previous == version:
        raise PermanentError(f"version {version} already holds {model}@{alias}")
    move = registry.AliasMove(model=model, alias=alias, previous_version=previous, new_version=version)
    remember(move.as_dict())
    if record_previous:
        registry.record_previous(client, move)
    registry.set_alias(client, model, alias, version)
    return move.as_dict()


def reload_serving(alias: str, expected_version: str | None) -> dict[str, Any]:
    """Ask serving to load what `alias` points at; it must answer that it now serves `expected_version`
    (None: do not check, e.g. after the alias was deleted)."""
    from mlops_tasks import serving

    answer = serving.reload(settings.Endpoints.from_env(), alias)
    served = answer.get("version")
    if expected_version is not None and str(served) != expected_version:
        raise PermanentError(
            f"serving reloaded {alias} but serves version {served}, not {expected_version} "
            f"(was the alias moved meanwhile?): {answer}"
        )
    return answer


def verify_serving(alias: str, version: str, timeout_s: float) -> dict[str, Any]:
    from mlops_tasks import serving
    from mlops_tasks.training import sample_rows

    return serving.wait_until_served(settings.Endpoints.from_env(), alias, version, sample_rows(), timeout_s=timeout_s)


def rollback(record: Mapping[str, str | None], timeout_s: float) -> str:
    """Restore the version that held the alias before a failed promotion, reload and verify serving,
    and alert. Never touches an alias someone else moved in between."""
    from mlops_tasks import registry

    move = registry.AliasMove.from_dict(dict(record))
    client = registry.client(settings.Endpoints.from_env().tracking_uri)
    fields = {
        "model": move.model,
        "alias": move.alias,
        "failed_version": move.new_version,
        "restored_version": move.previous_version or "(none)",
    }
    try:
        done = registry.restore(client, move)
    except registry.RegistryError as exc:
        send_alert(
            Alert(ROLLED_BACK_EVENT, f"rollback of {move.model}@{move.alias} NOT done: {exc}", Severity.ERROR, fields)
        )
        raise PermanentError(str(exc)) from exc
    log.info("%s", done)
    if move.previous_version is None:
        summary = (
            f"promotion of {move.model} version {move.new_version} to {move.alias} failed; the alias did not "
            f"exist before and was deleted ({done}); there is no earlier version for serving to go back to"
        )
    else:
        reload_serving(move.alias, move.previous_version)
        verify_serving(move.alias, move.previous_version, timeout_s)
        summary = (
            f"promotion of {move.model} version {move.new_version} to {move.alias} failed; rolled back to "
            f"version {move.previous_version}, which serving answers with again"
        )
    send_alert(Alert(ROLLED_BACK_EVENT, summary, Severity.ERROR, fields))
    return summary


def announce_promotion(move: Mapping[str, str | None], served: Mapping[str, Any]) -> None:
    """`announce` of the promotion's `verify_serving` (see `mlops_tasks.dag_tasks`)."""
    model, alias = str(move["model"]), str(move["alias"])
    send_alert(
        Alert(
            PROMOTED_EVENT,
            f"{model} version {move['new_version']} is now {alias} and served "
            f"(previous: {move['previous_version'] or 'none'})",
            Severity.INFO,
            {"model": model, "alias": alias, "version": str(move["new_version"])},
        )
    )


# --- rollback_model -----------------------------------------------------------------------------


def resolve_rollback_target(params: Mapping[str, Any]) -> dict[str, str | None]:
    from mlops_tasks import registry

    model = settings.model_name(params)
    alias = settings.alias(params)
    client = registry.client(settings.Endpoints.from_env().tracking_uri)
    try:
        target, current = registry.resolve_rollback_target(client, model, alias, str(params["target_version"]))
    except registry.RegistryError as exc:
        raise PermanentError(f"rollback refused: {exc}") from exc
    log.info("rollback of %s@%s: version %s -> version %s", model, alias, current, target)
    return {"model": model, "alias": alias, "current_version": current, "target_version": target}


def announce_manual_rollback(move: Mapping[str, str | None], served: Mapping[str, Any]) -> None:
    """`announce` of the manual rollback's `verify_serving` (see `mlops_tasks.dag_tasks`)."""
    send_alert(
        Alert(
            MANUAL_ROLLBACK_EVENT,
            f"{move['model']}@{move['alias']} manually rolled back from version {move['previous_version']} "
            f"to version {move['new_version']}, which serving answers with",
            Severity.WARNING,
            {
                "model": str(move["model"]),
                "alias": str(move["alias"]),
                "version": str(move["new_version"]),
                "replaced_version": str(move["previous_version"]),
            },
        )
    )
