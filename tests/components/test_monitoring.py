"""Monitoring and central logs as the program renders them, offline: every monitor and the PrometheusRule validate
strictly against the prometheus-operator CRDs; kube-prometheus-stack's and Alloy's values use only keys of their
charts' values.yaml (the Grafana chart's own keys named one by one), Loki's validate against its chart's schema;
serving pods are selected by the label every model's serving carries; the Slack webhook reaches Alertmanager only as
a mounted Secret; the serving NetworkPolicy admits the stack's Prometheus and nothing else new; dashboards are
ConfigMaps for Grafana's sidecar and every one links to the logs of a request id; `observability.enabled: false`
deploys none of it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components import logging as central_logs
from components import monitoring
from components.namespaces import NamespaceRef
from harness import checks, crds
from harness.mocks import SecretValue, reveal
from harness.run import ProgramRun, run_program
from observability import alertmanager, dashboards, names, rules, scrape
from observability.dashboards import DashboardContext
from observability.rules import RuleSettings
from observability.scrape import ScrapeTargets
from services.common import contract

STACKS = ("dev", "prod")
# Keys of the Grafana chart (a dependency of kube-prometheus-stack) that kube-prometheus-stack's values.yaml
# does not list: the only ones the program sets.
GRAFANA_CHART_KEYS = {
    "values.grafana.ingress.ingressClassName",
    "values.grafana.grafana.ini",
    "values.grafana.resources",
}


def _args(webhook: str | None = "https://hooks.example.invalid/x") -> monitoring.MonitoringArgs:
    targets = ScrapeTargets(
        "mlops-dev-serving", "mlops-dev-mlflow", "mlops-dev-airflow", "cert-manager", "mlops-dev-ingress"
    )
    return monitoring.MonitoringArgs(
        stack="dev",
        namespace=NamespaceRef("mlops-dev-monitoring"),
        release="mlops-dev-kps",
        chart_version="88.5.3",
        retention="15d",
        retention_size="40GB",
        storage_size="20Gi",
        storage_class="gp3",
        scrape_interval="30s",
        grafana_host="grafana.dev.example.com",
        ingress_class="mlops-dev-traefik",
        cluster_issuer="mlops-dev-ca",
        targets=targets,
        rules=RuleSettings("mlops-dev", "mlops-dev-serving", "mlops-dev-airflow", retrain_days={"train_iris": 2}),
        dashboards=DashboardContext("dev", "mlops-dev", "mlops-dev-serving", "mlops-dev-airflow"),
        slack_webhook=webhook,
        loki_url="http://loki.mlops-dev-monitoring.svc.cluster.local:3100",
    )


def _chart(name: str, version: str) -> checks.Chart:
    return checks.Chart(name, version, checks.charts_dir() / name / version)


def _releases(run: ProgramRun) -> dict[str, dict[str, Any]]:
    return {reveal(r.inputs)["chart"]: r.inputs for r in run.helm_releases()}


# --- custom resources --------------------------------------------------------------------------------
def test_monitors_and_rules_validate_strictly_against_their_crds() -> None:
    index = crds.load_index(checks.crds_dir())
    args = _args()
    manifests = [
        *monitoring.monitor_manifests(args, {"release": "x"}),
        monitoring.rule_manifest(args, {"release": "x"}),
    ]
    assert {m["kind"] for m in manifests} == {"PodMonitor", "ServiceMonitor", "PrometheusRule"}
    for manifest in manifests:
        assert index.problems(manifest) == [], manifest["metadata"]["name"]


def test_a_wrong_field_in_a_monitor_is_caught() -> None:
    index = crds.load_index(checks.crds_dir())
    manifest = monitoring.monitor_manifests(_args(), {})[0]
    manifest["spec"]["podMetricsEndpoints"][0]["scrapeEvery"] = "30s"
    assert any("scrapeEvery: unknown field" in p for p in index.problems(manifest))


def test_every_monitor_drops_request_and_client_ids() -> None:
    for monitor in scrape.platform_monitors(_args().targets):
        endpoint = monitor.endpoint("30s")
        assert endpoint["metricRelabelings"] == [{"action": "labeldrop", "regex": names.FORBIDDEN_LABEL_REGEX}]
    assert "request_id" in names.FORBIDDEN_LABELS and "client_id" in names.FORBIDDEN_LABELS


def test_serving_is_selected_by_the_label_of_every_models_serving() -> None:
    from components.serving import APP, MODEL_LABEL

    (serving,) = [m for m in scrape.platform_monitors(_args().targets) if m.name == "serving"]
    assert serving.kind == "PodMonitor"
    assert dict(serving.selector) == {"app.kubernetes.io/name": APP}
    assert names.SERVING_APP == APP and names.SERVING_MODEL_POD_LABEL == MODEL_LABEL
    assert serving.relabelings[0].source_labels == ("__meta_kubernetes_pod_label_mlops_platform_model",)


def test_the_stack_run_creates_every_monitor_and_the_rules(stack_run: Any) -> None:
    run = stack_run("dev")
    objects = {(r.manifest["kind"], r.manifest["metadata"]["name"]) for r in checks.crd_objects(run)}
    expected = {("PodMonitor", "serving"), ("ServiceMonitor", "mlflow"), ("ServiceMonitor", "airflow-statsd")}
    expected |= {("PodMonitor", "cert-manager"), ("PodMonitor", "traefik"), ("PrometheusRule", "mlops-platform")}
    assert expected <= objects
    (rule,) = [r for r in checks.crd_objects(run) if r.manifest["kind"] == "PrometheusRule"]
    alerts = [x["alert"] for g in rule.manifest["spec"]["groups"] for x in g["rules"]]
    # the shipped catalog schedules no training: no staleness alert (see the schedule test below)
    assert "ModelNotRetrained" not in alerts and len(alerts) == 11
    assert rule.manifest["metadata"]["labels"]["release"] == "mlops-dev-kps"


# --- chart values ------------------------------------------------------------------------------------
def test_kube_prometheus_stack_values_use_only_keys_of_its_charts() -> None:
    chart = _chart("kube-prometheus-stack", "88.5.3")
    values = monitoring.chart_values(_args())
    assert checks.values_problems(chart, values) == []
    grafana = checks.unknown_value_keys(chart.default_values["grafana"], values["grafana"], "values.grafana")
    assert set(grafana) == {f"{key} is not a key of the chart's values.yaml" for key in GRAFANA_CHART_KEYS}
    assert checks.values_problems(chart, {**values, "prometheus": {"prometheusSpec": {"retentionTime": "1d"}}}) == [
        "values.prometheus.prometheusSpec.retentionTime is not a key of the chart's values.yaml"
    ]


def test_loki_and_alloy_values_validate() -> None:
    args = central_logs.CentralLogsArgs(
        stack="dev",
        namespace=NamespaceRef("mlops-dev-monitoring"),
        loki_chart_version="18.11.0",
        alloy_chart_version="1.11.1",
        region="eu-west-1",
        bucket="mlops-dev-artifacts-abc",
        s3_secret="loki-s3-credentials",
        rotation_annotation="r",
        retention_days=14,
        storage_size="10Gi",
        storage_class=None,
        collect_namespaces=[NamespaceRef("mlops-dev-serving"), NamespaceRef("mlops-dev-mlflow")],
    )
    loki = central_logs.loki_values(args)
    assert checks.values_problems(_chart("loki", "18.11.0"), loki) == []
    store = loki["loki"]["storage"]["object_store"]
    assert store["storage_prefix"] == "loki" and central_logs.LOKI_PREFIX == "loki/"
    assert checks.values_problems(_chart("loki", "18.11.0"), {**loki, "deploymentMode": 3})
    alloy = central_logs.alloy_values(args)
    assert checks.values_problems(_chart("alloy", "1.11.1"), alloy) == []
    assert alloy["rbac"]["namespaces"] == ["mlops-dev-mlflow", "mlops-dev-serving"]
    assert alloy["rbac"]["rules"] == [
        {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]}
    ]


def test_alertmanager_routes_to_slack_only_through_the_mounted_secret() -> None:
    with_hook = monitoring.alertmanager_values(_args())
    path = f"/etc/alertmanager/secrets/{monitoring.SLACK_SECRET}/{monitoring.SLACK_KEY}"
    assert with_hook["alertmanagerSpec"]["secrets"] == [monitoring.SLACK_SECRET]
    assert with_hook["config"]["receivers"][1]["slack_configs"][0]["api_url_file"] == path
    assert with_hook["config"]["route"]["receiver"] == alertmanager.SLACK_RECEIVER
    assert "hooks.example" not in json.dumps(with_hook)
    without = monitoring.alertmanager_values(_args(webhook=None))
    assert without["config"]["route"]["receiver"] == alertmanager.NULL_RECEIVER
    assert without["config"]["receivers"] == [{"name": alertmanager.NULL_RECEIVER}]
    assert "secrets" not in without["alertmanagerSpec"]


def test_a_stack_with_a_webhook_keeps_it_in_secrets_only(tmp_path: Any) -> None:
    from harness.run import ROOT

    webhook = "  mlops-platform:alerts.slackWebhookUrl:\n    secure: v1:AAAAAAAAAAAAAAAA:BBBBBBBBBBBBBBBBBBBB\n"
    (tmp_path / "Pulumi.dev.yaml").write_text((ROOT / "Pulumi.dev.yaml").read_text() + webhook)
    run = run_program("dev", tmp_path / "Pulumi.dev.yaml")
    assert checks.plaintext_secret_problems(run) == []
    (secret,) = [r for r in run.of_type("kubernetes:core/v1:Secret") if r.name == "monitoring-slack"]
    data = secret.inputs["stringData"]
    assert isinstance(data, SecretValue) or isinstance(data[monitoring.SLACK_KEY], SecretValue)
    values = reveal(_releases(run)["kube-prometheus-stack"])["values"]
    assert values["alertmanager"]["config"]["route"]["receiver"] == alertmanager.SLACK_RECEIVER


@pytest.mark.parametrize("stack", STACKS)
def test_stack_values_per_stack(stack: str, stack_run: Any) -> None:
    run = stack_run(stack)
    releases = {k: reveal(v) for k, v in _releases(run).items()}
    kps = releases["kube-prometheus-stack"]
    assert kps["namespace"] == f"mlops-{stack}-monitoring"
    spec = kps["values"]["prometheus"]["prometheusSpec"]
    assert spec["retention"] == {"dev": "15d", "prod": "30d"}[stack]
    claim = spec["storageSpec"]["volumeClaimTemplate"]["spec"]["resources"]["requests"]["storage"]
    assert claim == {"dev": "20Gi", "prod": "100Gi"}[stack]
    assert spec["externalLabels"] == {"stack": stack}
    assert spec["serviceMonitorNamespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": f"mlops-{stack}-monitoring"}
    }
    grafana = kps["values"]["grafana"]
    assert grafana["admin"] == {"existingSecret": monitoring.GRAFANA_ADMIN_SECRET}
    host = {"dev": "grafana.dev.mlops.internal", "prod": "grafana.mlops.example.com"}[stack]
    assert grafana["ingress"]["tls"] == [{"secretName": "grafana-tls", "hosts": [host]}]
    (loki_source,) = grafana["additionalDataSources"]
    assert loki_source["uid"] == dashboards.LOKI_UID
    assert loki_source["url"] == f"http://loki.mlops-{stack}-monitoring.svc.cluster.local:3100"
    (admin,) = [r for r in run.of_type("kubernetes:core/v1:Secret") if r.name == "monitoring-grafana-admin"]
    data = admin.inputs["stringData"]
    assert isinstance(data, SecretValue) or all(isinstance(v, SecretValue) for v in data.values())
    assert (
        releases["loki"]["values"]["loki"]["limits_config"]["retention_period"]
        == {"dev": "336h", "prod": "720h"}[stack]
    )
    assert reveal(run.exports["grafanaUrl"].value) == f"https://{host}"


# --- network policies ------------------------------------------------------------------------------------
def test_serving_network_policies_admit_prometheus_and_nothing_else_new(stack_run: Any) -> None:
    run = stack_run("dev")
    policies = [r.manifest for r in run.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")]
    monitoring_ns = {"kubernetes.io/metadata.name": "mlops-dev-monitoring"}
    prometheus_peer = {
        "namespaceSelector": {"matchLabels": monitoring_ns},
        "podSelector": {"matchLabels": monitoring.PROMETHEUS_POD_LABELS},
    }
    admitted = []
    for policy in policies:
        if policy["metadata"]["namespace"] != "mlops-dev-serving":
            continue
        for rule in policy["spec"].get("ingress") or []:
            from_monitoring = [p for p in rule.get("from", []) if "mlops-dev-monitoring" in json.dumps(p)]
            # the monitoring namespace reaches serving only as its Prometheus (or, at most, that namespace)
            assert all(
                p in (prometheus_peer, {"namespaceSelector": {"matchLabels": monitoring_ns}}) for p in from_monitoring
            )
            ports = {p.get("port") for p in rule.get("ports", [])}
            if from_monitoring and contract.SERVING_PORT in ports:
                admitted.append(policy["metadata"]["name"])
    assert admitted, "no serving NetworkPolicy admits the stack's Prometheus on the serving port"


# --- dashboards ------------------------------------------------------------------------------------------
def test_dashboards_are_configmaps_for_the_sidecar_and_link_to_request_logs(stack_run: Any) -> None:
    run = stack_run("dev")
    maps = [r for r in run.of_type("kubernetes:core/v1:ConfigMap") if r.name.startswith("monitoring-dashboard-")]
    loaded = {}
    for config_map in maps:
        meta = config_map.manifest["metadata"]
        assert meta["labels"][monitoring.DASHBOARD_LABEL] == "1" and meta["namespace"] == "mlops-dev-monitoring"
        ((key, text),) = config_map.inputs["data"].items()
        loaded[key.removesuffix(".json")] = json.loads(text)
    assert set(loaded) == {
        dashboards.SERVING_UID,
        dashboards.PIPELINES_UID,
        dashboards.PLATFORM_UID,
        dashboards.LOGS_UID,
    }
    logs = loaded[dashboards.LOGS_UID]
    assert [v["name"] for v in logs["templating"]["list"]] == [dashboards.REQUEST_ID_VAR]
    (query,) = list(dashboards.queries(logs))
    assert query[1:] == (dashboards.LOKI_UID, '{stack="dev"} |= "$request_id"')
    for uid, model in loaded.items():
        if uid != dashboards.LOGS_UID:
            assert any(link["tags"] == [f"{dashboards.TAG}-logs"] for link in model["links"]), uid
    assert f"{dashboards.TAG}-logs" in logs["tags"]


def test_request_id_link() -> None:
    url = dashboards.request_id_url("https://grafana.dev.example.com/", "abc-123")
    assert (
        url
        == "https://grafana.dev.example.com/d/mlops-logs/logs-by-request-id?var-request_id=abc-123&from=now-7d&to=now"
    )
    field = monitoring.grafana_values(_args())["additionalDataSources"][0]["jsonData"]["derivedFields"][0]
    assert field["url"].startswith(f"/d/{dashboards.LOGS_UID}/") and "var-request_id=${__value.raw}" in field["url"]


def test_a_scheduled_model_gets_the_staleness_alert() -> None:
    import yaml

    from harness.run import ROOT

    models = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())["config"]["mlops-platform:models"]
    models["iris-classifier"]["training"]["schedule"] = "0 3 * * 1"  # weekly
    run = run_program("prod", overrides={"models": models})
    (rule,) = [r for r in checks.crd_objects(run) if r.manifest["kind"] == "PrometheusRule"]
    stale = next(x for g in rule.manifest["spec"]["groups"] for x in g["rules"] if x["alert"] == "ModelNotRetrained")
    assert 'dag_id="train_iris_classifier"' in stale["expr"] and "[8d]" in stale["expr"]
    assert "diabetes" not in stale["expr"]
    assert stale["labels"][rules.PLATFORM_LABEL] == rules.PLATFORM_VALUE


def test_observability_can_be_switched_off() -> None:
    run = run_program("dev", overrides={"observability.enabled": "false"})
    charts = {reveal(r.inputs)["chart"] for r in run.helm_releases()}
    assert not charts & {"kube-prometheus-stack", "loki", "alloy"}
    assert not [r for r in run.registrations if r.type in ("mlops:platform:Monitoring", "mlops:platform:CentralLogs")]
    users = {r.inputs["name"] for r in run.of_type("aws:iam/user:User")}
    assert "mlops-dev-loki" not in users
    assert "grafanaUrl" not in run.exports
    namespaces = {r.manifest["metadata"]["name"] for r in run.of_type("kubernetes:core/v1:Namespace")}
    assert "mlops-dev-monitoring" not in namespaces
