"""Namespaces of one stack's platform services, with Pod Security Admission labels, and the handle through which
components put objects in a namespace (`NamespaceRef`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
from pulumi_kubernetes.core.v1 import Namespace
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs

from components.naming import labels

PSA_LEVELS = ("privileged", "baseline", "restricted")


@dataclass(frozen=True)
class NamespaceRef:
    """A namespace a component creates objects in: its `name`, and the stack's own Namespace resource when the stack
    creates it (None for a namespace it does not create, such as an existing ingress controller's).

    `output` is what goes into `metadata.namespace` (and a Helm release's `namespace`): for a namespace the stack
    creates it is the Namespace's own `metadata.name`, so every object put there depends on the Namespace by
    construction. The engine then creates the Namespace first and deletes it last, and a replacement of the
    Namespace (which deletes everything in it) must replace its objects too, which a protected one refuses.
    `name` is the same name as text, for what must be a plain string when the program runs (DNS names and URLs,
    label selectors, resource names, configuration files); it carries no dependency, so it never goes into
    `metadata.namespace`. Where an object can take the plain name only but works in the namespace (a chart creating
    Roles there), it depends on `wait_for` explicitly."""

    name: str
    namespace: Namespace | None = None

    @property
    def output(self) -> pulumi.Output[str]:
        """The name, depending on the Namespace when the stack creates it."""
        if self.namespace is None:
            return pulumi.Output.from_input(self.name)
        return self.namespace.metadata.name

    @property
    def wait_for(self) -> list[pulumi.Resource]:
        """What an object that takes the plain `name` must depend on: the Namespace, when the stack creates it."""
        return [self.namespace] if self.namespace is not None else []


@dataclass(frozen=True)
class PlatformNamespacesArgs:
    """`services` maps a service name (mlflow, airflow, ...) to its Pod Security level."""

    prefix: str
    stack: str
    services: Mapping[str, str]
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for svc, level in self.services.items():
            if level not in PSA_LEVELS:
                raise ValueError(f"namespace {svc}: pod security level must be one of {PSA_LEVELS}; got {level!r}")


class PlatformNamespaces(pulumi.ComponentResource):
    """Builds one Namespace per service, named `<prefix>-<service>`, labelled with the stack and the
    service, enforcing its Pod Security Admission level (audit and warn at `restricted`).

    Exports the attribute below; `namespaces` (service -> Namespace) and `refs` (service -> its `NamespaceRef`, what
    the components take) are handles, not outputs.
    """

    names: dict[str, pulumi.Output[str]]
    """Service -> its namespace's name."""

    def __init__(self, name: str, args: PlatformNamespacesArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:platform:Namespaces", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.namespaces: dict[str, Namespace] = {}
        self.refs: dict[str, NamespaceRef] = {}
        for svc, level in args.services.items():
            ns_name = f"{args.prefix}-{svc}"
            self.namespaces[svc] = Namespace(
                f"{name}-{svc}",
                metadata=ObjectMetaArgs(
                    name=ns_name,
                    labels=labels(
                        stack=args.stack,
                        service=svc,
                        base={
                            **args.labels,
                            "kubernetes.io/metadata.name": ns_name,
                            "pod-security.kubernetes.io/enforce": level,
                            "pod-security.kubernetes.io/enforce-version": "latest",
                            "pod-security.kubernetes.io/audit": "restricted",
                            "pod-security.kubernetes.io/warn": "restricted",
                        },
                    ),
                ),
                opts=child,
            )
            self.refs[svc] = NamespaceRef(ns_name, self.namespaces[svc])
        self.names = {svc: ref.output for svc, ref in self.refs.items()}
        self.register_outputs({"names": self.names})
