"""What the DAGs share: their start date, task defaults, common params and the tasks every DAG that moves an
alias ends with.

`reload_and_verify(entry, move, announce)` adds `reload_serving -> verify_serving` to the DAG being defined:
the model's serving reloads the alias and must answer with the version the move put there, then the alias must
answer with it `verify_timeout_seconds` (a param of the DAG) long at most, then `announce` reports the move.
Each DAG keeps its own task ids and wiring; the bodies live in `mlops_tasks.steps`.

Imports only the Task SDK and light helpers at module level (it runs when the DAG files are parsed).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from airflow.sdk import Param, task

from mlops_tasks.callbacks import alert_on_failure
from services.common.catalog_file import CatalogModel
from services.common.serving_rules import ALIAS_PATTERN

OWNER = "ml-platform"

# Every DAG: never catches up on missed intervals, one run at a time (two runs moving the same alias would race).
RUN_POLICY: dict[str, Any] = {
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


def alias_param(entry: CatalogModel, description: str, default: str | None = None) -> Param:
    """The `alias` param: one of the aliases the model's serving loads (`default`, else the first)."""
    return Param(
        default or entry.aliases[0],
        type="string",
        pattern=ALIAS_PATTERN,
        enum=list(entry.aliases),
        description=description,
    )


def verify_timeout_param() -> Param:
    """The `verify_timeout_seconds` param read by `verify_serving`."""
    return Param(
        120, type="integer", minimum=1, description="How long serving may take to answer with the new version."
    )


def reload_and_verify(entry: CatalogModel, move: Any, announce: Announce) -> tuple[Any, Any]:
    """Add `reload_serving(move) -> verify_serving(move, reloaded)` for the model `entry` to the DAG being defined.

    `move` is the XComArg of the task that moved the alias (its return value is a move record).
    Returns the two tasks' XComArgs (typed Any: mypy sees XComArg) for the DAG's own wiring.
    """

    # multiple_outputs=False: TaskFlow would otherwise push one XCom per key of the returned dicts.
    @task(multiple_outputs=False)
    def reload_serving(move: Move) -> dict[str, Any]:
        from mlops_tasks import steps

        return steps.reload_serving(entry, str(move["alias"]), str(move["new_version"]))

    @task(multiple_outputs=False)
    def verify_serving(move: Move, reloaded: dict[str, Any], **context: Any) -> dict[str, Any]:
        from mlops_tasks import steps

        timeout_s = float(context["params"][VERIFY_TIMEOUT_PARAM])
        served = steps.verify_serving(entry, str(move["alias"]), str(move["new_version"]), timeout_s)
        announce(move, served)
        return served

    reloaded: Any = reload_serving(move)
    verified: Any = verify_serving(move, reloaded)
    return reloaded, verified
