"""Build synthetic registrations to show that each harness check catches what it should."""

from __future__ import annotations

import dataclasses
from typing import Any

from harness.mocks import Registration
from harness.run import ProgramRun

STACK_URN = "urn:pulumi:t::mlops-platform::pulumi:pulumi:Stack::mlops-platform-t"
COMPONENT_URN = "urn:pulumi:t::mlops-platform::pulumi:pulumi:Stack$mlops:test:Thing::thing"

TYPES = {
    "Deployment": "kubernetes:apps/v1:Deployment",
    "Secret": "kubernetes:core/v1:Secret",
    "ConfigMap": "kubernetes:core/v1:ConfigMap",
    "PersistentVolumeClaim": "kubernetes:core/v1:PersistentVolumeClaim",
    "ServiceAccount": "kubernetes:core/v1:ServiceAccount",
    "Ingress": "kubernetes:networking.k8s.io/v1:Ingress",
    "HorizontalPodAutoscaler": "kubernetes:autoscaling/v2:HorizontalPodAutoscaler",
    "ClusterIssuer": "kubernetes:cert-manager.io/v1:ClusterIssuer",
    "FlowSchema": "kubernetes:flowcontrol.apiserver.k8s.io/v1beta1:FlowSchema",
    "Namespace": "kubernetes:core/v1:Namespace",
    "Service": "kubernetes:core/v1:Service",
    "PersistentVolume": "kubernetes:core/v1:PersistentVolume",
    "StatefulSet": "kubernetes:apps/v1:StatefulSet",
    "Job": "kubernetes:batch/v1:Job",
    "CronJob": "kubernetes:batch/v1:CronJob",
}


def reg(
    type_: str,
    name: str,
    inputs: dict[str, Any],
    *,
    outputs: dict[str, Any] | None = None,
    parent: str | None = COMPONENT_URN,
    custom: bool = True,
    registered_outputs: dict[str, Any] | None = None,
) -> Registration:
    return Registration(
        type=type_,
        name=name,
        urn=f"{COMPONENT_URN}${type_}::{name}",
        parent=parent,
        custom=custom,
        inputs=inputs,
        outputs=outputs or {},
        id=f"{name}-id",
        protect=False,
        retain_on_delete=False,
        dependencies=[],
        provider="",
        additional_secret_outputs=[],
        delete_before_replace=False,
        replace_on_changes=[],
        ignore_changes=[],
        registered_outputs=registered_outputs,
    )


def k8s(kind: str, name: str, namespace: str | None = "apps", api: str | None = None, **body: Any) -> Registration:
    type_ = TYPES[kind]
    api_version = api or type_.split(":")[1].replace("core/v1", "v1")
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return reg(type_, f"{kind.lower()}-{name}", {"apiVersion": api_version, "kind": kind, "metadata": meta, **body})


def custom(api_version: str, kind: str, name: str, namespace: str | None = "apps", **body: Any) -> Registration:
    """A custom resource as `apiextensions.CustomResource` registers it (type `kubernetes:<apiVersion>:<kind>`)."""
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    inputs = {"apiVersion": api_version, "kind": kind, "metadata": meta, **body}
    return reg(f"kubernetes:{api_version}:{kind}", f"{kind.lower()}-{name}", inputs)


def deployment(name: str, pod_spec: dict[str, Any], namespace: str = "apps") -> Registration:
    labels = {"app": name}
    return k8s(
        "Deployment",
        name,
        namespace,
        spec={"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": pod_spec}},
    )


def container(**extra: Any) -> dict[str, Any]:
    return {"name": "app", "image": "example/app:1.0.0", **extra}


def helm(name: str, chart: str, version: str | None, values: dict[str, Any], namespace: str = "apps") -> Registration:
    inputs: dict[str, Any] = {"chart": chart, "namespace": namespace, "values": values, "name": name}
    if version is not None:
        inputs["version"] = version
    return reg("kubernetes:helm.sh/v3:Release", f"release-{name}", inputs)


def after(registration: Registration, *dependencies: Registration, via: str | None = None) -> Registration:
    """`registration` waiting for `dependencies` (its `depends_on`, or with `via` the input property that takes their
    Outputs, as `metadata` takes a Namespace's name)."""
    urns = [d.urn for d in dependencies]
    properties = dict(registration.property_dependencies)
    if via is not None:
        properties[via] = [*properties.get(via, []), *urns]
    return dataclasses.replace(
        registration, dependencies=[*registration.dependencies, *urns], property_dependencies=properties
    )


def run_of(*registrations: Registration, exports: dict[str, Any] | None = None) -> ProgramRun:
    from harness.run import Export

    return ProgramRun(
        stack="t",
        registrations=list(registrations),
        exports={k: Export(v, False) for k, v in (exports or {}).items()},
    )
