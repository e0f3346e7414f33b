"""Monitoring of one stack: kube-prometheus-stack (Prometheus, Alertmanager, Grafana), the platform's monitors,
alert rules and dashboards (definitions in observability)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_random as random
from pulumi_kubernetes.apiextensions import CustomResource
from pulumi_kubernetes.core.v1 import ConfigMap, Secret
from pulumi_kubernetes.helm.v3 import Release, RepositoryOptsArgs
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs

from components.images import kube_prometheus_form, with_images
from components.namespaces import NamespaceRef
from components.naming import APP_NAME, cluster_url, labels
from components.options import inherited_depends_on
from observability import alertmanager, dashboards, rules, scrape
from observability.dashboards import DashboardContext
from observability.rules import RuleSettings
from observability.scrape import ScrapeTargets
from stacks.settings import ImageRef

KPS_REPO = "https://prometheus-community.github.io/helm-charts"
GRAFANA_ADMIN_SECRET = "grafana-admin"
GRAFANA_USER_KEY, GRAFANA_PASSWORD_KEY = "admin-user", "admin-password"
SLACK_SECRET = "alertmanager-slack"
SLACK_KEY = "webhook-url"
DASHBOARD_LABEL = "grafana_dashboard"
PROMETHEUS_PORT = 9090
GRAFANA_PORT = 80
ALERTMANAGER_PORT = 9093
# The labels of the stack's Prometheus pods (the operator sets them): what the platform's NetworkPolicies admit,
# together with the monitoring namespace.
PROMETHEUS_POD_LABELS = {APP_NAME: "prometheus"}
# kube-prometheus-stack components that need the control plane's own endpoints (not reachable on managed
# clusters) or host access (node-exporter: hostNetwork, hostPID and host paths, refused by Pod Security).
_OFF = ("kubeControllerManager", "kubeScheduler", "kubeEtcd", "kubeProxy", "nodeExporter")


@dataclass(frozen=True)
class MonitoringArgs:
    """One stack's monitoring. `namespace` is the monitoring namespace (the stack's Prometheus reads monitors and
    rules there only); `release` names the kube-prometheus-stack release
    (unique per cluster: its cluster-wide objects are named after it). `slack_webhook` (a secret) is the stack's
    alerts webhook, None = alerts stay in Alertmanager. `loki_url`: the stack's Loki, None = no log data source."""

    stack: str
    namespace: NamespaceRef
    release: str
    chart_version: str
    retention: str
    retention_size: str | None
    storage_size: str
    storage_class: str | None
    scrape_interval: str
    grafana_host: str
    ingress_class: str
    cluster_issuer: pulumi.Input[str]
    targets: ScrapeTargets
    rules: RuleSettings
    dashboards: DashboardContext
    slack_webhook: pulumi.Input[str] | None = None
    loki_url: str | None = None
    prometheus_replicas: int = 1
    images: Mapping[str, ImageRef] = field(default_factory=dict)  # MONITORING_IMAGES; absent: chart default


# kube-prometheus-stack's own images (third-party images of the stack settings) and where its values set them;
# its subcharts' (Grafana, kube-state-metrics) stay the subcharts' defaults: their values files are not at hand
MONITORING_IMAGES = {
    "prometheus-operator": ("prometheusOperator.image", kube_prometheus_form),
    "prometheus-config-reloader": ("prometheusOperator.prometheusConfigReloader.image", kube_prometheus_form),
    "kube-webhook-certgen": ("prometheusOperator.admissionWebhooks.patch.image", kube_prometheus_form),
    "prometheus": ("prometheus.prometheusSpec.image", kube_prometheus_form),
    "alertmanager": ("alertmanager.alertmanagerSpec.image", kube_prometheus_form),
}


def fullname(release: str) -> str:
    """The prefix of the chart's object names (the chart cuts it at 26 characters)."""
    return release[:26].rstrip("-")


def _volume_claim(size: str, storage_class: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if storage_class:
        spec["storageClassName"] = storage_class
    return {"volumeClaimTemplate": {"spec": spec}}


def _only_here(namespace: str) -> dict[str, Any]:
    return {"matchLabels": {"kubernetes.io/metadata.name": namespace}}


def prometheus_values(args: MonitoringArgs) -> dict[str, Any]:
    """Prometheus: retention and storage of the stack, the stack's label on every alert, monitors and rules read
    from the monitoring namespace only (so stacks sharing a cluster never scrape each other's targets twice)."""
    here = _only_here(args.namespace.name)
    spec: dict[str, Any] = {
        "replicas": args.prometheus_replicas,
        "retention": args.retention,
        "scrapeInterval": args.scrape_interval,
        "evaluationInterval": args.scrape_interval,
        "externalLabels": {"stack": args.stack},
        "storageSpec": _volume_claim(args.storage_size, args.storage_class),
        "serviceMonitorNamespaceSelector": here,
        "podMonitorNamespaceSelector": here,
        "ruleNamespaceSelector": here,
        "probeNamespaceSelector": here,
        "scrapeConfigNamespaceSelector": here,
        "resources": {"requests": {"cpu": "200m", "memory": "1Gi"}, "limits": {"memory": "4Gi"}},
    }
    if args.retention_size:
        spec["retentionSize"] = args.retention_size
    return {"prometheusSpec": spec}


def alertmanager_values(args: MonitoringArgs) -> dict[str, Any]:
    """Alertmanager: the generated routing (Slack through the mounted webhook Secret, or nowhere) and templates."""
    url_file = f"/etc/alertmanager/secrets/{SLACK_SECRET}/{SLACK_KEY}" if args.slack_webhook is not None else None
    spec: dict[str, Any] = {
        "storage": _volume_claim("1Gi", args.storage_class),
        "resources": {"requests": {"cpu": "20m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
    }
    if url_file:
        spec["secrets"] = [SLACK_SECRET]
    return {
        "config": alertmanager.alertmanager_config(slack_url_file=url_file),
        "templateFiles": {alertmanager.TEMPLATE_FILE: alertmanager.SLACK_TEMPLATE},
        "alertmanagerSpec": spec,
    }


def _loki_datasource(url: str) -> dict[str, Any]:
    """Loki, with the request id of a JSON log line turned into a link to every line of that request."""
    logs_link = f"/d/{dashboards.LOGS_UID}/logs-by-request-id?var-{dashboards.REQUEST_ID_VAR}=${{__value.raw}}"
    return {
        "name": "Loki",
        "type": "loki",
        "uid": dashboards.LOKI_UID,
        "url": url,
        "access": "proxy",
        "editable": False,
        "jsonData": {
            "maxLines": 5000,
            "derivedFields": [
                {"name": "request_id", "matcherRegex": '"request_id":\\s*"([^"]+)"', "url": logs_link},
            ],
        },
    }


def grafana_values(args: MonitoringArgs) -> dict[str, Any]:
    """Grafana: admin from the Secret, TLS Ingress, dashboards from labelled ConfigMaps, Loki as a data source.
    `ingressClassName`, `grafana.ini` and `resources` are keys of the Grafana chart (a dependency of
    kube-prometheus-stack), not of kube-prometheus-stack's own values.yaml."""
    values: dict[str, Any] = {
        # the Secret's keys are the chart's defaults (GRAFANA_USER_KEY, GRAFANA_PASSWORD_KEY)
        "admin": {"existingSecret": GRAFANA_ADMIN_SECRET},
        "ingress": {
            "enabled": True,
            "ingressClassName": args.ingress_class,
            "annotations": {"cert-manager.io/cluster-issuer": args.cluster_issuer},
            "hosts": [args.grafana_host],
            "path": "/",
            "tls": [{"secretName": "grafana-tls", "hosts": [args.grafana_host]}],
        },
        "sidecar": {"dashboards": {"enabled": True, "label": DASHBOARD_LABEL, "labelValue": "1"}},
        "grafana.ini": {
            "server": {"root_url": f"https://{args.grafana_host}"},
            "analytics": {"reporting_enabled": False},
        },
        "resources": {"requests": {"cpu": "50m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
    }
    if args.loki_url:
        values["additionalDataSources"] = [_loki_datasource(args.loki_url)]
    return values


def chart_values(args: MonitoringArgs) -> dict[str, Any]:
    """kube-prometheus-stack's values: the operator watches the monitoring namespace only (several stacks can
    share a cluster), and the components this stack cannot or need not run are off."""
    values: dict[str, Any] = {component: {"enabled": False} for component in _OFF}
    values.update(
        {
            "fullnameOverride": fullname(args.release),
            "prometheusOperator": {
                "namespaces": {"releaseNamespace": True, "additional": []},
                "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
            },
            "prometheus": prometheus_values(args),
            "alertmanager": alertmanager_values(args),
            "grafana": grafana_values(args),
        }
    )
    return with_images(values, args.images, MONITORING_IMAGES)


def rule_manifest(args: MonitoringArgs, object_labels: Mapping[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": scrape.MONITORING_GROUP,
        "kind": "PrometheusRule",
        "metadata": {"name": "mlops-platform", "namespace": args.namespace.name, "labels": dict(object_labels)},
        "spec": {"groups": rules.rule_groups(rules.alert_rules(args.rules))},
    }


def monitor_manifests(args: MonitoringArgs, object_labels: Mapping[str, str]) -> list[dict[str, Any]]:
    return [
        m.manifest(args.namespace.name, object_labels, args.scrape_interval)
        for m in scrape.platform_monitors(args.targets)
    ]


class Monitoring(pulumi.ComponentResource):
    """Builds kube-prometheus-stack in the monitoring namespace: Prometheus with the stack's retention and
    volume, reading the monitors and rules of its own namespace only; Alertmanager routing to Slack through the
    stack's webhook (a Secret mounted as a file; without a webhook alerts stay in Alertmanager); Grafana with a
    generated admin password in a Secret, a TLS Ingress signed by the stack's issuer, Prometheus and Loki as
    data sources and the dashboards of ConfigMaps labelled `grafana_dashboard` (loaded by its sidecar). Then the
    platform's PodMonitors and ServiceMonitors, one PrometheusRule with every alert rule, and one ConfigMap per
    dashboard, after the release (whose CRDs they need).

    Exports the attributes below; `release` is a handle, not an output.
    """

    grafana_url: pulumi.Output[str]
    """Grafana through the TLS Ingress."""
    prometheus_url: pulumi.Output[str]
    """Prometheus inside the cluster."""
    alertmanager_url: pulumi.Output[str]
    """Alertmanager inside the cluster."""
    dashboard_uids: list[str]
    alert_names: list[str]

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:platform:Monitoring", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        secrets = [self._grafana_admin(name, args)]
        if args.slack_webhook is not None:
            secrets.append(
                Secret(
                    f"{name}-slack",
                    metadata=ObjectMetaArgs(
                        name=SLACK_SECRET, namespace=args.namespace.output, labels=labels(stack=args.stack)
                    ),
                    type="Opaque",
                    string_data={SLACK_KEY: pulumi.Output.secret(args.slack_webhook)},
                    opts=child,
                )
            )
        self.release: Release = Release(
            f"{name}-kube-prometheus-stack",
            name=args.release,
            chart="kube-prometheus-stack",
            version=args.chart_version,
            repository_opts=RepositoryOptsArgs(repo=KPS_REPO),
            namespace=args.namespace.output,
            timeout=900,
            values=chart_values(args),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*secrets, *inherited_depends_on(opts)]),
        )
        # the chart's Prometheus and rule selectors pick objects labelled with the release's name
        object_labels = labels(stack=args.stack, base={"release": args.release})
        after_release = pulumi.ResourceOptions(parent=self, depends_on=[self.release])
        for manifest in [*monitor_manifests(args, object_labels), rule_manifest(args, object_labels)]:
            meta = manifest["metadata"]
            CustomResource(
                f"{name}-{manifest['kind'].lower()}-{meta['name']}",
                api_version=manifest["apiVersion"],
                kind=manifest["kind"],
                metadata=ObjectMetaArgs(name=meta["name"], namespace=args.namespace.output, labels=meta["labels"]),
                spec=manifest["spec"],
                opts=after_release,
            )
        models = dashboards.dashboards(args.dashboards)
        for uid, model in models.items():
            ConfigMap(
                f"{name}-dashboard-{uid}",
                metadata=ObjectMetaArgs(
                    name=f"dashboard-{uid}",
                    namespace=args.namespace.output,
                    labels=labels(stack=args.stack, base={DASHBOARD_LABEL: "1"}),
                ),
                data={f"{uid}.json": dashboards.dashboard_json(model)},
                opts=after_release,
            )
        self.grafana_url = pulumi.Output.from_input(f"https://{args.grafana_host}")
        here = args.namespace.name
        self.prometheus_url = cluster_url(f"{fullname(args.release)}-prometheus", here, PROMETHEUS_PORT)
        self.alertmanager_url = cluster_url(f"{fullname(args.release)}-alertmanager", here, ALERTMANAGER_PORT)
        self.dashboard_uids = sorted(models)
        self.alert_names = [r.name for r in rules.alert_rules(args.rules)]
        self.register_outputs(
            {
                "grafana_url": self.grafana_url,
                "prometheus_url": self.prometheus_url,
                "alertmanager_url": self.alertmanager_url,
                "dashboard_uids": self.dashboard_uids,
                "alert_names": self.alert_names,
            }
        )

    def _grafana_admin(self, name: str, args: MonitoringArgs) -> Secret:
        """Grafana's admin account: user `admin`, a generated password."""
        child = pulumi.ResourceOptions(parent=self)
        generated = random.RandomPassword(f"{name}-grafana-admin-password", length=32, special=False, opts=child)
        password: pulumi.Output[str] = pulumi.Output.secret(generated.result)
        return Secret(
            f"{name}-grafana-admin",
            metadata=ObjectMetaArgs(
                name=GRAFANA_ADMIN_SECRET, namespace=args.namespace.output, labels=labels(stack=args.stack)
            ),
            type="Opaque",
            string_data={
                GRAFANA_USER_KEY: pulumi.Output.secret("admin"),
                GRAFANA_PASSWORD_KEY: password,
            },
            opts=child,
        )
