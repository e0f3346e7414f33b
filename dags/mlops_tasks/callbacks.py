"""Airflow callbacks: every task failure is alerted through the shared Slack helper."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.common.alerts import Alert, Severity, send_alert

TASK_FAILED_EVENT = "airflow.task_failed"
SUMMARY_CHARS = 200


def failure_alert(context: Mapping[str, Any]) -> Alert:
    ti = context.get("ti") or context.get("task_instance")
    dag_id = getattr(ti, "dag_id", None) or str(getattr(context.get("dag"), "dag_id", "?"))
    task_id = getattr(ti, "task_id", "?")
    run_id = str(context.get("run_id") or getattr(ti, "run_id", "?"))
    exception = context.get("exception")
    reason = f"{type(exception).__name__}: {exception}" if exception is not None else "unknown error"
    fields = {
        "dag": dag_id,
        "task": task_id,
        "run": run_id,
        "try": str(getattr(ti, "try_number", "?")),
        "error": reason[:500],
    }
    log_url = getattr(ti, "log_url", None)
    if log_url:
        fields["log"] = str(log_url)
    return Alert(
        event=TASK_FAILED_EVENT,
        summary=f"task {dag_id}.{task_id} failed in run {run_id}: {reason[:SUMMARY_CHARS]}",
        severity=Severity.ERROR,
        fields=fields,
        # the whole message (e.g. the training runner's problems and the entrypoint's last lines of stderr)
        details=reason if len(reason) > SUMMARY_CHARS else "",
    )


def alert_on_failure(context: Mapping[str, Any]) -> None:
    """`on_failure_callback` of every task. `send_alert` never raises."""
    send_alert(failure_alert(context))
