"""Settings group `charts.*`: the pinned Helm chart versions (Renovate updates them here)."""

from __future__ import annotations

from dataclasses import dataclass

from stacks.settings.engine import setting


@dataclass(frozen=True)
class ChartSettings:
    traefik: str = setting("charts.traefik", "Traefik chart version", default="41.3.0")
    cert_manager: str = setting("charts.certManager", "cert-manager chart version", default="v1.21.1")
    kube_prometheus_stack: str = setting(
        "charts.kubePrometheusStack", "kube-prometheus-stack chart version: monitoring", default="88.5.3"
    )
    loki: str = setting("charts.loki", "Grafana Loki chart version, grafana-community repository", default="18.11.0")
    alloy: str = setting("charts.alloy", "Grafana Alloy chart version", default="1.11.1")
