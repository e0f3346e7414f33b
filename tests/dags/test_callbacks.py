"""The failure callback posts one Slack alert through the shared helper, naming DAG, task, run and error."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from mlops_tasks.callbacks import TASK_FAILED_EVENT, alert_on_failure, failure_alert

from services.common.contract import SLACK_WEBHOOK_URL
from tests.dags.conftest import WebhookReceiver


def _context() -> dict[str, object]:
    ti = SimpleNamespace(
        dag_id="train_register_promote",
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
    assert alert.fields["dag"] == "train_register_promote"
    assert alert.fields["task"] == "reload_serving"
    assert alert.fields["try"] == "3"
    assert "HTTP 403" in alert.fields["error"]
    assert "train_register_promote.reload_serving failed" in alert.summary


def test_callback_posts_to_the_configured_webhook(webhook: WebhookReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SLACK_WEBHOOK_URL.name, webhook.url)
    webhook.clear()
    alert_on_failure(_context())
    texts = webhook.events(TASK_FAILED_EVENT)
    assert len(texts) == 1
    assert "reload_serving" in texts[0]
