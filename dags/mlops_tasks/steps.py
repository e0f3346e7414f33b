"""The body of every DAG task, as plain functions (Airflow only provides params, XCom and retries).

Every function works on ONE model of the catalog (`entry`, a `services.common.catalog_file.CatalogModel`): its
registered model, its aliases, its own serving process (`Endpoints.for_model`). Two models' pipelines never touch
each other's aliases or serving.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mlops_tasks.endpoints import Endpoints
from mlops_tasks.errors import PermanentError
from mlops_tasks.gate import GateDecision, GateError, decide, missing_champion_metric
from services.common.alerts import Alert, Severity, send_alert
from services.common.catalog_file import RESERVED_PARAMS, CatalogModel, merge_params
from services.common.registry_tags import GATE_REASON_TAG, GATE_TAG
from services.common.training_contract import champion_metric

log = logging.getLogger(__name__)

GATE_REJECTED_EVENT = "model.rejected"
ROLLED_BACK_EVENT = "model.rolled_back"
MANUAL_ROLLBACK_EVENT = "model.manual_rollback"
PROMOTED_EVENT = "model.promoted"
VERIFY_ROWS = 3


# --- train_<model> ------------------------------------------------------------------------------


def training_params(entry: CatalogModel, params: Mapping[str, Any], conf: Mapping[str, Any]) -> dict[str, Any]:
    """The model's params of this run (the catalog's defaults overridden by the run's conf), checked with the
    runner's rules; PermanentError naming the param (unknown, or of another type than its default)."""
    defaults = entry.spec.training.params
    overrides = {name: params[name] for name in defaults if name in params}
    unknown = {name: value for name, value in conf.items() if name not in defaults and name not in RESERVED_PARAMS}
    try:
        return merge_params(defaults, {**overrides, **unknown})
    except ValueError as exc:
        raise PermanentError(f"{entry.dag_id}: {exc}") from None


def train(
    entry: CatalogModel,
    params: Mapping[str, Any],
    conf: Mapping[str, Any],
    airflow_run_id: str,
    *,
    platform_root: Path | None = None,
) -> dict[str, Any]:
    """Train the model through the runner (its entrypoint as a subprocess under the training contract), handing it
    the current holder of the alias as the champion to score. A broken contract is permanent (no retry)."""
    from mlops_tasks import registry, runner, sources

    endpoints = Endpoints.for_model(entry)
    alias = _alias(entry, params)
    run_params = training_params(entry, params, conf)
    dataset = params.get("dataset") or None
    # the champion is the holder of the first serving alias, whatever alias the candidate is registered under: a
    # challenger is gated against what serves, not against the previous challenger
    champion = registry.alias_holder(registry.client(endpoints.tracking_uri), entry.name, entry.promote_alias)
    champion_uri = f"models:/{entry.name}/{champion}" if champion is not None else None
    log.info("training %s for alias %s (champion: %s) with params %s", entry.name, alias, champion_uri, run_params)
    try:
        with sources.checkout(entry.spec.training.source, platform_root or runner.PLATFORM_ROOT) as workdir:
            outcome = runner.train(
                entry.name,
                entry.spec,
                run_params,
                endpoints.tracking_uri,
                dag_run_id=airflow_run_id,
                workdir=workdir,
                dataset=dataset,
                champion_model_uri=champion_uri,
            )
    except runner.TrainingContractError as exc:
        raise PermanentError(str(exc)) from exc
    return {"model": entry.name, "alias": alias, "champion_version": champion, **outcome.as_dict()}


def evaluate(entry: CatalogModel, trained: Mapping[str, Any]) -> dict[str, Any]:
    """What the gate compares: the candidate's gate metric and the champion's, both scored by the training code on
    the same held-out data. PermanentError naming the champion metric when the gate needs it and it is missing."""
    gate = entry.spec.gate
    metrics = {str(k): float(v) for k, v in dict(trained["metrics"]).items()}
    champion_version = trained.get("champion_version")
    problem = missing_champion_metric(gate, metrics, champion_version)
    if problem:
        raise PermanentError(f"training run {trained['run_id']}: {problem}")
    evaluation = {
        "metric": gate.metric,
        "candidate": metrics[gate.metric],
        "champion_version": champion_version,
        "champion": metrics.get(champion_metric(gate.metric)),
    }
    log.info("evaluation of %s: %s", entry.name, evaluation)
    return evaluation


def quality_gate(entry: CatalogModel, trained: Mapping[str, Any], evaluation: Mapping[str, Any]) -> GateDecision:
    """Decide with the catalog's gate, record the decision on the training run, and alert when the candidate is
    rejected. A champion that changed since training makes the comparison stale: rejected."""
    from mlops_tasks import registry

    endpoints = Endpoints.for_model(entry)
    client = registry.client(endpoints.tracking_uri)
    champion_version = evaluation.get("champion_version")
    try:
        decision = decide(
            entry.spec.gate,
            float(evaluation["candidate"]),
            None if evaluation.get("champion") is None else float(evaluation["champion"]),
            champion_version,
        )
    except GateError as exc:
        raise PermanentError(str(exc)) from exc
    holder = registry.alias_holder(client, entry.name, entry.promote_alias)
    if decision.passed and holder != champion_version:
        decision = GateDecision(
            **{
                **decision.as_dict(),
                "passed": False,
                "reason": f"{entry.promote_alias} moved from version {champion_version} to {holder} during this run: "
                "the comparison is stale; run again",
            }
        )
    run_id = str(trained["run_id"])
    client.set_tag(run_id, GATE_TAG, "passed" if decision.passed else "rejected")
    client.set_tag(run_id, GATE_REASON_TAG, decision.reason)
    if decision.passed:
        log.info("quality gate PASSED: %s", decision.reason)
    else:
        log.warning("quality gate REJECTED the candidate, no alias changes: %s", decision.reason)
        send_alert(
            Alert(
                event=GATE_REJECTED_EVENT,
                summary=f"candidate of {entry.name} rejected, {trained['alias']} unchanged: {decision.reason}",
                severity=Severity.WARNING,
                fields={"model": entry.name, "alias": str(trained["alias"]), "run": run_id},
            )
        )
    return decision


def register(entry: CatalogModel, trained: Mapping[str, Any]) -> str:
    import mlflow

    from mlops_tasks import registry

    mlflow.set_tracking_uri(Endpoints.for_model(entry).tracking_uri)
    return registry.register(
        entry.name,
        str(trained["model_uri"]),
        tags={"mlops.candidate_for": str(trained["alias"]), "mlops.training_run": str(trained["run_id"])},
    )


def registration_done(entry: CatalogModel, version: str) -> bool:
    """True when READY, False while pending; a failed registration is permanent."""
    from mlops_tasks import registry

    client = registry.client(Endpoints.for_model(entry).tracking_uri)
    status = registry.version_status(client, entry.name, version)
    log.info("%s version %s: %s", entry.name, version, status)
    if status is None:
        raise PermanentError(f"version {version} of {entry.name} does not exist")
    if status == registry.FAILED_REGISTRATION:
        raise PermanentError(f"registration of {entry.name} version {version} failed (FAILED_REGISTRATION)")
    return status == registry.READY


def move_alias(
    entry: CatalogModel,
    alias: str,
    version: str,
    remember: Callable[[dict[str, str | None]], None],
    record_previous: bool = True,
) -> dict[str, str | None]:
    """Move `alias` to `version`. `remember` receives the move record BEFORE the alias moves, so a
    rollback knows what to restore even if this task dies half way. With `record_previous` the new
    version is tagged with the version it replaces (what the manual rollback calls "previous"); a manual
    rollback does not re-tag, so rolling back twice walks further back instead of flip-flopping."""
    from mlops_tasks import registry

    client = registry.client(Endpoints.for_model(entry).tracking_uri)
    previous = registry.alias_holder(client, entry.name, alias)
    if previous == version:
        raise PermanentError(f"version {version} already holds {entry.name}@{alias}")
    move = registry.AliasMove(model=entry.name, alias=alias, previous_version=previous, new_version=version)
    remember(move.as_dict())
    if record_previous:
        registry.record_previous(client, move)
    registry.set_alias(client, entry.name, alias, version)
    return move.as_dict()


def reload_serving(entry: CatalogModel, alias: str, expected_version: str | None) -> dict[str, Any]:
    """Ask the model's serving to load what `alias` points at; it must answer that it now serves
    `expected_version` (None: do not check, e.g. after the alias was deleted)."""
    from mlops_tasks import serving

    answer = serving.reload(Endpoints.for_model(entry), alias)
    served = answer.get("version")
    if expected_version is not None and str(served) != expected_version:
        raise PermanentError(
            f"serving of {entry.name} reloaded {alias} but serves version {served}, not {expected_version} "
            f"(was the alias moved meanwhile?): {answer}"
        )
    return answer


def verify_serving(entry: CatalogModel, alias: str, version: str, timeout_s: float) -> dict[str, Any]:
    """The model's serving answers from `alias` at `version`, for rows of that version's own input example."""
    from mlops_tasks import registry, serving

    endpoints = Endpoints.for_model(entry)
    rows = registry.example_rows(endpoints.tracking_uri, entry.name, version, VERIFY_ROWS)
    return serving.wait_until_served(endpoints, alias, version, rows, timeout_s=timeout_s)


def rollback(entry: CatalogModel, record: Mapping[str, str | None], timeout_s: float) -> str:
    """Restore the version that held the alias before a failed promotion, reload and verify serving,
    and alert. Never touches an alias someone else moved in between."""
    from mlops_tasks import registry

    move = registry.AliasMove.from_dict(dict(record))
    if move.model != entry.name:
        raise PermanentError(f"the move record is of {move.model}, not of {entry.name}: not touching it")
    client = registry.client(Endpoints.for_model(entry).tracking_uri)
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
        reload_serving(entry, move.alias, move.previous_version)
        verify_serving(entry, move.alias, move.previous_version, timeout_s)
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


# --- rollback_<model> ---------------------------------------------------------------------------


def resolve_rollback_target(entry: CatalogModel, params: Mapping[str, Any]) -> dict[str, str | None]:
    from mlops_tasks import registry

    alias = _alias(entry, params)
    client = registry.client(Endpoints.for_model(entry).tracking_uri)
    try:
        target, current = registry.resolve_rollback_target(client, entry.name, alias, str(params["target_version"]))
    except registry.RegistryError as exc:
        raise PermanentError(f"rollback refused: {exc}") from exc
    log.info("rollback of %s@%s: version %s -> version %s", entry.name, alias, current, target)
    return {"model": entry.name, "alias": alias, "current_version": current, "target_version": target}


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


def _alias(entry: CatalogModel, params: Mapping[str, Any]) -> str:
    """The run's `alias` param: one the model's serving loads; PermanentError naming the param otherwise."""
    value = params.get("alias")
    if not isinstance(value, str) or not value.strip():
        raise PermanentError(f"{entry.dag_id}: param 'alias' must be a non-empty string")
    value = value.strip()
    if value not in entry.aliases:
        raise PermanentError(
            f"{entry.dag_id}: param 'alias' is {value!r}; the model's serving loads only {', '.join(entry.aliases)}"
        )
    return value
