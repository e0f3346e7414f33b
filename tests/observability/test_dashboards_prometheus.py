"""A real Prometheus (Debian's 2.42) scrapes a real serving process (shadow routing, two registered versions) under
traffic, with the serving PodMonitor's relabelings applied to the labels Kubernetes service discovery would give the
pod; then every query of the Serving dashboard, with its variables at "All", returns data, each dashboard variable
lists values, every series carries the pod's model as `model`, and no label name of a request or client id exists.

The operator's own part of the scrape configuration (namespace and pod labels from service discovery) is
reproduced here; the monitor's relabelings and metric relabelings are the generated ones."""

from __future__ import annotations

import contextlib
import math
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from devstack.models import iris_rows, train_and_register
from devstack.procs import DevstackError, free_port, http_server
from devstack.serving import ServingProcess, serving_service
from devstack.stack import MlflowStack, mlflow_stack
from observability import dashboards, names, scrape
from tests.observability.conftest import SERVING_NS

pytestmark = [pytest.mark.servers, pytest.mark.slow]

MODEL_SLUG = "iris-observed"
POD = f"model-{MODEL_SLUG}-6f7c9-abcde"
# What Prometheus' Kubernetes service discovery knows about the serving pod (the operator relabels from these).
DISCOVERED = {
    "__meta_kubernetes_namespace": SERVING_NS,
    "__meta_kubernetes_pod_name": POD,
    names.discovered_pod_label(names.SERVING_MODEL_POD_LABEL): MODEL_SLUG,
    names.discovered_pod_label("app.kubernetes.io/name"): names.SERVING_APP,
}
OPERATOR_RELABELINGS = [
    {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
    {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
]
VARIABLES = {"$namespace": ".*", "$model": ".*", "$alias": ".*", "$version": ".*"}
GRAFANA_INTERVALS = {"$__rate_interval": "20s", "$__range": "1m", "$__interval": "5s"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowStack]:
    try:
        with mlflow_stack(log_dir=tmp_path_factory.mktemp("mlflow"), db_prefix="observability_tests") as running:
            yield running
    except DevstackError as exc:
        pytest.fail(f"the MLflow stack could not start: {exc}")


@pytest.fixture(scope="module")
def serving(stack: MlflowStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServingProcess]:
    name = f"observed-{int(time.time())}"
    train_and_register(stack.tracking_uri, name, alias="champion", C=1.0)
    train_and_register(stack.tracking_uri, name, alias="challenger", C=0.01)
    logs = tmp_path_factory.mktemp("serving")
    try:
        with serving_service(
            stack.tracking_uri,
            name,
            aliases=("champion", "challenger"),
            routing={"mode": "shadow", "primary": "champion", "shadow": "challenger"},
            max_batch=4,
            log_path=logs / "serving.out",
        ) as process:
            yield process
    except DevstackError as exc:
        pytest.fail(f"the serving service could not start: {exc}")


def _scrape_config(port: int) -> dict[str, Any]:
    monitor = next(m for m in scrape.platform_monitors(_targets()) if m.name == "serving")
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "serving",
                "metrics_path": monitor.path,
                "static_configs": [{"targets": [f"127.0.0.1:{port}"], "labels": DISCOVERED}],
                "relabel_configs": [*OPERATOR_RELABELINGS, *(r.prometheus() for r in monitor.relabelings)],
                "metric_relabel_configs": [scrape.DROP_FORBIDDEN.prometheus()],
            }
        ],
    }


def _targets() -> scrape.ScrapeTargets:
    return scrape.ScrapeTargets(
        serving_namespace=SERVING_NS,
        mlflow_namespace="mlops-dev-mlflow",
        airflow_namespace="mlops-dev-airflow",
        cert_manager_namespace="cert-manager",
    )


@contextlib.contextmanager
def traffic(base: str, reload_token: str) -> Iterator[None]:
    """Predictions (most fine, some invalid, some too large) and a reload now and then, until the block ends."""
    stop = threading.Event()
    rows = iris_rows(2)

    def run() -> None:
        with httpx.Client(timeout=10) as client:
            n = 0
            while not stop.is_set():
                n += 1
                if n % 7 == 0:
                    client.post(f"{base}/predict", json={"rows": [{"nope": 1}]})
                elif n % 31 == 0:
                    client.post(f"{base}/predict", content=b"x" * 200_000, headers={"content-type": "application/json"})
                elif n % 50 == 0:
                    client.post(f"{base}/admin/reload", headers={"Authorization": f"Bearer {reload_token}"})
                else:
                    client.post(f"{base}/predict", json={"rows": rows})
                time.sleep(0.02)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def prometheus(
    prometheus_binary: str, serving: ServingProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("prometheus")
    config = folder / "prometheus.yml"
    config.write_text(yaml.safe_dump(_scrape_config(serving.port), sort_keys=False))
    port = free_port()
    argv = [
        prometheus_binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={folder / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    url = f"http://127.0.0.1:{port}"
    with (
        http_server("prometheus", argv, port=port, ready_path="/-/ready", log_path=folder / "prometheus.log"),
        traffic(serving.base_url, serving.reload_token),
    ):
        _wait_for_samples(url, "serving_requests_total", 15)
        yield url


def _query(url: str, expr: str) -> list[dict[str, Any]]:
    body = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=30).json()
    assert body["status"] == "success", f"{expr}: {body}"
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def _wait_for_samples(url: str, metric: str, samples: int, timeout: float = 120) -> None:
    """Until Prometheus holds `samples` scrapes of `metric` (a liveness bound only)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, AssertionError):
            found = _query(url, f"max(count_over_time({metric}[1m]))")
            if found and float(found[0]["value"][1]) >= samples:
                return
        time.sleep(1)
    raise AssertionError(f"Prometheus did not collect {samples} samples of {metric} within {timeout:.0f} s")


def _substitute(expr: str) -> str:
    for name, value in sorted({**VARIABLES, **GRAFANA_INTERVALS}.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unsubstituted variable in {expr}"
    return expr


def _serving_dashboard() -> dict[str, Any]:
    ctx = dashboards.DashboardContext("dev", "mlops-dev", SERVING_NS, "mlops-dev-airflow")
    return dashboards.dashboards(ctx)[dashboards.SERVING_UID]


def test_every_serving_dashboard_query_returns_data(prometheus: str) -> None:
    queries = list(dashboards.queries(_serving_dashboard()))
    assert len(queries) >= 8
    empty = []
    for title, source, expr in queries:
        assert source == dashboards.PROMETHEUS_UID, title
        result = _query(prometheus, _substitute(expr))
        values = [float(r["value"][1]) for r in result]
        if not values or all(math.isnan(v) for v in values):
            empty.append(f"{title}: {expr}")
    assert not empty, "queries without data:\n" + "\n".join(empty)


def test_every_dashboard_variable_lists_values(prometheus: str) -> None:
    variables = _serving_dashboard()["templating"]["list"]
    assert [v["name"] for v in variables] == ["namespace", "model", "alias", "version"]
    for variable in variables:
        match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["query"])
        assert match, variable["query"]
        selector, label = _substitute(match.group(1)), match.group(2)
        values = httpx.get(
            f"{prometheus}/api/v1/label/{label}/values", params={"match[]": selector}, timeout=10
        ).json()["data"]
        assert values, f"variable {variable['name']} lists nothing for {selector}"


def test_series_carry_the_model_of_their_pod_and_no_request_or_client_id(prometheus: str) -> None:
    models = {r["metric"].get("model") for r in _query(prometheus, '{job="serving"}')}
    assert models == {MODEL_SLUG}
    label_names = set(httpx.get(f"{prometheus}/api/v1/labels", timeout=10).json()["data"])
    assert not label_names & set(names.FORBIDDEN_LABELS)
    assert {"namespace", "pod", "model", "alias", "version", "status"} <= label_names


def test_the_serving_service_exposes_every_metric_the_rules_and_dashboards_use(serving: ServingProcess) -> None:
    text = httpx.get(f"{serving.base_url}/metrics", timeout=10).text
    exposed = set(re.findall(r"^# TYPE (\S+) (\w+)", text, flags=re.MULTILINE))
    families = {name for name, _ in exposed}
    for metric in names.SERVING_METRICS:
        assert {metric, metric.removesuffix("_total")} & families, f"{metric} is not exposed by the serving service"
    label_names = set(re.findall(r"[{,](\w+)=\"", text))
    assert not label_names & set(names.FORBIDDEN_LABELS)
