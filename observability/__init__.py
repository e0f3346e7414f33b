"""The platform's observability, defined once as plain data (no Pulumi here).

- `names`: the labels every scraped series carries and the label names a metric must never carry.
- `scrape`: what Prometheus scrapes (PodMonitor/ServiceMonitor objects), with the relabelings that put the
  `model` label on serving series.
- `rules`: the alert rules, rendered into PrometheusRule objects and into `promtool` rule files.
- `alertmanager`: Alertmanager's configuration (Slack with the stack's webhook, or nowhere) and its templates.
- `dashboards`: the Grafana dashboards, built with grafana-foundation-sdk and encoded to JSON.
- `logs`: the Alloy pipeline that ships pod logs to Loki, and the LogQL of a request id.

`components/monitoring.py` and `components/logging.py` turn these into Kubernetes objects.
"""
