"""Settings group `alerts.*`: where alerts go."""

from __future__ import annotations

from dataclasses import dataclass

from stacks.settings.engine import Secret, setting


@dataclass(frozen=True)
class AlertSettings:
    slack_webhook_url: Secret | None = setting(
        "alerts.slackWebhookUrl", "Slack incoming webhook (secret); unset = alerts are only logged", secret=True
    )
