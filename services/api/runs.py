"""Pipeline runs (trainings and rollbacks): start, cancel, bring up to date, and their public view.

- `start`: in ONE database transaction, insert the run of (caller, Idempotency-Key), trigger its DAG run in
  Airflow with the derived DAG-run id, record the `queued` event and commit. Airflow failing rolls everything
  back (503, the key is free again); a second request with the key waits for the first, then gets its run.
- `cancel`: mark the DAG run failed in Airflow (unless it already ended) and the run `cancelled`.
- `refresh`: what the reconciler does per unfinished run: read the DAG run from Airflow and (trainings) the
  facts from MLflow, write what changed and one event saying so.
Every change of a run and its event are written in the same transaction.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from services.api import idempotency, store
from services.api.airflow import AirflowClient, DagRun
from services.api.auth import Principal
from services.api.db import Pool
from services.api.errors import ApiError, DependencyUnavailable
from services.api.mlflow import MlflowClient, TrainingFacts
from services.api.states import TERMINAL, RunState, from_airflow, is_terminal, next_state

log = logging.getLogger("mlops.api.runs")

TRAINING, ROLLBACK = "training", "rollback"
KINDS = (TRAINING, ROLLBACK)
PATHS = {TRAINING: "/v1/trainings", ROLLBACK: "/v1/rollbacks"}


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


def view(row: Mapping[str, Any]) -> dict[str, Any]:
    """A run as the API shows it (and as every event carries it)."""
    request = row["request"] or {}
    out: dict[str, Any] = {
        "id": str(row["id"]),
        "kind": row["kind"],
        "model": row["model"],
        "state": row["state"],
        "airflow": {"dag_id": row["dag_id"], "dag_run_id": row["dag_run_id"], "state": row["airflow_state"]},
        "error": row["error"],
        "cancel_requested": bool(row["cancel_requested"]),
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
        "started_at": _iso(row["started_at"]),
        "finished_at": _iso(row["finished_at"]),
        "links": {"self": f"{PATHS[row['kind']]}/{row['id']}", "events": f"{PATHS[row['kind']]}/{row['id']}/events"},
    }
    if row["kind"] == TRAINING:
        aliases = list(row["version_aliases"] or [])
        out.update(
            params=request.get("params", {}),
            profile=request.get("profile"),
            mlflow_run_id=row["mlflow_run_id"],
            metrics=row["metrics"] or {},
            registered_version=row["registered_version"],
            aliases=aliases,
            promoted=bool(aliases),
            gate=row["gate"],
        )
    else:
        out.update(
            alias=request.get("alias"),
            target_version=request.get("target_version"),
            version=row["registered_version"],
        )
    return out


def event_type(kind: str, state: str, state_changed: bool) -> str:
    return f"{kind}.{state}" if state_changed else f"{kind}.updated"


async def start(
    pool: Pool,
    airflow: AirflowClient,
    principal: Principal,
    *,
    kind: str,
    model: str,
    key: str,
    request: Mapping[str, Any],
    dag_id: str,
    conf: Mapping[str, Any],
) -> tuple[dict[str, Any], bool]:
    """The run of (principal, key) and whether this request created it (see the module docstring)."""
    problem = idempotency.key_problem(key)
    if problem:
        raise ApiError(400, f"{idempotency.HEADER} {problem}", idempotency.HEADER)
    run_id = idempotency.run_id(principal.id, key)
    dag_run_id = idempotency.dag_run_id(run_id)
    digest = idempotency.fingerprint(kind, model, request)
    async with pool.connection() as conn, conn.transaction():
        row, created = await store.insert_run(
            conn,
            run_id=run_id,
            kind=kind,
            model=model,
            request=request,
            principal=principal.id,
            idempotency_key=key,
            request_hash=digest,
            dag_id=dag_id,
            dag_run_id=dag_run_id,
        )
        if not created:
            if row["request_hash"] != digest:
                raise ApiError(
                    409,
                    f"this {idempotency.HEADER} was used for a different request (run {row['id']}); use a new key",
                    idempotency.HEADER,
                )
            return row, False
        await airflow.check_dag(dag_id)
        dag_run = await airflow.trigger(dag_id, dag_run_id, conf)
        row = await store.update_run(conn, run_id, {"airflow_state": dag_run.state})
        await store.add_event(conn, row, event_type(kind, row["state"], True), view(row))
    log.info("%s %s of %s started: DAG run %s of %s", kind, run_id, model, dag_run_id, dag_id)
    return row, True


async def cancel(pool: Pool, airflow: AirflowClient, run_id: uuid.UUID, kind: str, caller: Principal) -> dict[str, Any]:
    """Cancel an unfinished run: 404 unknown, 403 another model than the caller's, 409 already finished (its
    final state is recorded then)."""
    ended: RunState | None = None
    async with pool.connection() as conn, conn.transaction():
        row = await store.lock_run(conn, run_id)
        if row is None or row["kind"] != kind:
            raise ApiError(404, f"no {kind} {run_id}", "id")
        caller.check_model(row["model"])
        if is_terminal(row["state"]):
            raise ApiError(409, f"the {kind} already ended: {row['state']}", "id")
        current = await airflow.get_run(row["dag_id"], row["dag_run_id"])
        observed = from_airflow(current.state) if current else None
        if current is not None and observed in TERMINAL:
            # it ended meanwhile: record that (the reconciler adds the facts), refuse the cancel
            row = await _write(conn, row, _run_changes(row, current, observed), facts=None)
            ended = observed
        else:
            failed = await airflow.fail_run(row["dag_id"], row["dag_run_id"])
            changes = {
                "state": RunState.CANCELLED.value,
                "cancel_requested": True,
                "airflow_state": failed.state if failed else None,
                "finished_at": datetime.now(UTC),
            }
            row = await store.update_run(conn, run_id, changes)
            await store.add_event(conn, row, event_type(kind, row["state"], True), view(row))
    if ended is not None:
        raise ApiError(409, f"the {kind} already ended: {ended.value}", "id")
    return row


def _run_changes(row: Mapping[str, Any], dag_run: DagRun | None, observed: RunState | None) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if dag_run is None:
        new_state = RunState.FAILED
        if row["error"] is None:
            changes["error"] = f"Airflow has no DAG run {row['dag_run_id']} of {row['dag_id']} any more"
    else:
        new_state = next_state(RunState(row["state"]), observed)
        if dag_run.state != row["airflow_state"]:
            changes["airflow_state"] = dag_run.state
    if new_state.value != row["state"]:
        changes["state"] = new_state.value
    now = datetime.now(UTC)
    if new_state is not RunState.QUEUED and row["started_at"] is None:
        changes["started_at"] = _parse_time(dag_run.start_date if dag_run else None) or now
    if new_state in TERMINAL and row["finished_at"] is None:
        changes["finished_at"] = _parse_time(dag_run.end_date if dag_run else None) or now
    return changes


def _facts_changes(row: Mapping[str, Any], facts: TrainingFacts) -> dict[str, Any]:
    candidate: dict[str, Any] = {
        "mlflow_run_id": facts.run_id,
        "metrics": facts.metrics,
        "registered_version": facts.registered_version,
        "version_aliases": sorted(facts.aliases),
        "gate": facts.gate,
    }
    current = {**row, "version_aliases": sorted(row["version_aliases"] or []), "metrics": row["metrics"] or {}}
    # facts only grow while a run is running: never erase what was seen (e.g. MLflow answering partially)
    return {k: v for k, v in candidate.items() if v not in (None, {}, []) and v != current[k]}


async def _write(
    conn: Any, row: dict[str, Any], changes: dict[str, Any], facts: TrainingFacts | None
) -> dict[str, Any]:
    if facts is not None:
        changes.update(_facts_changes(row, facts))
    if not changes:
        return row
    state_changed = "state" in changes
    updated = await store.update_run(conn, row["id"], changes)
    await store.add_event(conn, updated, event_type(updated["kind"], updated["state"], state_changed), view(updated))
    return updated


async def refresh(pool: Pool, airflow: AirflowClient, mlflow: MlflowClient, run: Mapping[str, Any]) -> dict[str, Any]:
    """Bring one unfinished run up to date (see the module docstring); the run as it is now.
    DependencyUnavailable from Airflow propagates (the round stops); MLflow's only delays the facts."""
    dag_run = await airflow.get_run(run["dag_id"], run["dag_run_id"])
    facts: TrainingFacts | None = None
    try:
        if run["kind"] == TRAINING:
            facts = await mlflow.training_facts(run["model"], run["dag_run_id"])
        elif dag_run is not None and dag_run.state == "success":
            alias = (run["request"] or {}).get("alias")
            version = (await mlflow.aliases(run["model"])).get(str(alias))
            facts = TrainingFacts(registered_version=version)
    except DependencyUnavailable as exc:
        log.warning("facts of %s %s delayed: %s", run["kind"], run["id"], exc)
        if dag_run is not None and from_airflow(dag_run.state) in TERMINAL:
            return dict(run)  # do not end the run without its final facts: the next round retries
    async with pool.connection() as conn, conn.transaction():
        row = await store.lock_run(conn, run["id"])
        if row is None or is_terminal(row["state"]):
            return row or dict(run)
        observed = from_airflow(dag_run.state if dag_run else None, cancel_requested=row["cancel_requested"])
        changes = _run_changes(row, dag_run, observed)
        if changes.get("state") == RunState.FAILED.value and row["error"] is None and dag_run is not None:
            changes["error"] = await _failure(airflow, row)
        if facts is not None and run["kind"] == ROLLBACK:
            changes.update({"registered_version": facts.registered_version} if facts.registered_version else {})
            facts = None
        return await _write(conn, row, changes, facts)


async def _failure(airflow: AirflowClient, row: Mapping[str, Any]) -> str:
    base = f"the DAG run {row['dag_run_id']} of {row['dag_id']} failed"
    try:
        failed = await airflow.failed_tasks(row["dag_id"], row["dag_run_id"])
    except DependencyUnavailable:
        return base
    return f"{base}; failed tasks: {', '.join(failed)}" if failed else base


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


# --- what a DAG run receives as conf ----------------------------------------------------------------
# The generated DAGs (dags/mlops_tasks/pipelines.py) take the model's params as DAG params (conf keys of the same
# names; any other key is refused by the training task), and the rollback DAG `alias` and `target_version`.
def training_conf(params: Mapping[str, Any], alias: str | None = None) -> dict[str, Any]:
    """The conf of a training DAG run: the run's params (validated, as the catalog's merge_params typed them) and,
    when the request names one, the alias a passing candidate is registered under (else the DAG's default: the
    catalog's training.alias)."""
    return {**params, **({"alias": alias} if alias is not None else {})}


def rollback_conf(alias: str, version: str | None) -> dict[str, Any]:
    """The conf of a rollback DAG run: the alias to move back and the version (or "previous")."""
    return {"alias": alias, "target_version": version or "previous"}
