"""Apply order, checked from the dependencies the engine receives (`Registration.dependencies`, as recorded by
`harness.mocks.RecordingMonitor`), for what a real `pulumi up` and `pulumi destroy` do with them.

The engine creates a resource after its dependencies only (its `depends_on` and every resource whose Output it
takes), deletes in the reverse order, and a child does not inherit its parent's `depends_on`. Deleting a Namespace
deletes everything in it, protected or not. So:

- `namespace_problems`: every namespaced object (a Kubernetes object with `metadata.namespace`, a Helm release
  with `namespace`) waits, transitively, for its Namespace when the stack creates it; a Helm release also for every
  other Namespace of the stack that its values name (a chart may create objects there: Alloy's Roles).
- `crd_problems`: every custom resource waits for the Helm release that installs its CRD (`CRD_CHARTS`) when the
  stack installs that chart; a custom resource of a group no chart is declared for is a problem.
- `job_problems`: every Job and CronJob waits for what it works on (`works_on`): the Secrets, ConfigMaps,
  PersistentVolumeClaims and ServiceAccount its pod refers to; the in-cluster Services its pod spec names
  (`<service>.<namespace>.svc...`: the Service and the workloads it selects, or the Helm release that renders
  it); and the cloud resources whose address its pod spec holds (an RDS instance).
- `deletion_problems`: simulates `pulumi destroy --exclude-protected` (protected resources and everything they
  depend on, transitively, are kept, as `pulumi destroy` computes it; the rest is deleted) and the replacement of
  each Namespace the stack creates (the engine replaces with it the objects whose `metadata`, or a release's
  `namespace`, takes its Output, and refuses when one of those is protected). Nothing deleted may take a protected
  object with it (`takes`): a Namespace takes every object in it and the claims of its StatefulSets'
  volumeClaimTemplates (protected when their StatefulSet is), a PersistentVolume the claim bound to it.

`problems` runs the four; `harness.checks.all_problems` includes it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from harness.checks import WORKLOAD_KINDS, crd_objects, pod_refs, pod_spec
from harness.mocks import Registration, reveal
from harness.run import ProgramRun

NAMESPACE_TYPE = "kubernetes:core/v1:Namespace"
JOB_KINDS = ("Job", "CronJob")
# The chart whose Helm release installs the CRDs of an API group (what ../shared/crds holds, per chart).
CRD_CHARTS = {
    "cert-manager.io": "cert-manager",
    "acme.cert-manager.io": "cert-manager",
    "traefik.io": "traefik",
    "monitoring.coreos.com": "kube-prometheus-stack",
}
# Output fields holding the address of a cloud resource a pod may talk to (an RDS instance's `address`).
ADDRESS_OUTPUTS = ("address",)
_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
SERVICE_DNS = re.compile(rf"(?<![-a-z0-9.])({_LABEL})\.({_LABEL})\.svc(?:\.cluster\.local)?(?![-a-z0-9])")


def is_release(reg: Registration) -> bool:
    return reg.type.startswith("kubernetes:helm.sh/") and reg.type.endswith(":Release")


def kind_of(reg: Registration) -> str:
    return "Release" if is_release(reg) else str(reg.manifest.get("kind", reg.type.rsplit(":", 1)[-1]))


def namespace_of(reg: Registration) -> str | None:
    """Where a Kubernetes object or a Helm release lives; None for anything else (and cluster-scoped objects)."""
    if is_release(reg):
        ns = reveal(reg.inputs).get("namespace")
        return str(ns) if ns else "default"
    if not reg.is_kubernetes_object:
        return None
    ns = (reg.manifest.get("metadata") or {}).get("namespace")
    return str(ns) if ns else None


def name_of(reg: Registration) -> str:
    if is_release(reg):
        return str(reveal(reg.inputs).get("name") or reg.name)
    return str((reg.manifest.get("metadata") or {}).get("name") or reg.name)


def describe(reg: Registration) -> str:
    ns = namespace_of(reg)
    return f"{kind_of(reg)} {f'{ns}/' if ns else ''}{name_of(reg)} ({reg.name})"


def chart_of(reg: Registration) -> str:
    return str(reveal(reg.inputs).get("chart") or "").rsplit("/", 1)[-1]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _selects(selector: dict[str, Any], reg: Registration) -> bool:
    labels = ((reg.manifest.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _template_claims(reg: Registration) -> list[str]:
    """The claims a StatefulSet's volumeClaimTemplates make (first replica: `<template>-<statefulset>-0`)."""
    spec = reg.manifest.get("spec") or {}
    return [f"{t['metadata']['name']}-{name_of(reg)}-0" for t in spec.get("volumeClaimTemplates") or []]


@dataclass(frozen=True)
class Victim:
    """Something a deletion destroys: a registration, or a claim the cluster made for a StatefulSet."""

    what: str
    protected: bool


class Graph:
    """The run's resources and their dependencies, as the engine orders them."""

    def __init__(self, run: ProgramRun) -> None:
        self.run = run
        self.by_urn = run.by_urn()
        self.children: dict[str, list[str]] = {}
        for reg in run.registrations:
            if reg.parent:
                self.children.setdefault(reg.parent, []).append(reg.urn)
        self.namespaces = {name_of(r): r for r in run.registrations if r.type == NAMESPACE_TYPE}
        self._objects = {(kind_of(r), namespace_of(r), name_of(r)): r for r in run.kubernetes_objects()}
        self._waits: dict[str, frozenset[str]] = {}

    def _expand(self, urn: str) -> Iterator[str]:
        """A dependency on a component is one on its children (as the SDK and the engine read it)."""
        reg = self.by_urn.get(urn)
        if reg is None:
            return
        yield urn
        if not reg.custom:
            for child in self.children.get(urn, []):
                yield from self._expand(child)

    def waits_for(self, urn: str) -> frozenset[str]:
        """Everything `urn` is created after, directly or not."""
        if urn not in self._waits:
            seen: set[str] = set()
            todo = [d for dep in self.by_urn[urn].dependencies for d in self._expand(dep)]
            while todo:
                dep = todo.pop()
                if dep not in seen:
                    seen.add(dep)
                    todo += [d for nxt in self.by_urn[dep].dependencies for d in self._expand(nxt)]
            self._waits[urn] = frozenset(seen)
        return self._waits[urn]

    def kept_with(self, urn: str) -> set[str]:
        """What `pulumi destroy --exclude-protected` keeps for a protected `urn`: itself and, transitively, its
        dependencies, parent and provider."""
        kept: set[str] = set()
        todo = [urn]
        while todo:
            cur = todo.pop()
            if cur in kept or cur not in self.by_urn:
                continue
            kept.add(cur)
            reg = self.by_urn[cur]
            todo += [d for dep in reg.dependencies for d in self._expand(dep)]
            todo += [reg.parent] if reg.parent else []
            todo += [reg.provider.rsplit("::", 1)[0]] if reg.provider else []  # `<provider urn>::<id>`
        return kept

    def waits(self, reg: Registration, target: Registration) -> bool:
        return target.urn in self.waits_for(reg.urn)

    # --- what lives where ------------------------------------------------------------------------------------------
    def in_namespace(self, namespace: str) -> list[Registration]:
        return [r for r in self.run.registrations if r.type != NAMESPACE_TYPE and namespace_of(r) == namespace]

    def takes(self, reg: Registration) -> list[Victim]:
        """What deleting `reg` destroys besides itself (nothing when it is retained on delete)."""
        if reg.retain_on_delete:
            return []
        kind = kind_of(reg)
        if kind == "Namespace":
            out = []
            for obj in self.in_namespace(name_of(reg)):
                out.append(Victim(describe(obj), obj.protect))
                if kind_of(obj) == "StatefulSet":
                    claims = [
                        f"PersistentVolumeClaim {name_of(reg)}/{c} of {describe(obj)}" for c in _template_claims(obj)
                    ]
                    out += [Victim(claim, obj.protect) for claim in claims]
            return out
        if kind == "PersistentVolume":
            ref = (reg.manifest.get("spec") or {}).get("claimRef") or {}
            claim = self._objects.get(("PersistentVolumeClaim", ref.get("namespace"), str(ref.get("name"))))
            return [Victim(describe(claim), claim.protect)] if claim is not None else []
        return []

    # --- what a Job works on -----------------------------------------------------------------------------------
    def service_targets(self, service: str, namespace: str) -> list[Registration]:
        """The Service `service` in `namespace` and the workloads it selects, or the Helm release rendering it
        (a chart names its Services `<release>` or `<release>-...`)."""
        found = self._objects.get(("Service", namespace, service))
        if found is not None:
            selector = (found.manifest.get("spec") or {}).get("selector") or {}
            workloads = [
                r
                for r in self.in_namespace(namespace)
                if kind_of(r) in WORKLOAD_KINDS and r is not found and _selects(selector, r)
            ]
            return [found, *workloads]
        return [
            r
            for r in self.in_namespace(namespace)
            if is_release(r) and (service == name_of(r) or service.startswith(f"{name_of(r)}-"))
        ]

    def works_on(self, job: Registration) -> tuple[list[tuple[str, Registration]], list[str]]:
        """What `job` works on, each with why, and what it names that the run does not create (in a namespace the
        stack creates)."""
        spec = pod_spec(job.manifest) or {}
        ns = namespace_of(job)
        found: list[tuple[str, Registration]] = []
        missing: list[str] = []
        for kind, name in pod_refs(spec):
            target = self._objects.get((kind, ns, name))
            if target is not None:
                found.append((f"mounts or reads {kind} {name}", target))
        for text in _strings(spec):
            for service, service_ns in SERVICE_DNS.findall(text):
                targets = self.service_targets(service, service_ns)
                found += [(f"talks to {service}.{service_ns}", t) for t in targets]
                if not targets and service_ns in self.namespaces:
                    missing.append(f"talks to {service}.{service_ns}, which the program does not create")
            for reg in self.run.registrations:
                for key in ADDRESS_OUTPUTS:
                    address = reg.outputs.get(key)
                    if isinstance(address, str) and address and address in text:
                        found.append((f"talks to {address}", reg))
        return found, missing


# --- the rules ---------------------------------------------------------------------------------------------------
def namespace_problems(run: ProgramRun, graph: Graph | None = None) -> list[str]:
    g = graph or Graph(run)
    problems = []
    for reg in run.registrations:
        ns = namespace_of(reg)
        if ns is None:
            continue
        named = {ns}
        if is_release(reg):
            named |= {s for s in _strings(reveal(reg.inputs).get("values") or {}) if s in g.namespaces}
        for name in sorted(named):
            namespace = g.namespaces.get(name)
            if namespace is not None and not g.waits(reg, namespace):
                where = "its" if name == ns else "the"
                problems.append(f"{describe(reg)} does not wait for {where} Namespace {name} ({namespace.name})")
    return problems


def crd_problems(run: ProgramRun, graph: Graph | None = None) -> list[str]:
    g = graph or Graph(run)
    releases = [r for r in run.registrations if is_release(r)]
    problems = []
    for reg in crd_objects(run):
        group = str(reg.manifest.get("apiVersion", "")).split("/")[0]
        chart = CRD_CHARTS.get(group)
        if chart is None:
            problems.append(f"{describe(reg)}: no chart is declared to install the CRDs of {group} (CRD_CHARTS)")
            continue
        for release in (r for r in releases if chart_of(r) == chart):
            if not g.waits(reg, release):
                problems.append(f"{describe(reg)} does not wait for {describe(release)}, which installs its CRD")
    return problems


def job_problems(run: ProgramRun, graph: Graph | None = None) -> list[str]:
    g = graph or Graph(run)
    problems = []
    for job in run.kubernetes_objects():
        if kind_of(job) not in JOB_KINDS:
            continue
        found, missing = g.works_on(job)
        problems += [f"{describe(job)} {m}" for m in missing]
        for why, target in found:
            if target.urn != job.urn and not g.waits(job, target):
                problems.append(f"{describe(job)} {why} but does not wait for {describe(target)}")
    return sorted(set(problems))


@dataclass(frozen=True)
class DestroyPlan:
    """`pulumi destroy --exclude-protected`: what stays (URNs) and what is deleted (registrations)."""

    kept: frozenset[str]
    deleted: tuple[Registration, ...]


def destroy_plan(run: ProgramRun, graph: Graph | None = None) -> DestroyPlan:
    g = graph or Graph(run)
    kept: set[str] = set()
    for reg in run.registrations:
        if reg.protect:
            kept |= g.kept_with(reg.urn)
    deleted = tuple(r for r in run.registrations if r.custom and r.urn not in kept)
    return DestroyPlan(frozenset(kept), deleted)


def moves_with(reg: Registration, namespace: Registration) -> bool:
    """The engine replaces `reg` when `namespace` is replaced: where it lives comes from the Namespace's Output."""
    return namespace.urn in reg.property_dependencies.get("namespace" if is_release(reg) else "metadata", [])


def deletion_problems(run: ProgramRun, graph: Graph | None = None) -> list[str]:
    g = graph or Graph(run)
    problems = []
    for reg in destroy_plan(run, g).deleted:
        problems += [
            f"pulumi destroy --exclude-protected deletes {describe(reg)}, and with it the protected {v.what}"
            for v in g.takes(reg)
            if v.protected
        ]
    for namespace in g.namespaces.values():
        if namespace.retain_on_delete:
            continue
        inside = g.in_namespace(name_of(namespace))
        if any(r.protect and moves_with(r, namespace) for r in inside):
            continue  # the engine refuses to replace a protected object: the Namespace is not deleted
        problems += [
            f"replacing {describe(namespace)} deletes the protected {v.what}" for v in g.takes(namespace) if v.protected
        ]
    return problems


def problems(run: ProgramRun) -> list[str]:
    g = Graph(run)
    return [
        *namespace_problems(run, g),
        *crd_problems(run, g),
        *job_problems(run, g),
        *deletion_problems(run, g),
    ]
