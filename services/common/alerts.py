"""The one Slack alert helper, shared by the serving service and the Airflow DAGs.

`send_alert` never raises: with no webhook configured the alert is logged and skipped; a webhook
that fails or times out is logged as a warning. Callers therefore never fail because alerting did.
The webhook URL is a secret: it is never logged.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from enum import StrEnum

from services.common.contract import SLACK_WEBHOOK_URL

log = logging.getLogger("mlops.alerts")


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class Delivery(StrEnum):
    SENT = "sent"
    SKIPPED = "skipped"  # no webhook configured
    FAILED = "failed"  # webhook configured but delivery failed


_ICONS = {Severity.INFO: ":white_check_mark:", Severity.WARNING: ":warning:", Severity.ERROR: ":rotating_light:"}


@dataclass(frozen=True)
class Alert:
    """What happened (`event`, e.g. ``model.reloaded``), a one-line summary and key facts."""

    event: str
    summary: str
    severity: Severity = Severity.INFO
    fields: dict[str, str] = field(default_factory=dict)

    def slack_payload(self) -> dict[str, object]:
        text = f"{_ICONS[self.severity]} *{self.event}*: {self.summary}"
        blocks: list[dict[str, object]] = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
        if self.fields:
            blocks.append(
                {
                    "type": "section",
                    "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in list(self.fields.items())[:10]],
                }
            )
        return {"text": text, "blocks": blocks}


def send_alert(alert: Alert, webhook_url: str | None = None, timeout: float = 5.0) -> Delivery:
    """Post `alert` to Slack. `webhook_url` defaults to $MLOPS_SLACK_WEBHOOK_URL."""
    url = webhook_url if webhook_url is not None else SLACK_WEBHOOK_URL.get()
    record = {"alert_event": alert.event, "severity": alert.severity.value, **alert.fields}
    if not url:
        log.info("alert (no webhook configured, not sent): %s", alert.summary, extra={"alert": record})
        return Delivery.SKIPPED
    if not url.startswith(("https://", "http://")):
        log.warning("alert not sent: the webhook URL is not http(s): %s", alert.summary, extra={"alert": record})
        return Delivery.FAILED
    body = json.dumps(alert.slack_payload()).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - scheme checked above
            status = response.status
    except (urllib.error.URLError, OSError, ValueError) as exc:
        # The URL is a secret: log the error type only, never the URL.
        log.warning("alert delivery failed (%s): %s", type(exc).__name__, alert.summary, extra={"alert": record})
        return Delivery.FAILED
    if status >= 300:
        log.warning("alert delivery failed (HTTP %s): %s", status, alert.summary, extra={"alert": record})
        return Delivery.FAILED
    log.info("alert sent: %s", alert.summary, extra={"alert": record})
    return Delivery.SENT
