"""Every alert rule, run by Prometheus' own rule engine (`promtool test rules`), fires on a synthetic bad series
and stays silent on a healthy one; the rule file passes `promtool check rules`, and so does every Prometheus query
of the dashboards; every rule has a summary, a description and a runbook line, and no rule groups by a request or
client id."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from observability import names, rules
from tests.observability.conftest import AIRFLOW_NS, SERVING_NS, render

pytestmark = [pytest.mark.servers]

SERVING = {"namespace": SERVING_NS, "model": "iris", "alias": "champion", "version": "3"}


def series(metric: str, labels: dict[str, str], values: str) -> dict[str, str]:
    inner = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{metric}{{{inner}}}", "values": values}


@dataclass
class Case:
    """`bad` series make the alert fire with `labels` at `at`; `healthy` series keep it silent then."""

    bad: list[dict[str, str]]
    healthy: list[dict[str, str]]
    labels: dict[str, str]
    at: str = "30m"
    healthy_at: str | None = None
    more_bad: list[tuple[list[dict[str, str]], str, dict[str, str]]] = field(default_factory=list)


def _latency(slow_per_min: int, total_per_min: int = 100) -> list[dict[str, str]]:
    fast = total_per_min - slow_per_min
    labels = {**SERVING}
    return [
        series(f"{names.SERVING_LATENCY}_bucket", {**labels, "le": "0.25"}, f"0+{fast}x480"),
        series(f"{names.SERVING_LATENCY}_count", labels, f"0+{total_per_min}x480"),
    ]


def _requests(errors: int, ok: int) -> list[dict[str, str]]:
    return [
        series(names.SERVING_REQUESTS, {**SERVING, "status": "500"}, f"0+{errors}x60"),
        series(names.SERVING_REQUESTS, {**SERVING, "status": "200"}, f"0+{ok}x60"),
    ]


def _shadow(differ: int, agree: int) -> list[dict[str, str]]:
    base = {"namespace": SERVING_NS, "model": "iris", "pod": "p"}
    return [
        series(names.SERVING_SHADOW, {**base, "outcome": "differ"}, f"0+{differ}x60"),
        series(names.SERVING_SHADOW, {**base, "outcome": "agree"}, f"0+{agree}x60"),
        series(names.SERVING_SHADOW, {**base, "outcome": "skipped"}, "0+500x60"),
    ]


DEPLOYMENT = {"namespace": SERVING_NS, "deployment": "model-iris"}
RELOAD = {"namespace": SERVING_NS, "model": "iris", "alias": "champion", "pod": "p"}
TRAIN = {"namespace": AIRFLOW_NS, "dag_id": "train_iris"}
CERT = {"namespace": SERVING_NS, "name": "model-iris-tls"}
PVC = {"namespace": "mlops-dev-data", "persistentvolumeclaim": "postgres"}
SUCCESS = f"{names.AIRFLOW_DAGRUN_SUCCESS}_count"

CASES: dict[str, Case] = {
    "ServingNoReadyReplica": Case(
        bad=[series("kube_deployment_status_replicas_available", DEPLOYMENT, "0x20")],
        healthy=[series("kube_deployment_status_replicas_available", DEPLOYMENT, "1x20")],
        labels=DEPLOYMENT,
        at="10m",
    ),
    "ServingErrorRatioHigh": Case(
        bad=_requests(errors=30, ok=60),
        healthy=_requests(errors=1, ok=100),
        labels={k: SERVING[k] for k in ("namespace", "model", "alias")},
    ),
    "ServingLatencyBudgetFastBurn": Case(
        bad=_latency(slow_per_min=90),
        healthy=_latency(slow_per_min=0),
        labels={"namespace": SERVING_NS, "model": "iris"},
        at="2h",
    ),
    "ServingLatencyBudgetSlowBurn": Case(
        bad=_latency(slow_per_min=10),
        healthy=_latency(slow_per_min=2),
        labels={"namespace": SERVING_NS, "model": "iris"},
        at="7h",
    ),
    "ServingReloadFailing": Case(
        # the counter appears with its first failure (prometheus_client creates a labelled child on first use)
        bad=[series(names.SERVING_RELOAD_FAILURES, RELOAD, "_x20 1x20")],
        # an old failure, nothing new for 15 minutes
        healthy=[series(names.SERVING_RELOAD_FAILURES, RELOAD, "1x40")],
        labels={k: RELOAD[k] for k in ("namespace", "model", "alias")},
        at="25m",
        more_bad=[([series(names.SERVING_RELOAD_FAILURES, RELOAD, "1x30 2x10")], "35m", {})],
    ),
    "ServingVersionSkew": Case(
        bad=[
            series(names.SERVING_MODEL_VERSION, {**RELOAD, "pod": "a"}, "3x20"),
            series(names.SERVING_MODEL_VERSION, {**RELOAD, "pod": "b"}, "2x20"),
        ],
        healthy=[
            series(names.SERVING_MODEL_VERSION, {**RELOAD, "pod": "a"}, "3x20"),
            series(names.SERVING_MODEL_VERSION, {**RELOAD, "pod": "b"}, "3x20"),
        ],
        labels={k: RELOAD[k] for k in ("namespace", "model", "alias")},
        at="10m",
    ),
    "ServingNothingToServe": Case(
        bad=[
            series(names.SERVING_TRAFFIC_SHARE, {**RELOAD, "alias": "champion"}, "0x40"),
            series(names.SERVING_ALIAS_MISSING, {**RELOAD, "alias": "champion"}, "1x40"),
        ],
        # the champion serves everything while the canary's challenger was never promoted: nothing to alert
        healthy=[
            series(names.SERVING_TRAFFIC_SHARE, {**RELOAD, "alias": "champion"}, "1x40"),
            series(names.SERVING_ALIAS_MISSING, {**RELOAD, "alias": "champion"}, "0x40"),
            series(names.SERVING_TRAFFIC_SHARE, {**RELOAD, "alias": "challenger"}, "0x40"),
            series(names.SERVING_ALIAS_MISSING, {**RELOAD, "alias": "challenger"}, "1x40"),
        ],
        labels={"namespace": SERVING_NS, "model": "iris"},
        at="35m",
    ),
    "ServingShadowDisagreement": Case(
        bad=_shadow(differ=50, agree=50),
        healthy=_shadow(differ=1, agree=99),
        labels={"namespace": SERVING_NS, "model": "iris"},
        at="35m",
    ),
    "TrainingRunFailed": Case(
        bad=[series(f"{names.AIRFLOW_DAGRUN_FAILED}_count", TRAIN, "_x10 1x20")],
        healthy=[
            series(f"{names.AIRFLOW_DAGRUN_FAILED}_count", TRAIN, "1x60"),
            series(f"{names.AIRFLOW_DAGRUN_FAILED}_count", {**TRAIN, "dag_id": "rollback_iris"}, "_x10 1x50"),
        ],
        labels=TRAIN,
        at="15m",
        healthy_at="50m",
        more_bad=[([series(f"{names.AIRFLOW_DAGRUN_FAILED}_count", TRAIN, "1x40 2x20")], "50m", TRAIN)],
    ),
    "ModelNotRetrained": Case(
        # successful runs counted once, then none for more than the day the schedule allows
        bad=[series(SUCCESS, TRAIN, "1x1600")],
        healthy=[series(SUCCESS, TRAIN, "0+1x1600")],
        labels=TRAIN,
        at="1560m",
        # never a successful run at all (another DAG's runs do not count)
        more_bad=[([series(SUCCESS, {**TRAIN, "dag_id": "train_other"}, "0+1x200")], "2h", TRAIN)],
    ),
    "CertificateExpiringSoon": Case(
        bad=[series("certmanager_certificate_expiration_timestamp_seconds", CERT, f"{5 * 86400}x200")],
        healthy=[
            series("certmanager_certificate_expiration_timestamp_seconds", CERT, f"{60 * 86400}x200"),
            # another stack's certificate is not this stack's business
            series(
                "certmanager_certificate_expiration_timestamp_seconds",
                {**CERT, "namespace": "mlops-prod-serving"},
                f"{5 * 86400}x200",
            ),
        ],
        labels=CERT,
        at="2h",
    ),
    "PersistentVolumeFillingUp": Case(
        bad=[
            series("kubelet_volume_stats_available_bytes", PVC, "5x40"),
            series("kubelet_volume_stats_capacity_bytes", PVC, "100x40"),
        ],
        healthy=[
            series("kubelet_volume_stats_available_bytes", PVC, "50x40"),
            series("kubelet_volume_stats_capacity_bytes", PVC, "100x40"),
        ],
        labels=PVC,
    ),
}


def _rule(settings: rules.RuleSettings, name: str) -> rules.AlertRule:
    return next(r for r in rules.alert_rules(settings) if r.name == name)


def _expected(rule: rules.AlertRule, labels: dict[str, str]) -> dict[str, Any]:
    all_labels = {**labels, "severity": rule.severity, rules.PLATFORM_LABEL: rules.PLATFORM_VALUE}
    annotations = rule.rule()["annotations"]
    return {"exp_labels": all_labels, "exp_annotations": {k: render(v, all_labels) for k, v in annotations.items()}}


def _unit_tests(settings: rules.RuleSettings) -> list[dict[str, Any]]:
    tests = []
    for name, case in CASES.items():
        rule = _rule(settings, name)
        bads = [(case.bad, case.at, case.labels), *((s, at, labels or case.labels) for s, at, labels in case.more_bad)]
        for input_series, at, expected_labels in bads:
            tests.append(
                {
                    "name": f"{name} fires",
                    "interval": "1m",
                    "input_series": input_series,
                    "alert_rule_test": [
                        {"eval_time": at, "alertname": name, "exp_alerts": [_expected(rule, expected_labels)]}
                    ],
                }
            )
        tests.append(
            {
                "name": f"{name} stays silent",
                "interval": "1m",
                "input_series": case.healthy,
                "alert_rule_test": [{"eval_time": case.healthy_at or case.at, "alertname": name, "exp_alerts": []}],
            }
        )
    return tests


@pytest.fixture(scope="module")
def rule_file(tmp_path_factory: pytest.TempPathFactory, rule_settings: rules.RuleSettings) -> Path:
    path = tmp_path_factory.mktemp("rules") / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": rules.rule_groups(rules.alert_rules(rule_settings))}, sort_keys=False))
    return path


def test_every_alert_has_a_bad_and_a_healthy_case(rule_settings: rules.RuleSettings) -> None:
    assert sorted(CASES) == sorted(r.name for r in rules.alert_rules(rule_settings))


def test_the_rule_file_is_valid_for_prometheus(promtool: str, rule_file: Path) -> None:
    done = subprocess.run([promtool, "check", "rules", str(rule_file)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(CASES)} rules found" in done.stdout


def test_every_alert_fires_on_bad_series_and_stays_silent_on_healthy_ones(
    promtool: str, rule_file: Path, rule_settings: rules.RuleSettings
) -> None:
    unit = rule_file.parent / "tests.yml"
    unit.write_text(
        yaml.safe_dump(
            {"rule_files": [rule_file.name], "evaluation_interval": "1m", "tests": _unit_tests(rule_settings)},
            sort_keys=False,
        )
    )
    done = subprocess.run(
        [promtool, "test", "rules", unit.name], cwd=unit.parent, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-6000:]
    assert "SUCCESS" in done.stdout


def test_a_broken_rule_is_caught_by_the_same_run(
    promtool: str, tmp_path: Path, rule_settings: rules.RuleSettings
) -> None:
    """The harness above can fail: an alert whose threshold is wrong does not fire on its bad case."""
    lenient = rules.RuleSettings(**{**rule_settings.__dict__, "error_ratio": 0.9})
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": rules.rule_groups(rules.alert_rules(lenient))}))
    tests = [t for t in _unit_tests(lenient) if t["name"] == "ServingErrorRatioHigh fires"]
    (tmp_path / "tests.yml").write_text(yaml.safe_dump({"rule_files": ["rules.yml"], "tests": tests}))
    done = subprocess.run(
        [promtool, "test", "rules", "tests.yml"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode != 0
    assert "ServingErrorRatioHigh" in done.stdout + done.stderr


def test_every_rule_says_what_is_wrong_and_what_to_do(rule_settings: rules.RuleSettings) -> None:
    for rule in rules.alert_rules(rule_settings):
        body = rule.rule()
        assert body["labels"]["severity"] in ("critical", "warning"), rule.name
        for key in ("summary", "description", "runbook"):
            assert len(body["annotations"][key]) > 20, f"{rule.name}: {key} is missing or too short"
        grouped = {label.strip() for group in re.findall(r"by \(([^)]*)\)", rule.expr) for label in group.split(",")}
        assert not grouped & set(names.FORBIDDEN_LABELS), rule.name


def test_only_bucket_bounds_are_accepted_as_latency_thresholds() -> None:
    with pytest.raises(ValueError, match="bucket bound"):
        rules.RuleSettings(stack_prefix="s", serving_namespace="a", airflow_namespace="b", latency_threshold="0.3")


@pytest.mark.parametrize(
    ("schedule", "days"),
    [(None, None), ("@daily", 2), ("0 3 * * *", 2), ("0 3 * * 1", 8), ("0 3 1 * *", 32), ("@weekly", 8)],
)
def test_staleness_follows_the_schedule(schedule: str | None, days: int | None) -> None:
    assert rules.retrain_days_for(schedule) == days


def test_every_dashboard_query_is_valid_promql(promtool: str, tmp_path: Path) -> None:
    """Each Prometheus query of every dashboard, its Grafana variables at sample values, parses in Prometheus."""
    from observability import dashboards

    ctx = dashboards.DashboardContext("dev", "mlops-dev", SERVING_NS, AIRFLOW_NS)
    samples = {"$__rate_interval": "1m", "$__range": "1h", "$__interval": "15s"}
    recording = []
    for uid, model in dashboards.dashboards(ctx).items():
        for variable in model.get("templating", {}).get("list", []):
            samples.setdefault(f"${variable['name']}", ".*")
        for n, (title, source, expr) in enumerate(dashboards.queries(model)):
            if source != dashboards.PROMETHEUS_UID:
                continue
            for name, value in sorted(samples.items(), key=lambda kv: -len(kv[0])):
                expr = expr.replace(name, value)
            assert "$" not in expr, f"{uid} {title}: {expr}"
            recording.append({"record": f"dashboard:{uid.replace('-', '_')}:{n}", "expr": expr})
    assert len(recording) >= 25
    path = tmp_path / "dashboards.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": recording}]}))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
