"""The V2 gRPC service of a model's serving on Kubernetes, on the objects the ServingService renders under mocks: the
`grpc` port (8081, the contract's gRPC port variable) on the pod and on the Service with appProtocol h2c; the Traefik
IngressRoute (strictly valid against its CRD) that routes only `/inference.GRPCInferenceService/` on the model's host,
on the TLS entry point with the model's certificate, h2c to that port, behind the model's rate limit, and only when
the controller is the stack's Traefik; the probes and the scrapes stay on the REST port."""

from __future__ import annotations

import re
from typing import Any

import pytest

from components import ingress
from components.serving import GRPC_PATH_PREFIX, grpc_route_spec
from harness import checks
from harness.run import ProgramRun
from observability import scrape
from services.common import contract
from tests.components.test_serving import build, one

MODEL = "iris-classifier"
# The full method paths a V2 gRPC client calls (KServe's grpc_predict_v2.proto, package `inference`).
GRPC_METHODS = ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer")


def grpc_port(ports: list[dict[str, Any]]) -> dict[str, Any]:
    (port,) = [p for p in ports if p["name"] == "grpc"]
    return port


def container(run: ProgramRun) -> dict[str, Any]:
    (c,) = one(run, "Deployment")["spec"]["template"]["spec"]["containers"]
    return c


def registered(run: ProgramRun) -> dict[str, Any]:
    component = next(r for r in run.registrations if r.type == "mlops:platform:ServingService")
    assert component.registered_outputs is not None
    return component.registered_outputs


def traefik_path_prefix_matches(match: str, host: str, path: str) -> bool:
    """Traefik's `Host(`h`) && PathPrefix(`p`)` rule, read literally (the only form the route uses)."""
    rule = re.fullmatch(r"Host\(`([^`]+)`\) && PathPrefix\(`([^`]+)`\)", match)
    assert rule is not None, f"unexpected rule {match!r}"
    return rule.group(1) == host and path.startswith(rule.group(2))


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_pod_and_the_service_carry_the_grpc_port_as_h2c(stack: str) -> None:
    run = build(stack)
    c = container(run)
    assert grpc_port(c["ports"]) == {"name": "grpc", "containerPort": contract.SERVING_GRPC_PORT, "protocol": "TCP"}
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env[contract.SERVING_GRPC_PORT_VAR.name] == str(contract.SERVING_GRPC_PORT) == "8081"
    assert env[contract.SERVING_PORT_VAR.name] == str(contract.SERVING_PORT)
    service = one(run, "Service")
    assert grpc_port(service["spec"]["ports"]) == {
        "name": "grpc",
        "port": contract.SERVING_GRPC_PORT,
        "targetPort": "grpc",
        "protocol": "TCP",
        "appProtocol": "kubernetes.io/h2c",
    }
    assert {p["name"] for p in service["spec"]["ports"]} == {"http", "grpc"}
    assert checks.kubernetes_schema_problems(run, ["1.30", "1.37"]) == []


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_grpc_route_is_h2c_on_the_models_host_with_its_certificate_and_rate_limit(stack: str) -> None:
    run = build(stack)
    route, ing, service, middleware = (one(run, k) for k in ("IngressRoute", "Ingress", "Service", "Middleware"))
    assert checks.custom_resource_problems(run) == []  # strictly against Traefik's CRD
    # the route reaches the Service's h2c port in h2c, the Ingress its HTTP/1.1 port, both ports are the pods'
    assert checks.route_problems(run) == []
    backends = {(b.service, b.port, b.scheme) for b in checks.route_backends(run)}
    assert backends == {("model-iris-classifier", "http", None), ("model-iris-classifier", "grpc", "h2c")}
    assert route["apiVersion"] == "traefik.io/v1alpha1"
    assert route["metadata"]["namespace"] == service["metadata"]["namespace"]
    (rule,) = ing["spec"]["rules"]
    host = rule["host"]
    spec = route["spec"]
    assert spec["entryPoints"] == [ingress.WEBSECURE]
    (tls,) = ing["spec"]["tls"]
    assert spec["tls"] == {"secretName": tls["secretName"]} and tls["hosts"] == [host]
    (r,) = spec["routes"]
    assert r["match"] == f"Host(`{host}`) && PathPrefix(`/inference.GRPCInferenceService/`)"
    (backend,) = r["services"]
    assert backend == {"name": service["metadata"]["name"], "port": "grpc", "scheme": "h2c"}
    assert grpc_port(service["spec"]["ports"])["appProtocol"] == "kubernetes.io/h2c"
    assert r["middlewares"] == [{"name": middleware["metadata"]["name"]}]
    # it waits for its Middleware (and, through the component's options, for Traefik and its CRDs)
    reg = next(x for x in run.kubernetes_objects() if x.manifest["kind"] == "IngressRoute")
    mw = next(x for x in run.kubernetes_objects() if x.manifest["kind"] == "Middleware")
    assert mw.urn in reg.dependencies


def test_the_route_takes_every_v2_grpc_call_and_nothing_of_rest() -> None:
    run = build("dev")
    route, ing = one(run, "IngressRoute"), one(run, "Ingress")
    (rule,) = ing["spec"]["rules"]
    host = rule["host"]
    match = route["spec"]["routes"][0]["match"]
    for method in GRPC_METHODS:
        assert traefik_path_prefix_matches(match, host, f"/inference.GRPCInferenceService/{method}")
        assert not traefik_path_prefix_matches(match, "other.example.com", f"/inference.GRPCInferenceService/{method}")
    rest = [p["path"] for p in rule["http"]["paths"]]
    assert rest and not [p for p in rest if traefik_path_prefix_matches(match, host, p)]
    assert not [p for p in rest if p.startswith(GRPC_PATH_PREFIX.rstrip("/"))], "gRPC is not on the HTTP/1 Ingress"
    assert {p["backend"]["service"]["port"]["name"] for p in rule["http"]["paths"]} == {"http"}


def test_the_route_spec_without_a_rate_limit_has_no_middleware() -> None:
    spec = grpc_route_spec("m.example.com", "model-m", "model-m-tls")
    assert "middlewares" not in spec["routes"][0]
    assert spec["routes"][0]["services"] == [{"name": "model-m", "port": "grpc", "scheme": "h2c"}]


def test_without_the_stacks_traefik_the_grpc_service_is_reachable_inside_the_cluster_only() -> None:
    run = build("dev", traefik=False)
    kinds = {r.manifest["kind"] for r in run.kubernetes_objects()}
    assert "IngressRoute" not in kinds and "Middleware" not in kinds
    assert grpc_port(one(run, "Service")["spec"]["ports"])["port"] == contract.SERVING_GRPC_PORT
    outputs = registered(run)
    assert outputs.get("grpc_target") is None
    assert outputs["internal_grpc_target"] == "model-iris-classifier.mlops-dev-serving.svc.cluster.local:8081"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_component_exports_the_grpc_targets(stack: str) -> None:
    run = build(stack)
    outputs = registered(run)
    host = one(run, "Ingress")["spec"]["rules"][0]["host"]
    assert outputs["grpc_target"] == f"{host}:443"
    assert outputs["internal_grpc_target"] == f"model-iris-classifier.mlops-{stack}-serving.svc.cluster.local:8081"


def test_probes_stay_http_on_the_rest_port() -> None:
    """The gRPC service implements V2's ServerLive/ServerReady, not grpc.health.v1: a kubelet `grpc` probe would fail
    on it. The HTTP probes cover the process that serves both ports."""
    c = container(build("prod"))
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert set(c[probe]) - {"periodSeconds", "failureThreshold"} == {"httpGet"}, probe
        assert c[probe]["httpGet"]["port"] == "http", probe


def test_nothing_scrapes_the_grpc_port() -> None:
    """Metrics stay on REST's /metrics (same process): the serving PodMonitor names the container's `http` port,
    the pod's scrape annotations the REST port, and no monitor of the stack names `grpc`."""
    run = build("dev")
    c = container(run)
    by_name = {p["name"]: p["containerPort"] for p in c["ports"]}
    targets = scrape.ScrapeTargets("serving", "mlflow", "airflow", "cert-manager", "ingress")
    monitors = scrape.platform_monitors(targets)
    (serving,) = [m for m in monitors if m.name == "serving"]
    assert by_name[serving.port] == contract.SERVING_PORT != contract.SERVING_GRPC_PORT
    assert "grpc" not in {m.port for m in monitors}
    annotations = one(run, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(contract.SERVING_PORT)
