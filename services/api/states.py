"""The states of a pipeline run (a training or a rollback) and how Airflow's DAG-run states map onto them.

    queued -> running -> success | failed | cancelled

A run is created `queued`. The reconciler maps Airflow's DAG-run state (`queued`, `running`, `success`,
`failed`) onto these; a run the API cancelled (it marked the DAG run failed) is `cancelled`, never `failed`.
Terminal states never change again. Pure functions (no database, no HTTP).
"""

from __future__ import annotations

from enum import StrEnum


class RunState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL: frozenset[RunState] = frozenset({RunState.SUCCESS, RunState.FAILED, RunState.CANCELLED})
ACTIVE: tuple[RunState, ...] = (RunState.QUEUED, RunState.RUNNING)
_ORDER = {RunState.QUEUED: 0, RunState.RUNNING: 1}

_AIRFLOW = {
    "queued": RunState.QUEUED,
    "running": RunState.RUNNING,
    "success": RunState.SUCCESS,
    "failed": RunState.FAILED,
}


def from_airflow(airflow_state: str | None, *, cancel_requested: bool = False) -> RunState | None:
    """The run state for a DAG run's state; None for a state this API does not know (it keeps its own)."""
    if airflow_state is None:
        return None
    state = _AIRFLOW.get(airflow_state.lower())
    if state is RunState.FAILED and cancel_requested:
        return RunState.CANCELLED
    return state


def next_state(current: RunState, observed: RunState | None) -> RunState:
    """The state after observing `observed`: terminal states stay; a run never goes back to `queued` from
    `running` (Airflow re-queues a cleared run: it is still running for the user)."""
    if current in TERMINAL or observed is None:
        return current
    if observed in TERMINAL:
        return observed
    return observed if _ORDER[observed] >= _ORDER[current] else current


def is_terminal(state: RunState | str) -> bool:
    return RunState(state) in TERMINAL
