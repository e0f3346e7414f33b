"""Settings group `network.*`: the NetworkPolicies and where pods may call out."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from stacks.settings.engine import check_cidrs, setting


def _egress_cidrs(value: Any) -> str | None:
    for item in value:
        try:
            ipaddress.ip_network(item, strict=True)
        except ValueError:
            return f"must be a list of CIDR blocks; {item!r} is not one"
    return None if value else "must not be empty (use 0.0.0.0/0 for anywhere)"


@dataclass(frozen=True)
class NetworkSettings:
    """NetworkPolicies: every namespace of the stack denies by default, then admits the platform's flows
    (docs/configuration.md, "Network policies")."""

    policies: bool = setting(
        "network.policies",
        "render the NetworkPolicies (default-deny per namespace and the platform's allowed flows); they take "
        "effect on clusters whose network plugin enforces them",
        default=True,
    )
    egress_cidrs: tuple[str, ...] = setting(
        "network.egressCidrs",
        "where the pods that call out (S3, git, Slack, OIDC issuers, ACME, the Kubernetes API) may open "
        "HTTPS (443; 6443 for the API server): narrow it to your NAT or VPC endpoint ranges",
        default=("0.0.0.0/0",),
        check=_egress_cidrs,
    )
    database_cidrs: tuple[str, ...] = setting(
        "network.databaseCidrs",
        "rds mode: networks of the database subnets, where MLflow, Airflow, the API and the bootstrap Job may "
        "open 5432; default: database.allowedCidrs",
        default=(),
        check=check_cidrs,
    )
