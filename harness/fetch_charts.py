"""Fetch the shared material the offline checks read, where ../shared is absent: the pinned charts' values files
and the CustomResourceDefinitions those charts install.

`python -m harness.fetch_charts DEST` runs `helm pull` for every chart the program installs, at the version
the settings pin, and keeps `Chart.yaml`, `values.yaml` and `values.schema.json` under
`DEST/charts/<chart>/<version>/`; then downloads the CRDs of `CRD_SOURCES` (the files ../shared/crds holds,
from the same sources at the same releases, ../shared/README.md) unchanged under
`DEST/crds/<project>/<release>/`: the layout the checks read (point MLOPS_SHARED_DIR at DEST). GitHub's
runners have helm and the network; these machines have neither and use ../shared itself. The one caller is
tools/install-test-dependencies.sh (CI here and the workflows' setup action).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from components.airflow import AIRFLOW_REPO
from components.ingress import TRAEFIK_REPO
from components.logging import GRAFANA_REPO, LOKI_REPO
from components.mlflow import MLFLOW_REPO
from components.monitoring import KPS_REPO
from components.tls import CERT_MANAGER_REPO
from stacks.settings import declared

KEEP = ("Chart.yaml", "values.yaml", "values.schema.json")


def pinned_charts() -> list[tuple[str, str, str]]:
    """(chart, repository, version) of every chart the program installs, from the settings' defaults."""
    defaults = {key: meta.default for key, meta, _ in declared()}
    return [
        ("cert-manager", CERT_MANAGER_REPO, defaults["charts.certManager"]),
        ("traefik", TRAEFIK_REPO, defaults["charts.traefik"]),
        ("mlflow", MLFLOW_REPO, defaults["mlflow.chartVersion"]),
        ("airflow", AIRFLOW_REPO, defaults["airflow.chartVersion"]),
        ("kube-prometheus-stack", KPS_REPO, defaults["charts.kubePrometheusStack"]),
        ("loki", LOKI_REPO, defaults["charts.loki"]),
        ("alloy", GRAFANA_REPO, defaults["charts.alloy"]),
    ]


@dataclass(frozen=True)
class CrdSource:
    """The CRD files of one project at one release: `DEST/crds/<project>/<release>/<file>` from `<url>/<file>`."""

    project: str
    release: str
    url: str
    files: tuple[str, ...]


def crd_sources() -> tuple[CrdSource, ...]:
    """The CRDs of the charts the program installs, at the releases those charts carry."""
    charts = {chart: version for chart, _, version in pinned_charts()}
    cert_manager, traefik = charts["cert-manager"], f"v{charts['traefik']}"
    # kube-prometheus-stack 88.5.3 runs prometheus-operator v0.93.1, a patch release whose CRDs are v0.93.0's
    prometheus_operator = "v0.93.0"
    raw = "https://raw.githubusercontent.com"
    return (
        CrdSource(
            "cert-manager",
            cert_manager,
            f"{raw}/cert-manager/cert-manager/{cert_manager}/deploy/crds",
            tuple(
                f"{group}_{plural}.yaml"
                for group, plural in (
                    ("acme.cert-manager.io", "challenges"),
                    ("acme.cert-manager.io", "orders"),
                    ("cert-manager.io", "certificaterequests"),
                    ("cert-manager.io", "certificates"),
                    ("cert-manager.io", "clusterissuers"),
                    ("cert-manager.io", "issuers"),
                )
            ),
        ),
        CrdSource(
            "prometheus-operator",
            prometheus_operator,
            f"{raw}/prometheus-operator/prometheus-operator/{prometheus_operator}/example/prometheus-operator-crd",
            tuple(
                f"monitoring.coreos.com_{plural}.yaml"
                for plural in (
                    "alertmanagerconfigs",
                    "alertmanagers",
                    "podmonitors",
                    "probes",
                    "prometheusagents",
                    "prometheuses",
                    "prometheusrules",
                    "scrapeconfigs",
                    "servicemonitors",
                    "thanosrulers",
                )
            ),
        ),
        CrdSource(
            "traefik",
            traefik,
            f"{raw}/traefik/traefik-helm-chart/{traefik}/traefik/crds",
            tuple(
                f"traefik.io_{plural}.yaml"
                for plural in (
                    "ingressroutes",
                    "ingressroutetcps",
                    "ingressrouteudps",
                    "middlewares",
                    "middlewaretcps",
                    "serverstransports",
                    "serverstransporttcps",
                    "tlsoptions",
                    "tlsstores",
                    "traefikservices",
                )
            ),
        ),
    )


Opener = Callable[[str], IO[bytes]]


def _open(url: str) -> IO[bytes]:
    return urllib.request.urlopen(url, timeout=60)  # noqa: S310 - fixed https URLs


def fetch_crds(dest: Path, opener: Opener = _open) -> None:
    """Download every CRD file of `crd_sources()` unchanged under `dest/crds/<project>/<release>/`."""
    for source in crd_sources():
        target = dest / "crds" / source.project / source.release
        target.mkdir(parents=True, exist_ok=True)
        for name in source.files:
            with opener(f"{source.url}/{name}") as response:
                (target / name).write_bytes(response.read())
        print(f"CRDs {source.project} {source.release}: {len(source.files)} files")


def fetch(dest: Path) -> None:
    helm = shutil.which("helm")
    if helm is None:
        sys.exit("helm is needed to fetch the charts (https://helm.sh/docs/intro/install/)")
    for chart, repo, version in pinned_charts():
        target = dest / "charts" / chart / version
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [helm, "pull", chart, "--repo", repo, "--version", version, "--untar", "--untardir", tmp], check=True
            )
            for name in KEEP:
                source = Path(tmp) / chart / name
                if source.exists():
                    shutil.copy(source, target / name)
        print(f"{chart} {version}: {', '.join(sorted(p.name for p in target.iterdir()))}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m harness.fetch_charts DEST")
    fetch(Path(sys.argv[1]))
    fetch_crds(Path(sys.argv[1]))
