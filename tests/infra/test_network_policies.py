"""The NetworkPolicies of both stacks, evaluated: a small NetworkPolicy evaluator (pod labels x namespace labels x
ports, ingress at the destination and egress at the source, as Kubernetes decides) runs over the objects the
program renders, for every pair of workloads (the pods the program renders, the charts' pods by their labels, the
cluster DNS, a pod of another namespace and addresses outside the cluster), and exactly the intended pairs may
connect: the dev Postgres only from MLflow, Airflow, the bootstrap Job and the platform API, DNS from everywhere,
MLflow from Airflow, serving and the API, serving from the ingress controller, Airflow, the API and monitoring."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from harness.run import ProgramRun, run_program
from infra.network import stack_namespaces
from infra.platform import namespace_levels
from stacks.settings import StackSettings, load_settings

STACKS = ["dev", "prod"]
NAMESPACE_LABEL = "kubernetes.io/metadata.name"
Port = tuple[int, str]


@dataclass(frozen=True)
class Workload:
    """Pods that listen on `ports`: in `namespace` with `labels`, or (namespace None) an address outside."""

    name: str
    namespace: str | None
    labels: Mapping[str, str]
    ports: tuple[Port, ...]
    ip: str


# --- the evaluator -------------------------------------------------------------------------------------------------
def selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A label selector (matchLabels, matchExpressions); an empty one selects everything."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        present = key in labels
        if (
            (op == "In" and labels.get(key) not in values)
            or (op == "NotIn" and present and labels[key] in values)
            or (op == "Exists" and not present)
            or (op == "DoesNotExist" and present)
        ):
            return False
    return True


def peer_matches(peer: Mapping[str, Any], policy_namespace: str, other: Workload) -> bool:
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        ip = ipaddress.ip_address(other.ip)
        if ip not in ipaddress.ip_network(block["cidr"]):
            return False
        return not any(ip in ipaddress.ip_network(c) for c in block.get("except") or [])
    if other.namespace is None:
        return False  # selectors only ever select pods
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], {NAMESPACE_LABEL: other.namespace}):
            return False
    elif other.namespace != policy_namespace:
        return False  # a pod selector alone: the policy's own namespace
    return "podSelector" not in peer or selects(peer["podSelector"], other.labels)


def port_matches(rule_ports: list[dict[str, Any]] | None, port: Port) -> bool:
    if not rule_ports:
        return True
    for p in rule_ports:
        if p.get("protocol", "TCP") != port[1]:
            continue
        number = p.get("port")
        if number is None or (int(number) <= port[0] <= int(p.get("endPort", number))):
            return True
    return False


def direction_allows(
    policies: list[dict[str, Any]], pod: Workload, other: Workload, port: Port, direction: str
) -> bool:
    """Whether `pod`'s namespace's policies let `other` in (Ingress) or let `pod` out to `other` (Egress)."""
    if pod.namespace is None:
        return True  # outside the cluster: no NetworkPolicy
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    applying = [
        p
        for p in policies
        if p["metadata"]["namespace"] == pod.namespace
        and selects(p["spec"].get("podSelector"), pod.labels)
        and direction in (p["spec"].get("policyTypes") or ["Ingress"])
    ]
    if not applying:
        return True  # not isolated
    for policy in applying:
        for rule in policy["spec"].get(key) or []:
            peers = rule.get(peers_key)
            if (not peers or any(peer_matches(peer, pod.namespace, other) for peer in peers)) and port_matches(
                rule.get("ports"), port
            ):
                return True
    return False


def allowed(policies: list[dict[str, Any]], source: Workload, target: Workload, port: Port) -> bool:
    return direction_allows(policies, target, source, port, "Ingress") and direction_allows(
        policies, source, target, port, "Egress"
    )


# --- the workloads -------------------------------------------------------------------------------------------------
def tcp(*ports: int) -> tuple[Port, ...]:
    return tuple((p, "TCP") for p in ports)


@dataclass
class Cluster:
    s: StackSettings
    run: ProgramRun
    workloads: dict[str, Workload] = field(default_factory=dict)

    def add(self, name: str, namespace: str | None, labels: Mapping[str, str], ports: tuple[Port, ...]) -> None:
        ip = f"10.244.{len(self.workloads)}.10" if namespace is not None else f"203.0.113.{len(self.workloads)}"
        self.workloads[name] = Workload(name, namespace, dict(labels), ports, ip)

    def external(self, name: str, ip: str, ports: tuple[Port, ...]) -> None:
        self.workloads[name] = Workload(name, None, {}, ports, ip)

    @property
    def ours(self) -> set[str]:
        namespaces = set(stack_namespaces(self.s, namespace_levels(self.s)))
        return {n for n, w in self.workloads.items() if w.namespace in namespaces}

    def policies(self) -> list[dict[str, Any]]:
        return [r.manifest for r in self.run.kubernetes_objects() if r.manifest["kind"] == "NetworkPolicy"]


def rendered_pods(run: ProgramRun) -> Iterable[tuple[str, str, dict[str, str], tuple[Port, ...]]]:
    """(name, namespace, pod labels, listening ports) of every pod template the program renders."""
    for reg in run.kubernetes_objects():
        m = reg.manifest
        if m["kind"] not in ("Deployment", "StatefulSet", "Job", "CronJob"):
            continue
        template = m["spec"]["jobTemplate"]["spec"]["template"] if m["kind"] == "CronJob" else m["spec"]["template"]
        ports = tuple(
            (int(p["containerPort"]), p.get("protocol", "TCP"))
            for c in template["spec"]["containers"]
            for p in c.get("ports") or []
        )
        name = m["metadata"]["name"]
        if m["kind"] == "Job" and name.rsplit("-", 1)[-1].isalnum() and name.startswith(("db-bootstrap-", "prepare-")):
            name = name.rsplit("-", 1)[0]  # the inputs' digest
        yield name, m["metadata"]["namespace"], template["metadata"]["labels"], ports


def cluster(stack: str) -> Cluster:
    from harness.run import read_stack_file

    cfg = read_stack_file(stack)
    s = load_settings(stack, cfg.config, set(cfg.secret_keys), cfg.source)
    c = Cluster(s, run_program(stack))
    for name, namespace, labels, ports in rendered_pods(c.run):
        c.add(name, namespace, labels, ports)
    ns = s.namespace
    airflow = {"tier": "airflow", "release": "airflow"}
    # the charts' pods, by the labels their templates give them
    c.add("traefik", s.ingress_namespace, {"app.kubernetes.io/name": "traefik"}, tcp(8000, 8443, 9100))
    c.add(
        "mlflow", ns("mlflow"), {"app.kubernetes.io/name": "mlflow", "app.kubernetes.io/instance": "mlflow"}, tcp(5000)
    )
    c.add("airflow-api-server", ns("airflow"), {**airflow, "component": "api-server"}, tcp(8080))
    c.add("airflow-scheduler", ns("airflow"), {**airflow, "component": "scheduler"}, tcp(8793))
    c.add("airflow-statsd", ns("airflow"), {**airflow, "component": "statsd"}, ((9125, "UDP"), (9102, "TCP")))
    c.add("airflow-task", ns("airflow"), {**airflow, "component": "worker", "kubernetes_executor": "True"}, ())
    cm = s.ingress.cert_manager_namespace
    c.add("cert-manager", cm, {"app.kubernetes.io/name": "cert-manager"}, tcp(9402))
    c.add("cert-manager-webhook", cm, {"app.kubernetes.io/name": "webhook"}, tcp(10250))
    c.add("prometheus", ns("monitoring"), {"app.kubernetes.io/name": "prometheus"}, tcp(9090))
    c.add("grafana", ns("monitoring"), {"app.kubernetes.io/name": "grafana"}, tcp(3000))
    c.add("prometheus-operator", ns("monitoring"), {"app": "kube-prometheus-stack-operator"}, tcp(10250))
    if s.ingress.tls_issuer == "acme":  # HTTP-01 solver pods, started in the namespace of each certificate
        for service in ("mlflow", "airflow", "serving"):
            solver = {"acme.cert-manager.io/http01-solver": "true"}
            c.add(f"acme-solver-{service}", ns(service), solver, tcp(8089))
    # the rest of the world
    c.add("kube-dns", "kube-system", {"k8s-app": "kube-dns"}, ((53, "UDP"), (53, "TCP")))
    c.add("intruder", "default", {"app": "intruder"}, tcp(8080))
    c.external("internet-client", "198.51.100.7", ())
    c.external("s3", "52.95.0.10", tcp(443))
    c.external("kube-apiserver", "172.20.0.1", tcp(443, 6443))
    c.external("github", "140.82.112.3", tcp(22, 443))
    if s.database.mode == "rds":
        c.external("rds", "10.40.5.5", tcp(5432))
    return c


# --- what is intended --------------------------------------------------------------------------------------------
Pair = tuple[str, str, str]


def intended(c: Cluster) -> set[Pair]:
    """Every (source, target, port/protocol) meant to connect, written from the platform's needs, not its code."""
    s, w = c.s, c.workloads
    pairs: set[Pair] = set()

    def allow(sources: Iterable[str], targets: Iterable[str], ports: Iterable[int] | None = None) -> None:
        wanted = set(ports) if ports is not None else None
        for src in sources:
            for dst in targets:
                for number, protocol in w[dst].ports:
                    if src != dst and (wanted is None or number in wanted):
                        pairs.add((src, dst, f"{number}/{protocol}"))

    def in_ns(service: str) -> list[str]:
        return [n for n, x in w.items() if x.namespace == s.namespace(service)]

    ours = c.ours
    not_ours = [n for n in w if n not in ours]
    models = [n for n in w if n.startswith("model-")]
    airflow, mlflow_ns, monitoring = in_ns("airflow"), in_ns("mlflow"), in_ns("monitoring")
    api = ["platform-api"] if "platform-api" in w else []
    cert_manager = ["cert-manager", "cert-manager-webhook"]
    solvers = [n for n in w if n.startswith("acme-solver-")]
    database = ["rds"] if s.database.mode == "rds" else ["postgres"]
    outside = ["s3", "kube-apiserver", "github"]

    allow(ours, ["kube-dns"])  # DNS from every pod of the stack
    unrestricted = not_ours + monitoring  # whoever may go out at all (the stack's own pods only where allowed)
    allow(unrestricted, ["traefik"], [8000, 8443])  # clients, through its LoadBalancer or NodePort
    allow(unrestricted, ["cert-manager-webhook", "prometheus-operator"], [10250])  # webhooks the API server calls
    allow(["traefik"], models, [8000])
    allow(["traefik"], ["mlflow"], [5000])
    allow(["traefik"], ["airflow-api-server"], [8080])
    allow(["traefik"], api, [8080])
    allow(["traefik"], ["grafana"], [3000])
    allow(["traefik"], solvers, [8089])
    allow(airflow + api + monitoring, models, [8000])  # reload and verify; readiness; scrapes
    allow(mlflow_ns + airflow + models + api, ["mlflow"], [5000])
    allow(mlflow_ns + airflow + api + ["db-bootstrap"], database, [5432])
    allow(api, ["airflow-api-server"], [8080])
    allow(airflow, airflow)  # Airflow's components and task pods among themselves
    allow(mlflow_ns + airflow + models + ["traefik"] + cert_manager, outside, [443, 6443])
    if not s.airflow.git_repo.startswith("https://"):
        allow(airflow, ["github"], [22])
    allow(monitoring, monitoring)
    allow(monitoring, not_ours)  # Prometheus and friends reach out anywhere...
    allow(monitoring, ["airflow-statsd"], [9102])  # ...and are let in where they scrape
    allow(monitoring, ["traefik"], [9100])
    allow(monitoring, ["cert-manager"], [9402])
    return pairs


def evaluated(c: Cluster) -> set[Pair]:
    policies, w, ours = c.policies(), c.workloads, c.ours
    pairs: set[Pair] = set()
    for src in w.values():
        for dst in w.values():
            if src.name == dst.name or (src.name not in ours and dst.name not in ours):
                continue  # only pairs the stack's policies may decide
            for port in dst.ports:
                if allowed(policies, src, dst, port):
                    pairs.add((src.name, dst.name, f"{port[0]}/{port[1]}"))
    return pairs


@pytest.fixture(scope="module")
def clusters() -> dict[str, Cluster]:
    return {stack: cluster(stack) for stack in STACKS}


@pytest.mark.parametrize("stack", STACKS)
def test_exactly_the_intended_pairs_may_connect(stack: str, clusters: dict[str, Cluster]) -> None:
    c = clusters[stack]
    assert {"postgres", "db-bootstrap"} <= set(c.workloads) if stack == "dev" else "rds" in c.workloads
    actual, expected = evaluated(c), intended(c)
    assert sorted(actual - expected) == [], "allowed but not intended"
    assert sorted(expected - actual) == [], "intended but denied"


def test_the_dev_database_admits_only_its_clients(clusters: dict[str, Cluster]) -> None:
    c = clusters["dev"]
    clients = {src for src, dst, port in evaluated(c) if dst == "postgres" and port == "5432/TCP"}
    airflow = {n for n, w in c.workloads.items() if w.namespace == c.s.namespace("airflow")}
    assert clients == {"mlflow", "mlflow-client-user", "db-bootstrap", "platform-api"} | airflow
    assert {"model-iris-classifier", "intruder", "prometheus", "traefik", "internet-client"}.isdisjoint(clients)


@pytest.mark.parametrize("stack", STACKS)
def test_every_namespace_of_the_stack_denies_by_default(stack: str, clusters: dict[str, Cluster]) -> None:
    c = clusters[stack]
    namespaces = stack_namespaces(c.s, namespace_levels(c.s))
    created = {o.manifest["metadata"]["name"] for o in c.run.of_type("kubernetes:core/v1:Namespace")}
    assert set(namespaces) == created, "every namespace the program creates, and only those"
    denies = {
        p["metadata"]["namespace"]
        for p in c.policies()
        if p["metadata"]["name"] == "default-deny"
        and p["spec"]["podSelector"] == {}
        and p["spec"]["policyTypes"] == ["Ingress", "Egress"]
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    }
    assert denies == created
    for reg in (r for r in c.run.kubernetes_objects() if r.manifest["metadata"]["name"] == "default-deny"):
        ns = reg.manifest["metadata"]["namespace"]
        allows = [
            r.urn
            for r in c.run.kubernetes_objects()
            if r.manifest["kind"] == "NetworkPolicy"
            and r.manifest["metadata"]["namespace"] == ns
            and r.manifest["metadata"]["name"] != "default-deny"
            and r.parent == reg.parent
        ]
        assert set(allows) <= set(reg.dependencies), f"{ns}: the deny comes after the allows"


def test_the_evaluator_sees_what_a_missing_deny_would_open(clusters: dict[str, Cluster]) -> None:
    """Not vacuous: without the data namespace's policies, any pod reaches Postgres; a policy that admits a pod
    selector alone admits only pods of its own namespace."""
    c = clusters["dev"]
    postgres, intruder = c.workloads["postgres"], c.workloads["intruder"]
    kept = [p for p in c.policies() if p["metadata"]["namespace"] != postgres.namespace]
    assert not allowed(c.policies(), intruder, postgres, (5432, "TCP"))
    assert direction_allows(kept, postgres, intruder, (5432, "TCP"), "Ingress")
    same_namespace_only = {
        "metadata": {"namespace": postgres.namespace},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"from": [{"podSelector": {}}]}]},
    }
    assert not direction_allows([same_namespace_only], postgres, intruder, (5432, "TCP"), "Ingress")
    assert direction_allows([same_namespace_only], postgres, c.workloads["db-bootstrap"], (5432, "TCP"), "Ingress")


def test_switched_off_the_stack_renders_no_network_policy() -> None:
    run = run_program("dev", overrides={"network.policies": "false"})
    policies = [r for r in run.kubernetes_objects() if r.manifest["kind"] == "NetworkPolicy"]
    assert not [r for r in policies if r.manifest["metadata"]["name"] == "default-deny"]
