"""The failure callback posts one Slack alert through the shared helper, naming DAG, task, run and error, with the
whole error (e.g. the training runner's problems and the entrypoint's stderr) when the summary cannot hold it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from mlops_tasks.callbacks import TASK_FAILED_EVENT, alert_on_failure, failure_alert

from services.common.contract import SLACK_WEBHOOK_URL
from tests.dags.conftest import WebhookReceiver


def _context() -> dict[str, object]:
    ti = SimpleNamespace(
        dag_id="train_iris_classifier",
        task_id="reload_serving",
        run_id="manual__x",
        try_number=3,
        log_url="http://airflow/log",
    )
    return {"ti": ti, "run_id": "manual__x", "exception": RuntimeError("serving refused the reload: HTTP 403")}


def test_failure_alert_names_the_task_and_the_error() -> None:
    alert = failure_alert(_context())
    assert alert.event == TASK_FAILED_EVENT
    assert alert.severity.value == "error"
    assert alert.fields["dag"] == "train_iris_classifier"
    assert alert.fields["task"] == "reload_serving"
    assert alert.fields["try"] == "3"
    assert "HTTP 403" in alert.fields["error"]
    assert "train_iris_classifier.reload_serving failed" in alert.summary


def test_a_long_error_is_kept_whole_in_the_details() -> None:
    stderr = "\n".join(f"  line {i} of the traceback" for i in range(30)) + "\nRuntimeError: boom: the data is bad"
    context = {
        **_context(),
        "exception": RuntimeError(f"training run abc: the entrypoint exited with code 1; {stderr}"),
    }
    alert = failure_alert(context)
    assert "the entrypoint exited with code 1" in alert.summary
    assert "RuntimeError: boom: the data is bad" not in alert.summary  # beyond the summary's length
    assert alert.details.endswith("RuntimeError: boom: the data is bad")
    assert failure_alert(_context()).details == ""  # short: the summary holds it


def test_callback_posts_to_the_configured_webhook(webhook: WebhookReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SLACK_WEBHOOK_URL.name, webhook.url)
    webhook.clear()
    alert_on_failure(_context())
    texts = webhook.events(TASK_FAILED_EVENT)
    assert len(texts) == 1
    assert "reload_serving" in texts[0]
