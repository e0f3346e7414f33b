"""The ingress controller of one stack: Traefik, or the cluster's existing controller."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
from pulumi_kubernetes.helm.v3 import Release, RepositoryOptsArgs

from components.images import registry_form, with_images
from components.namespaces import NamespaceRef
from stacks.settings import ImageRef

TRAEFIK_REPO = "https://traefik.github.io/charts"
TRAEFIK_PORTS = (8000, 8443)  # the chart's web and websecure container ports (behind its Service's 80 and 443)
TRAEFIK_METRICS_PORT = 9100
# The chart's entry points: `web` (HTTP, redirected) and `websecure` (TLS, HTTP/1.1 and HTTP/2 by ALPN: what gRPC
# clients speak). Routes of Traefik's own CRD (the models' gRPC IngressRoutes) bind to WEBSECURE by name.
WEB, WEBSECURE = "web", "websecure"


@dataclass(frozen=True)
class IngressControllerArgs:
    """`install` = deploy Traefik into `namespace` serving only `class_name`; otherwise the
    cluster's controller for `class_name` (running in `namespace`) is used as it is. `middleware_namespaces`:
    where the stack's Ingresses name Traefik Middlewares (the serving namespace: the models' rate limits)."""

    install: bool
    namespace: NamespaceRef
    class_name: str
    chart_version: str
    service_type: str
    replicas: int
    middleware_namespaces: Sequence[NamespaceRef] = ()
    images: Mapping[str, ImageRef] = field(default_factory=dict)  # `traefik`; absent: the chart's default


def _traefik_values(args: IngressControllerArgs) -> dict[str, object]:
    """Traefik serving only the stack's IngressClass; HTTP redirected to HTTPS permanently. Its CRD provider reads
    Middlewares (the models' rate limits) and IngressRoutes (the models' gRPC routes, h2c to the pods) in the
    namespaces that use them only, and only those namespaces' Ingresses may name them. A LoadBalancer keeps the
    clients' addresses (externalTrafficPolicy Local), which the per-client rate limits count by."""
    # the release waits for the namespaces it watches
    namespaces = [ns.output for ns in args.middleware_namespaces]
    service: dict[str, object] = {"type": args.service_type}
    if args.service_type == "LoadBalancer":
        service["spec"] = {"externalTrafficPolicy": "Local"}
    values: dict[str, object] = {
        "deployment": {"replicas": args.replicas},
        "ingressClass": {"enabled": True, "isDefaultClass": False, "name": args.class_name},
        "providers": {
            "kubernetesIngress": {
                "enabled": True,
                "ingressClass": args.class_name,
                "crossProviderNamespaces": namespaces,
            },
            "kubernetesCRD": {"enabled": bool(namespaces), "namespaces": namespaces, "allowCrossNamespace": False},
        },
        "ports": {
            WEB: {"http": {"redirections": {"entryPoint": {"to": WEBSECURE, "scheme": "https", "permanent": True}}}},
            WEBSECURE: {"http": {"tls": {"enabled": True}}},
        },
        "service": service,
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
        "podDisruptionBudget": {"enabled": args.replicas > 1, "maxUnavailable": 1},
    }
    traefik = args.images.get("traefik")
    if traefik is not None and traefik.digest and traefik.tag:
        values["versionOverride"] = traefik.tag  # the chart's version checks cannot read a digest
    return with_images(values, args.images, {"traefik": ("image", registry_form)})


class IngressController(pulumi.ComponentResource):
    """Builds, when `install`, a Traefik Helm release whose IngressClass is the stack's own (not the
    cluster default, so several stacks can share a cluster), whose `web` entry point redirects every
    HTTP request to HTTPS permanently, and whose pods satisfy Pod Security `restricted` (the chart's
    defaults: non-root, read-only root filesystem, no capabilities, RuntimeDefault seccomp).

    Exports the attributes below; `release` (None unless `install`) is a handle, not an output.
    """

    class_name: pulumi.Output[str]
    """The IngressClass of the stack's Ingresses."""
    namespace: pulumi.Output[str]
    """Where the controller's pods run (for NetworkPolicies)."""

    def __init__(self, name: str, args: IngressControllerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:platform:IngressController", name, None, opts)
        self.class_name = pulumi.Output.from_input(args.class_name)
        self.namespace = args.namespace.output
        self.release: Release | None = None
        if args.install:
            self.release = Release(
                f"{name}-traefik",
                name="traefik",
                chart="traefik",
                version=args.chart_version,
                repository_opts=RepositoryOptsArgs(repo=TRAEFIK_REPO),
                namespace=args.namespace.output,
                atomic=True,
                timeout=600,
                values=_traefik_values(args),
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.register_outputs({"class_name": self.class_name, "namespace": self.namespace})
