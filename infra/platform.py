"""Composition of the platform for one stack (called by infra/__main__.py)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.namespaces import PlatformNamespaces, PlatformNamespacesArgs
from stacks.settings import StackSettings

# Pod Security level per service namespace: everything restricted except the ingress controller
# namespace, which the Traefik chart runs in (it binds no host ports, so baseline suffices).
SERVICES = {"mlflow": "restricted", "airflow": "restricted", "serving": "restricted", "data": "restricted"}


@dataclass
class Providers:
    aws: aws.Provider
    k8s: k8s.Provider


def make_providers(s: StackSettings) -> Providers:
    tags = {"mlops-platform/stack": s.stack, "mlops-platform/environment": s.environment, "managed-by": "pulumi"}
    aws_provider = aws.Provider("aws", region=s.aws_region, default_tags=aws.ProviderDefaultTagsArgs(tags=tags))
    k8s_provider = k8s.Provider(
        "k8s",
        context=s.kubernetes.context,
        enable_server_side_apply=True,
        delete_unreachable=False,
    )
    return Providers(aws=aws_provider, k8s=k8s_provider)


def build_platform(s: StackSettings) -> None:
    providers = make_providers(s)
    k8s_opts = pulumi.ResourceOptions(provider=providers.k8s)
    namespaces = PlatformNamespaces(
        "namespaces",
        PlatformNamespacesArgs(prefix=s.namespace_prefix, stack=s.stack, services=SERVICES),
        opts=k8s_opts,
    )
    pulumi.export("namespaces", namespaces.names)
    pulumi.export("environment", s.environment)
