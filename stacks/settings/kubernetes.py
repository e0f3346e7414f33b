"""Settings group `kubernetes.*`: the target cluster."""

from __future__ import annotations

from dataclasses import dataclass

from stacks.settings.engine import DNS_LABEL, setting

_K8S_MINOR = r"^1\.(2[5-9]|3[0-7])$"


@dataclass(frozen=True)
class KubernetesSettings:
    context: str | None = setting(
        "kubernetes.context", "kubeconfig context of the target cluster; unset = the current context"
    )
    min_version: str = setting(
        "kubernetes.minVersion",
        "oldest Kubernetes minor version the manifests must be valid for (checked by the test harness)",
        default="1.30",
        pattern=_K8S_MINOR,
    )
    namespace_prefix: str | None = setting(
        "kubernetes.namespacePrefix",
        "prefix of every namespace; default mlops-<stack>, so dev and prod can share a cluster",
        pattern=DNS_LABEL,
    )
