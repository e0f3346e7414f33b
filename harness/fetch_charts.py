"""Fetch the pinned charts' values files for the Helm values checks, where ../shared/charts is absent.

`python -m harness.fetch_charts DEST` runs `helm pull` for every chart the program installs, at the
version the settings pin, and keeps `Chart.yaml`, `values.yaml` and `values.schema.json` under
`DEST/charts/<chart>/<version>/`, the layout the checks read (point MLOPS_SHARED_DIR at DEST). GitHub's
runners have helm; these machines do not and use ../shared/charts instead.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

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
