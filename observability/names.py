"""Label and metric names shared by the scrape configuration, the alert rules and the dashboards.

The serving service's metric names are defined by `services.serving.observability.Metrics`; they are spelled
here once more because the Pulumi program must not import the serving service (a test keeps both equal).
"""

from __future__ import annotations

import re

# Target labels every scraped series carries: `namespace` and `pod` from Kubernetes service discovery
# (the operator's defaults), `model` from the serving pods' model label (see scrape.SERVING_RELABELINGS).
NAMESPACE = "namespace"
POD = "pod"
MODEL = "model"

# The serving pods' label holding the model's slug (components/serving.py, MODEL_LABEL) and its name in
# Prometheus' Kubernetes service discovery (`/` and `-` become `_`).
SERVING_MODEL_POD_LABEL = "mlops-platform/model"
SERVING_APP = "serving"  # app.kubernetes.io/name of every serving pod


def discovered_pod_label(label: str) -> str:
    """`mlops-platform/model` -> `__meta_kubernetes_pod_label_mlops_platform_model`."""
    return "__meta_kubernetes_pod_label_" + re.sub(r"[^A-Za-z0-9_]", "_", label)


# Label names that would put one series per request or per caller into Prometheus: never a metric label.
# Every monitor drops them at scrape time, and the tests check that the serving service exposes none.
FORBIDDEN_LABELS = (
    "request_id",
    "requestid",
    "trace_id",
    "span_id",
    "client_id",
    "client",
    "client_ip",
    "remote_addr",
    "user",
    "user_id",
    "session_id",
    "token",
)
FORBIDDEN_LABEL_REGEX = "|".join(FORBIDDEN_LABELS)

# Serving metrics (services/serving/observability.py; counters carry the `_total` suffix when exposed).
SERVING_REQUESTS = "serving_requests_total"  # alias, version, status
SERVING_REJECTED = "serving_rejected_requests_total"  # status
SERVING_LATENCY = "serving_request_latency_seconds"  # histogram: alias, version
SERVING_RELOADS = "serving_reloads_total"  # alias, outcome, trigger
SERVING_RELOAD_FAILURES = "serving_reload_failures_total"  # alias
SERVING_LOAD_SECONDS = "serving_model_load_seconds"  # histogram: alias
SERVING_MODEL_VERSION = "serving_model_version"  # gauge per alias, value = version
SERVING_SHADOW = "serving_shadow_comparisons_total"  # outcome: agree, differ, error, skipped
SERVING_TRAFFIC_SHARE = "serving_traffic_share"  # gauge per alias: the share of routed traffic it takes now
SERVING_ALIAS_MISSING = "serving_alias_missing"  # gauge per alias: 1 while the registry has no version under it
SERVING_METRICS = (
    SERVING_REQUESTS,
    SERVING_REJECTED,
    SERVING_LATENCY,
    SERVING_RELOADS,
    SERVING_RELOAD_FAILURES,
    SERVING_LOAD_SECONDS,
    SERVING_MODEL_VERSION,
    SERVING_SHADOW,
    SERVING_TRAFFIC_SHARE,
    SERVING_ALIAS_MISSING,
)

# Airflow, through the chart's StatsD exporter (its mappings, plus ours in scrape.AIRFLOW_STATSD_MAPPINGS).
AIRFLOW_DAGRUN_SUCCESS = "airflow_dagrun_duration"  # summary per dag_id: one observation per successful run
AIRFLOW_DAGRUN_FAILED = "airflow_dagrun_failed"  # summary per dag_id: one observation per failed run
AIRFLOW_TASK_FINISH = "airflow_ti_finish"  # counter: dag_id, task_id, state
TRAINING_DAG_PREFIX = "train_"  # services.common.catalog.names(model)["dag_id"]
ROLLBACK_DAG_PREFIX = "rollback_"
