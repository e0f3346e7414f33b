"""The one Slack alert helper, shared by the serving service and the Airflow DAGs.

`send_alert` never raises: with no webhook configured the alert is logged and skipped; a webhook
that fails or times out is logged as a warning. Callers therefore never fail because alerting did.
The webhook URL is a secret: it is never logged.

`Alert` is the platform's one message formatter: `slack_payload()` for Slack and `markdown()` for
a GitHub job summary, with the same content (the deploy and drift notifier,
`tools.delivery.deploy_notify`, builds its messages as `Alert`s too).
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


# Slack's limits: 10 fields per section, 2000 characters per field, 3000 per text object.
MAX_FIELDS = 10
_MAX_FIELD_CHARS = 2000
_MAX_TEXT_CHARS = 3000


def truncate_lines(text: str, limit: int) -> str:
    """`text` cut at a line boundary to at most `limit` characters, saying how many lines were left out."""
    if len(text) <= limit:
        return text
    lines = text.splitlines()
    kept: list[str] = []
    size = 0
    for line in lines:
        # room for this line and for the closing note
        if size + len(line) + 1 + len(f"... ({len(lines)} more lines)") > limit:
            break
        kept.append(line)
        size += len(line) + 1
    if not kept:
        return text[: max(limit - 3, 0)] + "..."
    return "\n".join([*kept, f"... ({len(lines) - len(kept)} more lines)"])


def _md_cell(value: str) -> str:
    return str(value).replace("|", "\\|").replace("\n", "<br>")


@dataclass(frozen=True)
class Alert:
    """What happened (`event`, e.g. ``model.reloaded``), a one-line summary and key facts.

    `links` (label -> URL) are shown as one line of links; `details` is preformatted text (e.g. a
    diff) shown in a code block, cut at a line boundary to fit Slack's limits.
    """

    event: str
    summary: str
    severity: Severity = Severity.INFO
    fields: dict[str, str] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    details: str = ""

    @property
    def headline(self) -> str:
        return f"{_ICONS[self.severity]} *{self.event}*: {self.summary}"

    def slack_payload(self) -> dict[str, object]:
        text = self.headline
        blocks: list[dict[str, object]] = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
        if self.fields:
            blocks.append(
                {
                    "type": "section",
                    "fields": [
                        {"type": "mrkdwn", "text": truncate_lines(f"*{k}*\n{v}", _MAX_FIELD_CHARS)}
                        for k, v in list(self.fields.items())[:MAX_FIELDS]
                    ],
                }
            )
        if self.links:
            line = " | ".join(f"<{url}|{label}>" for label, url in self.links.items())
            blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": line[:_MAX_TEXT_CHARS]}]})
        if self.details:
            # Slack reads <, > and & as markup: escape them (a diff carries them often).
            escaped = self.details.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            body = truncate_lines(escaped, _MAX_TEXT_CHARS - 8)
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"```\n{body}\n```"}})
        return {"text": text, "blocks": blocks}

    def markdown(self, details_limit: int = 60_000) -> str:
        """The same message as GitHub-flavoured Markdown (a job summary): headline, facts, links, details."""
        out = [f"### {self.headline.replace('*', '**')}", ""]
        if self.fields:
            out += ["| | |", "| --- | --- |"]
            out += [f"| {_md_cell(k)} | {_md_cell(v)} |" for k, v in self.fields.items()]
            out.append("")
        if self.links:
            out += [" · ".join(f"[{label}]({url})" for label, url in self.links.items()), ""]
        if self.details:
            fence = "~~~~" if "```" in self.details else "```"
            out += [f"{fence}diff", truncate_lines(self.details, details_limit), fence, ""]
        return "\n".join(out)


def send_alert(alert: Alert, webhook_url: str | None = None, timeout: float = 5.0) -> Delivery:
    """Post `alert` to Slack. `webhook_url` defaults to the file $MLOPS_SLACK_WEBHOOK_URL_FILE names (the cluster's
    way), else $MLOPS_SLACK_WEBHOOK_URL."""
    record = {"alert_event": alert.event, "severity": alert.severity.value, **alert.fields}
    try:
        url = webhook_url if webhook_url is not None else SLACK_WEBHOOK_URL.read_secret()
    except OSError as exc:
        log.warning(
            "alert not sent: the webhook file is unreadable (%s): %s", exc, alert.summary, extra={"alert": record}
        )
        return Delivery.FAILED
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
