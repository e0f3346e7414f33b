"""What each stack's Prometheus scrapes: one PodMonitor or ServiceMonitor per kind of platform workload.

The monitors live in the stack's monitoring namespace (its Prometheus reads monitors there only) and select
their targets in the namespaces named here. Serving is selected by the label every model's serving pods carry
(`app.kubernetes.io/name: serving`), so a new model of the catalog is scraped without any change here; its
model's slug becomes the `model` label of its series. Every monitor drops the label names of
`names.FORBIDDEN_LABELS` at scrape time: no series per request or per client can reach Prometheus.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from observability import names

MONITORING_GROUP = "monitoring.coreos.com/v1"


@dataclass(frozen=True)
class Relabel:
    """One relabeling step (Prometheus' relabel_config)."""

    action: str = "replace"
    source_labels: tuple[str, ...] = ()
    target_label: str | None = None
    regex: str | None = None
    replacement: str | None = None

    def operator(self) -> dict[str, Any]:
        """As the Prometheus operator's RelabelConfig spells it (camelCase)."""
        return self._spelled("sourceLabels", "targetLabel")

    def prometheus(self) -> dict[str, Any]:
        """As prometheus.yml spells it (snake_case), for a Prometheus configured by hand (the tests)."""
        return self._spelled("source_labels", "target_label")

    def _spelled(self, source_key: str, target_key: str) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.action}
        if self.source_labels:
            out[source_key] = list(self.source_labels)
        for key, value in ((target_key, self.target_label), ("regex", self.regex), ("replacement", self.replacement)):
            if value is not None:
                out[key] = value
        return out


DROP_FORBIDDEN = Relabel(action="labeldrop", regex=names.FORBIDDEN_LABEL_REGEX)
# the serving pod's model label -> `model` on every series of that pod
SERVING_RELABELINGS = (
    Relabel(
        source_labels=(names.discovered_pod_label(names.SERVING_MODEL_POD_LABEL),),
        target_label=names.MODEL,
        regex="(.+)",
        replacement="$1",
    ),
)

# The Airflow chart's StatsD exporter maps a fixed set of Airflow metrics to labelled ones; this adds the
# task instances' outcomes (quality gate, promotion and rollback tasks), one series per dag, task and state.
AIRFLOW_STATSD_MAPPINGS = (
    {
        "match": "airflow.ti.finish.*.*.*",
        "name": names.AIRFLOW_TASK_FINISH,
        "labels": {"dag_id": "$1", "task_id": "$2", "state": "$3"},
    },
)


@dataclass(frozen=True)
class Monitor:
    """One PodMonitor or ServiceMonitor: targets in `namespace` selected by `selector`, scraped on `port`."""

    name: str
    kind: Literal["PodMonitor", "ServiceMonitor"]
    namespace: str
    selector: Mapping[str, str]
    port: str
    path: str = "/metrics"
    honor_labels: bool = False
    relabelings: tuple[Relabel, ...] = ()
    description: str = ""

    def endpoint(self, interval: str) -> dict[str, Any]:
        endpoint: dict[str, Any] = {
            "port": self.port,
            "path": self.path,
            "interval": interval,
            "metricRelabelings": [DROP_FORBIDDEN.operator()],
        }
        if self.honor_labels:
            endpoint["honorLabels"] = True
        if self.relabelings:
            endpoint["relabelings"] = [r.operator() for r in self.relabelings]
        return endpoint

    def manifest(self, monitor_namespace: str, labels: Mapping[str, str], interval: str) -> dict[str, Any]:
        """The custom resource, in the monitoring namespace."""
        endpoints_key = "podMetricsEndpoints" if self.kind == "PodMonitor" else "endpoints"
        return {
            "apiVersion": MONITORING_GROUP,
            "kind": self.kind,
            "metadata": {"name": self.name, "namespace": monitor_namespace, "labels": dict(labels)},
            "spec": {
                "jobLabel": "app.kubernetes.io/name",
                "namespaceSelector": {"matchNames": [self.namespace]},
                "selector": {"matchLabels": dict(self.selector)},
                endpoints_key: [self.endpoint(interval)],
            },
        }


@dataclass(frozen=True)
class ScrapeTargets:
    """Where the platform's workloads run in one stack. `ingress_namespace` is None when the stack does not
    install Traefik; `cert_manager_namespace` is where cert-manager runs (installed by this stack or shared)."""

    serving_namespace: str
    mlflow_namespace: str
    airflow_namespace: str
    cert_manager_namespace: str
    ingress_namespace: str | None = None
    extra: tuple[Monitor, ...] = field(default=())


def platform_monitors(t: ScrapeTargets) -> list[Monitor]:
    """Every monitor of one stack."""
    monitors = [
        Monitor(
            name="serving",
            kind="PodMonitor",
            namespace=t.serving_namespace,
            selector={"app.kubernetes.io/name": names.SERVING_APP},
            port="http",
            relabelings=SERVING_RELABELINGS,
            description="every model's serving pods (requests, latency, reloads, loaded versions, shadow)",
        ),
        Monitor(
            name="mlflow",
            kind="ServiceMonitor",
            namespace=t.mlflow_namespace,
            selector={"app.kubernetes.io/name": "mlflow", "app.kubernetes.io/instance": "mlflow"},
            port="http",
            description="MLflow's Prometheus exporter (`--expose-prometheus`): HTTP requests by status",
        ),
        Monitor(
            name="airflow-statsd",
            kind="ServiceMonitor",
            namespace=t.airflow_namespace,
            selector={"tier": "airflow", "component": "statsd", "release": "airflow"},
            port="statsd-scrape",
            description="Airflow through the chart's StatsD exporter: DAG runs, task outcomes, scheduler",
        ),
        Monitor(
            name="cert-manager",
            kind="PodMonitor",
            namespace=t.cert_manager_namespace,
            selector={"app.kubernetes.io/name": "cert-manager", "app.kubernetes.io/component": "controller"},
            port="http-metrics",
            # the certificates' own namespace and name, not the controller's
            honor_labels=True,
            description="cert-manager's controller: certificate expiry and readiness",
        ),
    ]
    if t.ingress_namespace is not None:
        monitors.append(
            Monitor(
                name="traefik",
                kind="PodMonitor",
                namespace=t.ingress_namespace,
                selector={"app.kubernetes.io/name": "traefik"},
                port="metrics",
                description="Traefik's metrics entry point: requests by entry point, router and status",
            )
        )
    monitors.extend(t.extra)
    return monitors
