"""What the DAGs share: their triggering policy, task defaults, common params and the tasks every DAG
that moves an alias ends with.

`reload_and_verify(move, announce)` adds `reload_serving -> verify_serving` to the DAG being defined:
serving reloads the alias and must answer with the version the move put there, then the promoted alias
must answer with it `verify_timeout_seconds` (a param of the DAG) long at most, then `announce` reports the
move. Each DAG keeps its own task ids and wiring; the bodies live in `mlops_tasks.steps`.

Imports only the Task SDK and light helpers at module level (it runs when the DAG files are parsed).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from airflow.sdk import Param, task

from mlops_tasks.callbacks import alert_on_failure

OWNER = "ml-platform"

# `@dag(**TRIGGERED, ...)`: the DAGs run when triggered (by a person, CI or the API), never on a schedule,
# one run at a time (two runs moving the same alias would race).
TRIGGERED: dict[str, Any] = {
    "schedule": None,
    "start_date": datetime(2026, 1, 1),
    "catchup": False,
    "max_active_runs": 1,
}

# The move record an alias-moving task returns: {"model", "alias", "previous_version", "new_version"}.
Move = Mapping[str, str | None]
Announce = Callable[[Move, Mapping[str, Any]], None]

VERIFY_TIMEOUT_PARAM = "verify_timeout_seconds"


def default_args(**retry_policy: Any) -> dict[str, Any]:
    """`default_args` of every DAG: the owner and a Slack alert on every task failure, plus the DAG's own
    retry policy (retries, retry_delay, execution_timeout...)."""
    return {"owner": OWNER, **retry_policy, "on_failure_callback": alert_on_failure}


def model_name_param() -> Param:
    """The `model_name` param of every DAG (the same meaning everywhere)."""
    return Param(
        None,
        type=["null", "string"],
        description="Registered model; empty = $MLOPS_MODEL_NAME, else iris-classifier.",
    )


def verify_timeout_param() -> Param:
    """The `verify_timeout_seconds` param read by `verify_serving`."""
    return Param(
        120, type="integer", minimum=1, description="How long serving may take to answer with the new version."
    )


def reload_and_verify(move: Any, announce: Announce) -> tuple[Any, Any]:
    """Add `reload_serving(move) -> verify_serving(move, reloaded)` to the DAG being defined.

    `move` is the XComArg of the task that moved the alias (its return value is a move record).
    Returns the two tasks' XComArgs (typed Any: mypy sees XComArg) for the DAG's own wiring.
    """

    # multiple_outputs=False: TaskFlow would otherwise push one XCom per key of the returned dicts.
    @task(multiple_outputs=False)
    def reload_serving(move: Move) -> dict[str, Any]:
        from mlops_tasks import steps

        return steps.reload_serving(str(move["alias"]), str(move["new_version"]))

    @task(multiple_outputs=False)
    def verify_serving(move: Move, reloaded: dict[str, Any], **context: Any) -> dict[str, Any]:
        from mlops_tasks import steps

        timeout_s = float(context["params"][VERIFY_TIMEOUT_PARAM])
        served = steps.verify_serving(str(move["alias"]), str(move["new_version"]), timeout_s)
        announce(move, served)
        return served

    reloaded: Any = reload_serving(move)
    verified: Any = verify_serving(move, reloaded)
    return reloaded, verified
