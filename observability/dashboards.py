"""The platform's Grafana dashboards as code (grafana-foundation-sdk), encoded to the JSON Grafana imports.

- `mlops-serving` (Serving): per model, alias and version: requests, p50/p99 latency, errors by status,
  refused requests, reloads by outcome, mean model load time, loaded version per pod, shadow agreement.
  Every query reads the serving service's own metrics only (a test runs each against a real Prometheus
  scraping a real serving process).
- `mlops-pipelines` (Training pipelines): DAG runs by outcome, quality-gate decisions, promotions,
  rollbacks, run durations, failed tasks (Airflow through the chart's StatsD exporter).
- `mlops-platform` (Platform health): ready replicas, restarts, CPU and memory per namespace, volume usage,
  certificate expiry, MLflow and Traefik requests by status, Airflow's scheduler heartbeat, firing alerts.
- `mlops-logs` (Logs by request id): every log line of the stack (Loki) that contains the request id typed
  in its box. Every other dashboard links to it; `request_id_url` gives the link for one id.

The Grafana sidecar loads each from a ConfigMap (components/monitoring.py). The data source uids are the
ones the monitoring stack provisions: `prometheus` (kube-prometheus-stack's) and `loki`.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import logs, loki, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DashboardLinkType,
    DataSourceRef,
    VariableRefresh,
    VariableSort,
)

from observability import names

PROMETHEUS_UID = "prometheus"
LOKI_UID = "loki"
PROMETHEUS = DataSourceRef(type_val="prometheus", uid=PROMETHEUS_UID)
LOKI = DataSourceRef(type_val="loki", uid=LOKI_UID)
TAG = "mlops"
SERVING_UID = "mlops-serving"
PIPELINES_UID = "mlops-pipelines"
PLATFORM_UID = "mlops-platform"
LOGS_UID = "mlops-logs"
REQUEST_ID_VAR = "request_id"

# Serving series selected by the dashboard's variables (All = any value).
SERVING_SELECTOR = 'namespace=~"$namespace", model=~"$model", alias=~"$alias", version=~"$version"'


@dataclass(frozen=True)
class DashboardContext:
    """`stack`: the stack name (the `stack` label of its log streams); `stack_prefix`: its namespace prefix."""

    stack: str
    stack_prefix: str
    serving_namespace: str
    airflow_namespace: str


def _prom(expr: str, legend: str, ref: str = "A") -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(PROMETHEUS)


def _series(title: str, unit: str, *queries: prometheus.Dataquery, description: str = "") -> timeseries.Panel:
    panel = timeseries.Panel().title(title).unit(unit).datasource(PROMETHEUS).height(8).span(12)
    if description:
        panel = panel.description(description)
    for query in queries:
        panel = panel.with_target(query)
    return panel


def _logs_link() -> dash.DashboardLink:
    return (
        dash.DashboardLink("Logs by request id")
        .type(DashboardLinkType.DASHBOARDS)
        .tags([f"{TAG}-logs"])
        .as_dropdown(False)
        .keep_time(True)
        .include_vars(False)
        .target_blank(True)
        .icon("doc")
    )


def _query_variable(name: str, label: str, query: str) -> dash.QueryVariable:
    return (
        dash.QueryVariable(name)
        .label(label)
        .datasource(PROMETHEUS)
        .query(query)
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .include_all(True)
        .all_value(".*")
        .multi(True)
    )


def _base(uid: str, title: str, description: str) -> dash.Dashboard:
    return (
        dash.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([TAG])
        .readonly()
        .time("now-6h", "now")
        .refresh("1m")
        .timezone("browser")
        .tooltip(DashboardCursorSync.CROSSHAIR)
    )


def serving_dashboard(ctx: DashboardContext) -> dash.Dashboard:
    dashboard = (
        _base(SERVING_UID, "Serving", "Every model's serving: traffic, latency, errors, reloads and shadow checks.")
        .link(_logs_link())
        .with_variable(_query_variable("namespace", "Namespace", f"label_values({names.SERVING_REQUESTS}, namespace)"))
        .with_variable(
            _query_variable(
                "model", "Model", f'label_values({names.SERVING_REQUESTS}{{namespace=~"$namespace"}}, model)'
            )
        )
        .with_variable(
            _query_variable(
                "alias",
                "Alias",
                f'label_values({names.SERVING_REQUESTS}{{namespace=~"$namespace", model=~"$model"}}, alias)',
            )
        )
        .with_variable(
            _query_variable(
                "version",
                "Version",
                f'label_values({names.SERVING_REQUESTS}{{namespace=~"$namespace", model=~"$model"}}, version)',
            )
        )
    )
    return _serving_model_panels(_serving_traffic_and_errors(dashboard))


def _serving_traffic_and_errors(dashboard: dash.Dashboard) -> dash.Dashboard:
    """The rows 'Traffic and latency' and 'Errors'."""
    sel = SERVING_SELECTOR
    rate = "[$__rate_interval]"
    by = "model, alias, version"
    return (
        dashboard.with_row(dash.Row("Traffic and latency"))
        .with_panel(
            _series(
                "Requests per second",
                "reqps",
                _prom(
                    f"sum by ({by}) (rate({names.SERVING_REQUESTS}{{{sel}}}{rate}))", "{{model}} {{alias}} v{{version}}"
                ),
            )
        )
        .with_panel(
            _series(
                "Latency p50 and p99",
                "s",
                _prom(
                    f"histogram_quantile(0.5, sum by (le, {by}) (rate({names.SERVING_LATENCY}_bucket{{{sel}}}{rate})))",
                    "p50 {{model}} {{alias}} v{{version}}",
                ),
                _prom(
                    f"histogram_quantile(0.99, sum by (le, {by}) "
                    f"(rate({names.SERVING_LATENCY}_bucket{{{sel}}}{rate})))",
                    "p99 {{model}} {{alias}} v{{version}}",
                    "B",
                ),
            )
        )
        .with_row(dash.Row("Errors"))
        .with_panel(
            _series(
                "Answers other than 200, by status",
                "reqps",
                _prom(
                    f'sum by (model, alias, status) (rate({names.SERVING_REQUESTS}{{{sel}, status!="200"}}{rate}))',
                    "{{model}} {{alias}} {{status}}",
                ),
                description="Predictions answered with an error, by HTTP status (4xx: the caller's input).",
            )
        )
        .with_panel(
            _series(
                "Refused before reaching a model, by status",
                "reqps",
                _prom(
                    f'sum by (model, status) (rate({names.SERVING_REJECTED}{{namespace=~"$namespace", '
                    f'model=~"$model"}}{rate}))',
                    "{{model}} {{status}}",
                ),
                description="Requests refused before routing (413: body too large).",
            )
        )
    )


def _serving_model_panels(dashboard: dash.Dashboard) -> dash.Dashboard:
    """The row 'Models': reloads, load time, loaded versions, shadow agreement."""
    rate = "[$__rate_interval]"
    return (
        dashboard.with_row(dash.Row("Models"))
        .with_panel(
            _series(
                "Reloads by outcome",
                "short",
                _prom(
                    f'sum by (model, alias, outcome) (increase({names.SERVING_RELOADS}{{namespace=~"$namespace", '
                    f'model=~"$model", alias=~"$alias"}}{rate}))',
                    "{{model}} {{alias}} {{outcome}}",
                ),
            )
        )
        .with_panel(
            _series(
                "Mean model load time",
                "s",
                _prom(
                    f'sum by (model, alias) ({names.SERVING_LOAD_SECONDS}_sum{{namespace=~"$namespace", '
                    f'model=~"$model", alias=~"$alias"}})'
                    f' / sum by (model, alias) ({names.SERVING_LOAD_SECONDS}_count{{namespace=~"$namespace", '
                    f'model=~"$model", alias=~"$alias"}})',
                    "{{model}} {{alias}}",
                ),
                description="Download and load time of a version, averaged over the pods' loads so far.",
            )
        )
        .with_panel(
            _series(
                "Loaded version per pod",
                "none",
                _prom(
                    f'max by (model, alias, pod) ({names.SERVING_MODEL_VERSION}{{namespace=~"$namespace", '
                    f'model=~"$model", alias=~"$alias"}})',
                    "{{model}} {{alias}} {{pod}}",
                ),
                description="Replicas of one alias showing different values serve different versions.",
            )
        )
        .with_panel(
            _series(
                "Shadow agreement",
                "percentunit",
                _prom(
                    f'sum by (model) (rate({names.SERVING_SHADOW}{{namespace=~"$namespace", model=~"$model", '
                    f'outcome="agree"}}{rate}))'
                    f' / sum by (model) (rate({names.SERVING_SHADOW}{{namespace=~"$namespace", model=~"$model", '
                    f'outcome=~"agree|differ"}}{rate}))',
                    "{{model}}",
                ),
                description="Share of shadow predictions equal to the primary's (shadow routing only).",
            )
        )
    )


def pipelines_dashboard(ctx: DashboardContext) -> dash.Dashboard:
    ns = f'namespace="{ctx.airflow_namespace}"'
    train = f'{ns}, dag_id=~"{names.TRAINING_DAG_PREFIX}.+"'
    ti = names.AIRFLOW_TASK_FINISH
    window = "[$__range]"
    dashboard = (
        _base(PIPELINES_UID, "Training pipelines", "Training DAG runs, quality gates, promotions and rollbacks.")
        .link(_logs_link())
        .with_panel(
            _series(
                "Training runs by outcome (in range)",
                "short",
                _prom(
                    f"sum by (dag_id) (increase({names.AIRFLOW_DAGRUN_SUCCESS}_count{{{train}}}{window}))",
                    "{{dag_id}} succeeded",
                ),
                _prom(
                    f"sum by (dag_id) (increase({names.AIRFLOW_DAGRUN_FAILED}_count{{{train}}}{window}))",
                    "{{dag_id}} failed",
                    "B",
                ),
            )
        )
        .with_panel(
            _series(
                "Quality gate decisions (in range)",
                "short",
                _prom(
                    f'sum by (dag_id) (increase({ti}{{{train}, task_id="register", state="success"}}{window}))',
                    "{{dag_id}} passed",
                ),
                _prom(
                    f'sum by (dag_id) (increase({ti}{{{train}, task_id="register", state="skipped"}}{window}))',
                    "{{dag_id}} rejected",
                    "B",
                ),
                description="A candidate that passes the gate is registered; a rejected one skips registration.",
            )
        )
        .with_panel(
            _series(
                "Promotions and rollbacks (in range)",
                "short",
                _prom(
                    f'sum by (dag_id) (increase({ti}{{{train}, task_id="promote", state="success"}}{window}))',
                    "{{dag_id}} promoted",
                ),
                _prom(
                    f'sum by (dag_id) (increase({ti}{{{train}, task_id="rollback", state="success"}}{window}))',
                    "{{dag_id}} automatic rollback",
                    "B",
                ),
                _prom(
                    f"sum by (dag_id) (increase({names.AIRFLOW_DAGRUN_SUCCESS}_count{{{ns}, "
                    f'dag_id=~"{names.ROLLBACK_DAG_PREFIX}.+"}}{window}))',
                    "{{dag_id}} manual rollback",
                    "C",
                ),
            )
        )
    )
    return _pipelines_durations_and_failures(dashboard, ctx)


def _pipelines_durations_and_failures(dashboard: dash.Dashboard, ctx: DashboardContext) -> dash.Dashboard:
    """Run durations and failed tasks of the training pipelines."""
    ns = f'namespace="{ctx.airflow_namespace}"'
    train = f'{ns}, dag_id=~"{names.TRAINING_DAG_PREFIX}.+"'
    ti = names.AIRFLOW_TASK_FINISH
    window = "[$__range]"
    return dashboard.with_panel(
        _series(
            "Successful run duration (p50, p90)",
            "s",
            _prom(f'max by (dag_id) ({names.AIRFLOW_DAGRUN_SUCCESS}{{{train}, quantile="0.5"}})', "{{dag_id}} p50"),
            _prom(
                f'max by (dag_id) ({names.AIRFLOW_DAGRUN_SUCCESS}{{{train}, quantile="0.9"}})',
                "{{dag_id}} p90",
                "B",
            ),
        )
    ).with_panel(
        _series(
            "Failed tasks (in range)",
            "short",
            _prom(
                f'sum by (dag_id, task_id) (increase({ti}{{{ns}, state="failed"}}{window}))',
                "{{dag_id}} {{task_id}}",
            ),
        )
    )


def platform_dashboard(ctx: DashboardContext) -> dash.Dashboard:
    stack_ns = f'namespace=~"{ctx.stack_prefix}-.+"'
    rate = "[$__rate_interval]"
    dashboard = (
        _base(PLATFORM_UID, "Platform health", "The stack's workloads, volumes, certificates and entry points.")
        .link(_logs_link())
        .with_panel(
            stat.Panel()
            .title("Firing alerts")
            .datasource(PROMETHEUS)
            .height(4)
            .span(6)
            .with_target(_prom('count(ALERTS{alertstate="firing", platform="mlops"}) or vector(0)', "firing"))
        )
        .with_panel(
            _series(
                "Ready replicas per deployment",
                "short",
                _prom(
                    f"sum by (namespace, deployment) (kube_deployment_status_replicas_available{{{stack_ns}}})",
                    "{{namespace}}/{{deployment}}",
                ),
            )
        )
        .with_panel(
            _series(
                "Container restarts (1h)",
                "short",
                _prom(
                    "sum by (namespace, pod) "
                    f"(increase(kube_pod_container_status_restarts_total{{{stack_ns}}}[1h])) > 0",
                    "{{namespace}}/{{pod}}",
                ),
            )
        )
        .with_panel(
            _series(
                "CPU per namespace",
                "cores",
                _prom(
                    f'sum by (namespace) (rate(container_cpu_usage_seconds_total{{{stack_ns}, container!=""}}{rate}))',
                    "{{namespace}}",
                ),
            )
        )
        .with_panel(
            _series(
                "Memory per namespace",
                "bytes",
                _prom(
                    f'sum by (namespace) (container_memory_working_set_bytes{{{stack_ns}, container!=""}})',
                    "{{namespace}}",
                ),
            )
        )
    )
    return _platform_volumes_and_entry_points(dashboard, ctx)


def _platform_volumes_and_entry_points(dashboard: dash.Dashboard, ctx: DashboardContext) -> dash.Dashboard:
    """Volumes, certificates, MLflow, Traefik and the Airflow scheduler."""
    stack_ns = f'namespace=~"{ctx.stack_prefix}-.+"'
    rate = "[$__rate_interval]"
    return (
        dashboard.with_panel(
            _series(
                "Volume usage",
                "percentunit",
                _prom(
                    f"1 - kubelet_volume_stats_available_bytes{{{stack_ns}}} / kubelet_volume_stats_capacity_bytes"
                    f"{{{stack_ns}}}",
                    "{{namespace}}/{{persistentvolumeclaim}}",
                ),
            )
        )
        .with_panel(
            _series(
                "Days until certificates expire",
                "d",
                _prom(
                    f"(min by (namespace, name) (certmanager_certificate_expiration_timestamp_seconds{{{stack_ns}}})"
                    " - time()) / 86400",
                    "{{namespace}}/{{name}}",
                ),
            )
        )
        .with_panel(
            _series(
                "MLflow requests by status",
                "reqps",
                _prom("sum by (status) (rate(mlflow_http_request_total[$__rate_interval]))", "{{status}}"),
            )
        )
        .with_panel(
            _series(
                "Traefik requests by entry point and code",
                "reqps",
                _prom(
                    f"sum by (entrypoint, code) (rate(traefik_entrypoint_requests_total{rate}))",
                    "{{entrypoint}} {{code}}",
                ),
            )
        )
        .with_panel(
            _series(
                "Airflow scheduler heartbeats",
                "short",
                _prom(
                    f'sum(rate(airflow_scheduler_heartbeat{{namespace="{ctx.airflow_namespace}"}}[5m]))', "heartbeats/s"
                ),
            )
        )
    )


def request_id_logql(stack: str, request_id: str = f"${REQUEST_ID_VAR}") -> str:
    """Every log line of the stack that contains the request id (whatever service wrote it)."""
    return f'{{stack="{stack}"}} |= "{request_id}"'


def logs_dashboard(ctx: DashboardContext) -> dash.Dashboard:
    return (
        _base(LOGS_UID, "Logs by request id", "Every log line of the stack carrying one request id.")
        .tags([TAG, f"{TAG}-logs"])
        .time("now-24h", "now")
        .with_variable(
            dash.TextBoxVariable(REQUEST_ID_VAR)
            .label("Request id")
            .description("The X-Request-ID of a request (serving answers carry it back).")
        )
        .with_panel(
            logs.Panel()
            .title("Log lines of request $request_id")
            .datasource(LOKI)
            .height(20)
            .span(24)
            .show_time(True)
            .wrap_log_message(True)
            .enable_log_details(True)
            .with_target(
                loki.Dataquery().expr(request_id_logql(ctx.stack)).ref_id("A").datasource(LOKI).max_lines(5000)
            )
        )
    )


def request_id_url(grafana_url: str, request_id: str) -> str:
    """The link that opens every log line of one request id."""
    query = urllib.parse.urlencode({f"var-{REQUEST_ID_VAR}": request_id, "from": "now-7d", "to": "now"})
    return f"{grafana_url.rstrip('/')}/d/{LOGS_UID}/logs-by-request-id?{query}"


def dashboards(ctx: DashboardContext) -> dict[str, dict[str, Any]]:
    """uid -> the dashboard's JSON model."""
    built = [serving_dashboard(ctx), pipelines_dashboard(ctx), platform_dashboard(ctx), logs_dashboard(ctx)]
    out: dict[str, dict[str, Any]] = {}
    for builder in built:
        model = json.loads(JSONEncoder(sort_keys=True).encode(builder.build()))
        out[str(model["uid"])] = model
    return out


def dashboard_json(model: dict[str, Any]) -> str:
    return json.dumps(model, sort_keys=True, indent=1)


def queries(model: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(panel title, data source uid, query) of every panel target of a dashboard model."""
    for panel in model.get("panels", []):
        for sub in [panel, *panel.get("panels", [])]:
            for target in sub.get("targets", []) or []:
                source = (target.get("datasource") or sub.get("datasource") or {}).get("uid", "")
                yield str(sub.get("title", "")), str(source), str(target.get("expr", ""))


def markdown_list(ctx: DashboardContext) -> str:
    """The dashboards and their panels as docs/observability.md lists them (a test keeps them equal)."""
    lines = []
    for uid, model in dashboards(ctx).items():
        panels = [p["title"] for p in model.get("panels", []) if p.get("type") != "row"]
        lines.append(f"- **{model['title']}** (`{uid}`): {'; '.join(panels)}.")
    return "\n".join(lines)
