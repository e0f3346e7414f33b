"""Namespaces of one stack's platform services, with Pod Security Admission labels."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
from pulumi_kubernetes.core.v1 import Namespace
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs

from components.naming import labels

PSA_LEVELS = ("privileged", "baseline", "restricted")


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

    Exports the attribute below; `namespaces` (service -> Namespace) are handles, not outputs.
    """

    names: dict[str, pulumi.Output[str]]
    """Service -> its namespace's name."""

    def __init__(self, name: str, args: PlatformNamespacesArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:platform:Namespaces", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.namespaces: dict[str, Namespace] = {}
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
        self.names = {svc: ns.metadata.name for svc, ns in self.namespaces.items()}
        self.register_outputs({"names": self.names})
