"""Alertmanager's configuration: the platform's alerts to Slack through the stack's webhook, or nowhere.

With a webhook (`alerts.slackWebhookUrl`) every alert goes to the `slack` receiver, which reads the webhook URL
from a file (`api_url_file`: the Secret mounted into Alertmanager), so the URL never appears in the
configuration, in Helm values or in a ConfigMap. Without one the default receiver is `null`: alerts stay in
Alertmanager (its UI and API list them) and nothing fails. The kube-prometheus-stack's heartbeat alerts
(Watchdog, InfoInhibitor) always go to `null`.

Messages use the templates of `SLACK_TEMPLATE` (mounted beside the configuration): a title such as
`[FIRING:1] ServingErrorRatioHigh · mlops-dev` and one paragraph per alert with its summary, description,
runbook line, severity, start time and labels.
"""

from __future__ import annotations

from typing import Any

TEMPLATE_FILE = "mlops-slack.tmpl"
SLACK_RECEIVER = "slack"
NULL_RECEIVER = "null"
GROUP_BY = ("alertname", "namespace", "model", "dag_id")

SLACK_TEMPLATE = """\
{{ define "mlops.slack.title" -}}
[{{ .Status | toUpper }}{{ if eq .Status "firing" }}:{{ .Alerts.Firing | len }}{{ end }}] \
{{ .CommonLabels.alertname }}{{ if .CommonLabels.stack }} · {{ .CommonLabels.stack }}{{ end }}
{{- end }}

{{ define "mlops.slack.text" -}}
{{ range .Alerts -}}
*{{ .Annotations.summary }}*
{{ .Annotations.description }}
*Runbook:* {{ .Annotations.runbook }}
*Severity:* {{ .Labels.severity }} · *since* {{ .StartsAt.Format "2006-01-02 15:04 MST" }}\
{{ if eq .Status "resolved" }} · *resolved* {{ .EndsAt.Format "2006-01-02 15:04 MST" }}{{ end }}
*Labels:* {{ range .Labels.SortedPairs }}{{ if and (ne .Name "alertname") (ne .Name "severity") }}\
`{{ .Name }}={{ .Value }}` {{ end }}{{ end }}

{{ end -}}
{{- end }}

{{ define "mlops.slack.color" -}}
{{ if eq .Status "firing" }}{{ if eq .CommonLabels.severity "critical" }}danger{{ else }}warning{{ end }}\
{{ else }}good{{ end }}
{{- end }}
"""


def alertmanager_config(
    *,
    slack_url_file: str | None,
    templates_dir: str = "/etc/alertmanager/config",
    group_wait: str = "30s",
    group_interval: str = "5m",
    repeat_interval: str = "4h",
) -> dict[str, Any]:
    """The configuration (alertmanager.yml as a dict). `slack_url_file`: where Alertmanager reads the webhook
    URL; None = no webhook, every alert stays in Alertmanager."""
    receivers: list[dict[str, Any]] = [{"name": NULL_RECEIVER}]
    if slack_url_file:
        receivers.append(
            {
                "name": SLACK_RECEIVER,
                "slack_configs": [
                    {
                        "api_url_file": slack_url_file,
                        "send_resolved": True,
                        "title": '{{ template "mlops.slack.title" . }}',
                        "text": '{{ template "mlops.slack.text" . }}',
                        "color": '{{ template "mlops.slack.color" . }}',
                        "mrkdwn_in": ["title", "text"],
                    }
                ],
            }
        )
    return {
        "route": {
            "receiver": SLACK_RECEIVER if slack_url_file else NULL_RECEIVER,
            "group_by": list(GROUP_BY),
            "group_wait": group_wait,
            "group_interval": group_interval,
            "repeat_interval": repeat_interval,
            "routes": [{"matchers": ['alertname=~"Watchdog|InfoInhibitor"'], "receiver": NULL_RECEIVER}],
        },
        "inhibit_rules": [
            # a critical alert silences the warnings of the same thing (fast vs slow burn, for example)
            {
                "source_matchers": ['severity="critical"'],
                "target_matchers": ['severity="warning"'],
                "equal": ["namespace", "model"],
            }
        ],
        "receivers": receivers,
        "templates": [f"{templates_dir}/*.tmpl"],
    }
