"""The stack's network flows: what may connect to what, for the NetworkPolicies (components/network_policies.py).

Every namespace the program creates denies everything by default and resolves DNS; these flows are then admitted
(ports are the pods' own, behind their Services; `make docs` prints this list in docs/configuration.md):

- the ingress controller (Traefik) on 8000 and 8443 from anywhere (its LoadBalancer or NodePort Service);
- serving pods on 8000 (REST) from the ingress controller, Airflow (reload, verify), the API (readiness) and
  monitoring; on 8081 (the V2 gRPC service) from the callers of predictions only: the ingress controller (h2c),
  Airflow and the API (monitoring scrapes REST's /metrics, never the gRPC port);
- MLflow on 5000 from the ingress controller, MLflow's own Jobs, Airflow, serving and the API;
- Airflow's API server on 8080 from the ingress controller and the API; Airflow's pods among themselves;
- Postgres on 5432 (dev, in-cluster) from MLflow, Airflow, the API and the bootstrap Job only (prod: the same
  clients to `network.databaseCidrs`, the RDS subnets; external: to `database.cidr` on `database.port`);
- the API on 8080 from the ingress controller;
- with `artifacts.mode: s3Compatible`: MLflow, Airflow and monitoring (Loki) to `artifacts.cidr` on the endpoint's port;
- HTTPS (443, 6443) to `network.egressCidrs` from MLflow and Airflow (S3, git, Slack, the Kubernetes API), serving
  (Slack, OIDC issuers), the ingress controller and cert-manager (the Kubernetes API, ACME); SSH (22, or the port of
  an ssh:// URL) from Airflow to `network.egressCidrs` when git-sync's or a training source's repository is SSH;
- cert-manager's webhook on 10250 from anywhere (the Kubernetes API server), ACME HTTP-01 solver pods on 8089 from
  the ingress controller (tlsIssuer acme);
- monitoring: among itself, Grafana (3000) from the ingress controller, the Prometheus operator's webhook (10250)
  from anywhere (the Kubernetes API server), and out to any pod and address (scrapes).

The storage namespace (NFS preparation Jobs) admits and reaches nothing: NFS is mounted by the kubelet.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

import pulumi

from components import airflow, ingress, mlflow, serving, tls
from components.database import BOOTSTRAP, SERVER
from components.namespaces import NamespaceRef
from components.naming import APP_NAME
from components.network_policies import ANY_NAMESPACE, Flow, NetworkPolicies, NetworkPoliciesArgs, Peer
from services.common import contract
from stacks.settings import StackSettings

INTERNET = ("0.0.0.0/0", "::/0")
HTTPS_OUT = (443, 6443)  # HTTPS, and the Kubernetes API server's port on kubeadm-style clusters
GRAFANA_PORT = 3000
OPERATOR_WEBHOOK_PORT = 10250  # kube-prometheus-stack's operator serves its admission webhook there
# Namespaces with an Ingress (their ACME HTTP-01 solver pods must be reachable from the ingress controller).
WITH_INGRESS = ("mlflow", "airflow", "serving", "api", "monitoring")


def stack_namespaces(s: StackSettings, services: Collection[str]) -> list[str]:
    """Every namespace the program creates: one per service, and cert-manager's when it installs it."""
    names = [s.namespace(service) for service in services]
    if s.ingress.install_cert_manager:
        names.append(s.ingress.cert_manager_namespace)
    return names


def flows(s: StackSettings, services: Collection[str]) -> list[Flow]:
    """The flows of the stack whose service namespaces are `services` (keys of infra.platform.namespace_levels)."""
    peers = _Peers(s, services)
    return [*_service_flows(peers), *_egress_flows(peers), *_tls_flows(peers), *_monitoring_flows(peers)]


@dataclass(frozen=True)
class _Peers:
    """The peers the flows of one stack name; the optional ones are None when the stack does not run them."""

    s: StackSettings
    services: Collection[str]

    def ns(self, service: str, pods: dict[str, str] | None = None) -> Peer:
        return Peer(self.s.namespace(service), pods)

    @property
    def controller(self) -> Peer:
        return Peer(self.s.ingress_namespace)

    @property
    def api(self) -> Peer | None:
        return self.ns("api") if "api" in self.services else None

    @property
    def monitoring(self) -> Peer | None:
        return self.ns("monitoring") if "monitoring" in self.services else None

    @property
    def cert_manager(self) -> Peer | None:
        return Peer(self.s.ingress.cert_manager_namespace) if self.s.ingress.install_cert_manager else None

    @property
    def serving_pods(self) -> Peer:
        return self.ns("serving", {APP_NAME: serving.APP})


def _some(*peers: Peer | None) -> list[Peer]:
    return [p for p in peers if p is not None]


def _service_flows(p: _Peers) -> list[Flow]:
    """Into the ingress controller, serving, MLflow, Airflow, Postgres (or out to RDS) and the API."""
    s, controller, api = p.s, p.controller, p.api
    out = []
    if s.ingress.controller == "traefik":
        out.append(Flow("web", controller, [Peer(cidrs=INTERNET)], ingress.TRAEFIK_PORTS, "clients"))
    out += [
        Flow("serving", p.serving_pods, _some(controller, p.ns("airflow"), api, p.monitoring), [contract.SERVING_PORT]),
        Flow(
            "serving-grpc",
            p.serving_pods,
            _some(controller, p.ns("airflow"), api),
            [contract.SERVING_GRPC_PORT],
            "V2 gRPC: the callers of predictions, not monitoring",
        ),
        Flow(
            "mlflow",
            p.ns("mlflow"),
            _some(controller, p.ns("mlflow"), p.ns("airflow"), p.serving_pods, api),
            [mlflow.CONTAINER_PORT],
        ),
        Flow("airflow", p.ns("airflow"), _some(controller, api), [airflow.API_PORT], "UI, REST API"),
        Flow("airflow-internal", p.ns("airflow"), [p.ns("airflow")], (), "its components and task pods"),
    ]
    db_clients = _some(p.ns("mlflow"), p.ns("airflow"), api, p.ns("data", {APP_NAME: BOOTSTRAP}))
    if s.database.mode == "in-cluster":
        out.append(Flow("postgres", p.ns("data", {APP_NAME: SERVER}), db_clients, [5432]))
    else:
        where = "RDS" if s.database.mode == "rds" else "the external server"
        out.append(Flow("postgres", Peer(cidrs=s.database_egress_cidrs), db_clients, [s.database_port], where))
    if api is not None:
        out.append(Flow("api", api, [controller], [contract.API_PORT]))
    return out


def _egress_flows(p: _Peers) -> list[Flow]:
    """HTTPS out to `network.egressCidrs`, and SSH for git when a repository is SSH."""
    s = p.s
    callers_out = _some(p.ns("mlflow"), p.ns("airflow"), p.serving_pods, p.controller, p.cert_manager)
    out = [Flow("https-out", Peer(cidrs=s.network.egress_cidrs), callers_out, HTTPS_OUT)]
    if s.artifacts.s3_compatible and s.artifacts.cidr:  # the S3-compatible store, on its endpoint's port
        store_clients = _some(p.ns("mlflow"), p.ns("airflow"), p.monitoring)
        port = [s.artifacts.endpoint_port]
        out.append(Flow("s3-store", Peer(cidrs=(s.artifacts.cidr,)), store_clients, port, "the S3-compatible store"))
    if s.git_ssh_ports:  # git-sync's and the training sources' SSH repositories
        out.append(Flow("git-ssh-out", Peer(cidrs=s.network.egress_cidrs), [p.ns("airflow")], s.git_ssh_ports, "git"))
    return out


def _tls_flows(p: _Peers) -> list[Flow]:
    """cert-manager's webhook, and with tlsIssuer acme its HTTP-01 self-check and the solver pods."""
    s, cert_manager = p.s, p.cert_manager
    out = []
    if cert_manager is not None:
        webhook = Peer(s.ingress.cert_manager_namespace, tls.WEBHOOK_PODS)
        out.append(Flow("cert-manager-webhook", webhook, [Peer(cidrs=INTERNET)], [tls.WEBHOOK_PORT]))
    if s.ingress.tls_issuer != "acme":
        return out
    if cert_manager is not None:  # the HTTP-01 self-check fetches the challenge from the public host
        out.append(Flow("acme-self-check", Peer(cidrs=s.network.egress_cidrs), [cert_manager], [80]))
    for service in (svc for svc in WITH_INGRESS if svc in p.services):
        solver = p.ns(service, tls.ACME_SOLVER_PODS)
        out.append(Flow(f"acme-solver-{service}", solver, [p.controller], [tls.ACME_SOLVER_PORT]))
    return out


def _monitoring_flows(p: _Peers) -> list[Flow]:
    """Monitoring among itself, its webhook and Grafana, and its scrapes (none without monitoring)."""
    monitoring, controller = p.monitoring, p.controller
    if monitoring is None:
        return []
    out = [
        Flow("monitoring-internal", monitoring, [monitoring]),
        # the Prometheus operator's admission webhook (PrometheusRule checks), called by the API server
        Flow("monitoring-webhook", monitoring, [Peer(cidrs=INTERNET)], [OPERATOR_WEBHOOK_PORT]),
        Flow("grafana", monitoring, [controller], [GRAFANA_PORT]),
        Flow("scrape", Peer(ANY_NAMESPACE), [monitoring], (), "Prometheus scrapes any pod"),
        Flow("monitoring-out", Peer(cidrs=INTERNET), [monitoring], (), "nodes, the API server, S3, Slack"),
        Flow("airflow-metrics", p.ns("airflow"), [monitoring], [airflow.STATSD_EXPORTER_PORT]),
    ]
    if p.s.ingress.controller == "traefik":
        out.append(Flow("traefik-metrics", controller, [monitoring], [ingress.TRAEFIK_METRICS_PORT]))
    if p.cert_manager is not None:
        out.append(Flow("cert-manager-metrics", p.cert_manager, [monitoring], [tls.METRICS_PORT]))
    return out


def build_network(
    s: StackSettings,
    services: Mapping[str, NamespaceRef],
    cert_manager: NamespaceRef,
    opts: pulumi.ResourceOptions,
) -> NetworkPolicies | None:
    """The stack's NetworkPolicies (None when `network.policies` is off), in the service namespaces (service -> its
    namespace) and cert-manager's (when the stack installs it): each policy waits for its Namespace."""
    if not s.network.policies:
        return None
    refs = {ref.name: ref for ref in (*services.values(), cert_manager)}
    return NetworkPolicies(
        "network",
        NetworkPoliciesArgs(namespaces=[refs[n] for n in stack_namespaces(s, services)], flows=flows(s, services)),
        opts=opts,
    )
