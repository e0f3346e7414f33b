"""Composition of the platform for one stack (called by infra/__main__.py)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.namespaces import PlatformNamespaces, PlatformNamespacesArgs
from infra.data_layer import build_data_layer, storage_namespace
from infra.network import build_network
from infra.platform_services import build_services, export_endpoints
from stacks.settings import StackSettings


def namespace_levels(s: StackSettings) -> dict[str, str]:
    """Pod Security level per service namespace. Everything the program renders itself is
    `restricted`, and so is MLflow (every container of its chart takes the values' security context).
    Airflow and monitoring run at `baseline` (audited and warned at `restricted`): their charts render many
    components and optional sidecars, not all of which take a restricted context from the values."""
    levels = {
        "mlflow": "restricted",
        "airflow": "baseline",
        "serving": "restricted",
        "data": "restricted",
        "api": "restricted",
    }
    if s.ingress.controller == "traefik" and not s.ingress.controller_namespace:
        levels["ingress"] = "restricted"
    if storage_namespace(s) is not None:
        # only the NFS preparation Jobs, which chown as root (with CHOWN, DAC_OVERRIDE and FOWNER only)
        levels["storage"] = "baseline"
    if s.observability.enabled:
        # kube-prometheus-stack, Loki and Alloy: charts of many components and sidecars, like Airflow's
        levels["monitoring"] = "baseline"
    return levels


@dataclass
class Providers:
    aws: aws.Provider | None
    """None when the stack creates nothing on AWS (`StackSettings.uses_aws`): no AWS provider, no credentials."""
    k8s: k8s.Provider


def make_providers(s: StackSettings) -> Providers:
    tags = {"mlops-platform/stack": s.stack, "mlops-platform/environment": s.environment, "managed-by": "pulumi"}
    aws_provider = (
        aws.Provider("aws", region=s.aws_region, default_tags=aws.ProviderDefaultTagsArgs(tags=tags))
        if s.uses_aws
        else None
    )
    k8s_provider = k8s.Provider(
        "k8s",
        context=s.kubernetes.context,
        enable_server_side_apply=True,
        delete_unreachable=False,
    )
    return Providers(aws=aws_provider, k8s=k8s_provider)


def build_platform(s: StackSettings) -> None:
    providers = make_providers(s)
    aws_opts = pulumi.ResourceOptions(providers={"aws": providers.aws} if providers.aws is not None else {})
    k8s_opts = pulumi.ResourceOptions(providers={"kubernetes": providers.k8s})
    namespaces = PlatformNamespaces(
        "namespaces",
        PlatformNamespacesArgs(prefix=s.namespace_prefix, stack=s.stack, services=namespace_levels(s)),
        opts=k8s_opts,
    )
    # every object goes into its namespace through `namespaces.refs`: it waits for its Namespace by construction
    data = build_data_layer(s, aws_opts, k8s_opts, namespaces)
    services = build_services(s, k8s_opts, namespaces, data)
    build_network(s, namespaces.refs, services.tls.cert_manager_namespace, k8s_opts)
    export_endpoints(s, namespaces, data, services)
    pulumi.export("environment", s.environment)
