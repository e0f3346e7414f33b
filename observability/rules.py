"""The platform's alert rules, defined once.

`alert_rules(settings)` returns every rule of one stack; `rule_groups(rules)` renders them as Prometheus rule
groups, the one shape both the PrometheusRule objects (components/monitoring.py) and `promtool test rules`
(the tests) read. Every rule carries a severity, and the annotations `summary` (one line naming what is
wrong), `description` and `runbook` (the first thing to do, in one line; docs/observability.md has more).

The PromQL is the subset that Prometheus 2.42 (Debian's, the tests) and 3.x (the clusters) read alike: no
`info()`, no experimental functions, classic-histogram `le` matched on a bucket bound that both spell the same.

Counters that appear with their first event (a pod's first reload failure, a DAG's first failed run) are
matched with `new_or_increased`: `increase()` alone misses the first event of a new series.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from observability import names

Severity = Literal["critical", "warning"]
PLATFORM_LABEL = "platform"  # every rule's alerts carry platform="mlops" (Alertmanager routes on it)
PLATFORM_VALUE = "mlops"

# The serving latency histogram's bounds (services/serving/observability.py); the SLO threshold must be one
# of them. Written as Prometheus exposes them (the same on 2.42 and 3.x for these values).
LATENCY_BUCKETS = ("0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5")

# Multi-window, multi-burn-rate alerting (Google SRE workbook, ch. 5): (long window, short window, burn rate).
FAST_BURN = ("1h", "5m", 14.4)  # 2 % of a 30-day budget in one hour: page
SLOW_BURN = ("6h", "30m", 6.0)  # 5 % in six hours: ticket


@dataclass(frozen=True)
class RuleSettings:
    """What the rules of one stack depend on.

    - `stack_prefix`: the stack's namespace prefix (mlops-dev); certificates and volumes are watched in
      `<prefix>-*` only.
    - `watch_interval_seconds`: the serving registry watcher's interval: replicas of one model may load
      different versions for that long (twice, with one missed poll) before it is a problem.
    - `retrain_days`: training DAG id -> days after which a scheduled model without a successful training
      run alerts (only scheduled models are listed).
    """

    stack_prefix: str
    serving_namespace: str
    airflow_namespace: str
    watch_interval_seconds: int = 30
    error_ratio: float = 0.05
    latency_threshold: str = "0.25"
    latency_objective: float = 0.99
    shadow_disagreement: float = 0.2
    certificate_days: int = 14
    volume_free_ratio: float = 0.1
    retrain_days: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.latency_threshold not in LATENCY_BUCKETS:
            raise ValueError(
                f"latency threshold {self.latency_threshold} must be a bucket bound of the serving latency "
                f"histogram: {', '.join(LATENCY_BUCKETS)}"
            )
        if not 0 < self.latency_objective < 1:
            raise ValueError("the latency objective must be a fraction between 0 and 1, e.g. 0.99")
        for dag_id, days in self.retrain_days.items():
            if days < 1:
                raise ValueError(f"{dag_id}: retrain_days must be at least 1")


@dataclass(frozen=True)
class AlertRule:
    name: str
    expr: str
    severity: Severity
    summary: str
    description: str
    runbook: str
    for_: str = "0m"
    group: str = "serving"
    labels: Mapping[str, str] = field(default_factory=dict)

    def rule(self) -> dict[str, Any]:
        """The rule as a Prometheus rule file (and the PrometheusRule CRD) spell it."""
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.for_,
            "labels": {"severity": self.severity, PLATFORM_LABEL: PLATFORM_VALUE, **self.labels},
            "annotations": {"summary": self.summary, "description": self.description, "runbook": self.runbook},
        }


def _duration(seconds: int) -> str:
    return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"


def new_or_increased(selector: str, window: str, by: str) -> str:
    """Events of a counter within `window`: its increase, or a series that did not exist `window` ago
    (a counter created by its first event)."""
    return (
        f"(sum by ({by}) (increase({selector}[{window}])) > 0)"
        f" or (sum by ({by}) ({selector} unless {selector} offset {window}) > 0)"
    )


def _slow_ratio(ns: str, threshold: str, window: str) -> str:
    """Fraction of the serving requests slower than `threshold` seconds over `window`, per model."""
    bucket = f'{names.SERVING_LATENCY}_bucket{{namespace="{ns}", le="{threshold}"}}'
    count = f'{names.SERVING_LATENCY}_count{{namespace="{ns}"}}'
    return (
        f"(1 - (sum by (namespace, model) (rate({bucket}[{window}]))"
        f" / sum by (namespace, model) (rate({count}[{window}]))))"
    )


def _burn(s: RuleSettings, long: str, short: str, rate: float) -> str:
    budget = round(1 - s.latency_objective, 6)
    limit = round(rate * budget, 6)
    return (
        f"{_slow_ratio(s.serving_namespace, s.latency_threshold, long)} > {limit}"
        f" and {_slow_ratio(s.serving_namespace, s.latency_threshold, short)} > {limit}"
    )


def _burn_rule(
    s: RuleSettings,
    name: str,
    windows: tuple[str, str, float],
    severity: Severity,
    pace: str,
    consequence: str,
    runbook: str,
) -> AlertRule:
    """One multi-window burn-rate alert of the serving latency SLO."""
    long, short, rate = windows
    objective = f"{s.latency_objective:.2%} of requests under {s.latency_threshold}s"
    return AlertRule(
        name=name,
        expr=_burn(s, long, short, rate),
        severity=severity,
        summary=f"Model {{{{ $labels.model }}}} burns its latency error budget{pace} (SLO {objective})",
        description=f"Over the last {long} and {short} the share of requests slower than {s.latency_threshold}s "
        f"exceeds {rate} times the budget of the SLO ({objective}){consequence}.",
        runbook=runbook,
    )


def serving_rules(s: RuleSettings) -> list[AlertRule]:
    return [*_serving_availability_rules(s), *_serving_model_rules(s)]


def _serving_availability_rules(s: RuleSettings) -> list[AlertRule]:
    """Ready replicas, errors and the latency budget."""
    ns = s.serving_namespace
    return [
        AlertRule(
            name="ServingNoReadyReplica",
            expr=f'max by (namespace, deployment) (kube_deployment_status_replicas_available{{namespace="{ns}"}}) < 1',
            for_="5m",
            severity="critical",
            summary="Serving deployment {{ $labels.deployment }} has no ready replica",
            description="No pod of {{ $labels.namespace }}/{{ $labels.deployment }} has been ready for 5 minutes: "
            "its model answers no prediction.",
            runbook="kubectl -n {{ $labels.namespace }} describe deployment {{ $labels.deployment }}; then the pods' "
            "events and logs (image pull, failing /readyz because the model cannot load, OOMKilled).",
        ),
        AlertRule(
            name="ServingErrorRatioHigh",
            expr=(
                f'sum by (namespace, model, alias) (rate({names.SERVING_REQUESTS}{{namespace="{ns}", '
                f'status=~"5.."}}[5m]))'
                f' / sum by (namespace, model, alias) (rate({names.SERVING_REQUESTS}{{namespace="{ns}"}}[5m]))'
                f" > {s.error_ratio}"
            ),
            for_="10m",
            severity="critical",
            summary="Model {{ $labels.model }} (alias {{ $labels.alias }}) answers more than "
            f"{s.error_ratio:.0%} of predictions with 5xx",
            description=f"For 10 minutes more than {s.error_ratio:.0%} of the predictions of "
            "{{ $labels.model }}@{{ $labels.alias }} failed with a server error.",
            runbook="Open the Serving dashboard for the model, then its logs (Logs by request id); roll back "
            "with the rollback_<model> DAG if a new version started it.",
        ),
        _burn_rule(
            s,
            "ServingLatencyBudgetFastBurn",
            FAST_BURN,
            "critical",
            " fast",
            ": at this rate a 30-day budget is gone in about two days",
            "Check the Serving dashboard (p99 by version, replicas, CPU); scale out (maxReplicas) or roll back a "
            "slower version.",
        ),
        _burn_rule(
            s,
            "ServingLatencyBudgetSlowBurn",
            SLOW_BURN,
            "warning",
            "",
            "",
            "Compare p99 by version on the Serving dashboard; raise the profile or the replicas, or retrain a "
            "lighter model.",
        ),
    ]


def _serving_model_rules(s: RuleSettings) -> list[AlertRule]:
    """Reloads, version skew between replicas and shadow disagreement."""
    ns = s.serving_namespace
    skew_for = _duration(max(2 * s.watch_interval_seconds, 60))
    return [
        AlertRule(
            name="ServingReloadFailing",
            expr=new_or_increased(
                f'{names.SERVING_RELOAD_FAILURES}{{namespace="{ns}"}}', "15m", "namespace, model, alias"
            ),
            severity="warning",
            summary="Model {{ $labels.model }} failed to load a new version of alias {{ $labels.alias }}",
            description="A reload of {{ $labels.model }}@{{ $labels.alias }} failed in the last 15 minutes; the "
            "previous version keeps serving.",
            runbook="Search the serving logs for the reload error (event model.reload_failed); check the version in "
            "MLflow (artifacts, READY) and the pod's memory.",
        ),
        AlertRule(
            name="ServingVersionSkew",
            expr=(
                "count by (namespace, model, alias) (count_values by (namespace, model, alias) "
                f'("loaded_version", {names.SERVING_MODEL_VERSION}{{namespace="{ns}"}})) > 1'
            ),
            for_=skew_for,
            severity="warning",
            summary="Replicas of model {{ $labels.model }} serve different versions of alias {{ $labels.alias }}",
            description=f"For more than {skew_for} (twice the registry watcher's interval) the replicas of "
            "{{ $labels.model }} have loaded different versions under {{ $labels.alias }}.",
            runbook="Look at serving_model_version by pod on the Serving dashboard; a replica stuck on the old "
            "version logs why its reload failed; restart it if needed.",
        ),
        AlertRule(
            name="ServingNothingToServe",
            expr=(
                f'sum by (namespace, model) ({names.SERVING_TRAFFIC_SHARE}{{namespace="{ns}"}}) == 0'
                f" and on (namespace, model) max by (namespace, model) ({names.SERVING_ALIAS_MISSING}"
                f'{{namespace="{ns}"}}) == 1'
            ),
            for_="30m",
            severity="warning",
            summary="Model {{ $labels.model }} serves nothing: its routed aliases have no version in the registry",
            description="For 30 minutes no replica of {{ $labels.model }} has had a version to serve (every "
            "prediction answers 503 naming the missing aliases): the model was never trained, or its alias was "
            "deleted.",
            runbook="Train the model (POST /v1/trainings on the platform API, or its train_<model> DAG) or set the "
            "alias in MLflow; the serving's /models lists the missing aliases.",
        ),
        AlertRule(
            name="ServingShadowDisagreement",
            expr=(
                f'sum by (namespace, model) (rate({names.SERVING_SHADOW}{{namespace="{ns}", outcome="differ"}}[15m]))'
                f' / sum by (namespace, model) (rate({names.SERVING_SHADOW}{{namespace="{ns}", '
                f'outcome=~"agree|differ"}}[15m]))'
                f" > {s.shadow_disagreement}"
            ),
            for_="15m",
            severity="warning",
            summary="Shadow predictions of model {{ $labels.model }} disagree with the primary more than "
            f"{s.shadow_disagreement:.0%} of the time",
            description=f"For 15 minutes more than {s.shadow_disagreement:.0%} of the compared shadow predictions "
            "of {{ $labels.model }} differed from the primary's.",
            runbook="Do not promote the shadow version; compare the two versions' metrics in MLflow and the "
            "shadow.compared log lines.",
        ),
    ]


def pipeline_rules(s: RuleSettings) -> list[AlertRule]:
    ns = s.airflow_namespace
    failed = f'{names.AIRFLOW_DAGRUN_FAILED}_count{{namespace="{ns}", dag_id=~"{names.TRAINING_DAG_PREFIX}.+"}}'
    rules = [
        AlertRule(
            name="TrainingRunFailed",
            expr=new_or_increased(failed, "30m", "namespace, dag_id"),
            severity="warning",
            group="pipelines",
            summary="Training DAG {{ $labels.dag_id }} failed",
            description="A run of {{ $labels.dag_id }} failed in the last 30 minutes (its rollback ran if it had "
            "already moved the alias).",
            runbook="Open the failed run in Airflow (grid view), read the failed task's log; the run's Slack "
            "alert names the task.",
        ),
    ]
    if s.retrain_days:
        success = names.AIRFLOW_DAGRUN_SUCCESS + "_count"
        terms = []
        for dag_id, days in sorted(s.retrain_days.items()):
            sel = f'{success}{{namespace="{ns}", dag_id="{dag_id}"}}'
            window = f"{days}d"
            # a success counter that existed `days` ago and did not move since, or none at all in that time
            terms.append(
                f"(sum by (namespace, dag_id) (increase({sel}[{window}])) < 1"
                f" and sum by (namespace, dag_id) ({sel} offset {window}))"
                f" or absent_over_time({sel}[{window}])"
            )
        rules.append(
            AlertRule(
                name="ModelNotRetrained",
                expr=" or ".join(terms),
                for_="1h",
                severity="warning",
                group="pipelines",
                summary="Scheduled training {{ $labels.dag_id }} has not succeeded in time",
                description="No successful run of {{ $labels.dag_id }} within its schedule's longest interval "
                "plus a day: the model is getting stale.",
                runbook="Check that the DAG is not paused and its last runs in Airflow; trigger it by hand once "
                "the cause is fixed.",
            )
        )
    return rules


def platform_rules(s: RuleSettings) -> list[AlertRule]:
    stack_ns = f"{s.stack_prefix}-.+"
    return [
        AlertRule(
            name="CertificateExpiringSoon",
            expr=(
                "min by (namespace, name) "
                f'(certmanager_certificate_expiration_timestamp_seconds{{namespace=~"{stack_ns}"}})'
                f" - time() < {s.certificate_days} * 86400"
            ),
            for_="1h",
            severity="warning",
            group="platform",
            summary="Certificate {{ $labels.namespace }}/{{ $labels.name }} expires in less than "
            f"{s.certificate_days} days",
            description="cert-manager has not renewed it: an Ingress will soon serve an expired certificate.",
            runbook="kubectl -n {{ $labels.namespace }} describe certificate {{ $labels.name }}; check the "
            "issuer (ACME challenge, CA secret) and cert-manager's logs.",
        ),
        AlertRule(
            name="PersistentVolumeFillingUp",
            expr=(
                f'kubelet_volume_stats_available_bytes{{namespace=~"{stack_ns}"}}'
                f' / kubelet_volume_stats_capacity_bytes{{namespace=~"{stack_ns}"}} < {s.volume_free_ratio}'
            ),
            for_="15m",
            severity="warning",
            group="platform",
            summary="Volume {{ $labels.namespace }}/{{ $labels.persistentvolumeclaim }} is more than "
            f"{1 - s.volume_free_ratio:.0%} full",
            description=f"Less than {s.volume_free_ratio:.0%} of the claim is free: writes fail once it is full.",
            runbook="Grow the claim (its storage setting) or clean up (Prometheus retention, old logs).",
        ),
    ]


def alert_rules(s: RuleSettings) -> list[AlertRule]:
    """Every alert rule of one stack."""
    return [*serving_rules(s), *pipeline_rules(s), *platform_rules(s)]


def rule_groups(rules: list[AlertRule]) -> list[dict[str, Any]]:
    """The rules as Prometheus rule groups (one per area), for PrometheusRule objects and promtool files."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for rule in rules:
        groups.setdefault(rule.group, []).append(rule.rule())
    return [{"name": f"mlops-{group}", "rules": items} for group, items in groups.items()]


def retrain_days_for(schedule: str | None) -> int | None:
    """Days after which a model on this cron schedule is stale: the schedule's longest interval plus a day;
    None for an on-demand model (no schedule)."""
    if schedule is None:
        return None
    text = schedule.strip().lower()
    presets = {"@hourly": 1, "@daily": 1, "@midnight": 1, "@weekly": 7, "@monthly": 31, "@yearly": 366}
    presets["@annually"] = 366
    if text in presets:
        return presets[text] + 1
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(f"not a cron expression: {schedule!r}")
    _, _, day_of_month, month, day_of_week = fields
    if month != "*":
        longest = 366
    elif day_of_month != "*":
        longest = 31
    elif day_of_week != "*":
        longest = 7
    else:
        longest = 1
    return longest + 1


def markdown_table(rules: list[AlertRule]) -> str:
    """The rules as docs/observability.md lists them (a test keeps the document equal to this)."""
    rows = ["| alert | severity | for | what it means | first thing to do |", "| --- | --- | --- | --- | --- |"]
    for rule in rules:
        rows.append(
            f"| `{rule.name}` | {rule.severity} | {rule.for_} | {_plain(rule.summary)} | {_plain(rule.runbook)} |"
        )
    return "\n".join(rows)


def _plain(text: str) -> str:
    """Annotation text for a table: `{{ $labels.x }}` shown as <x>, pipes escaped."""
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", r"<\1>", text).replace("|", "\\|")
