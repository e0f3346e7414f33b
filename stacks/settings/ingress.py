"""Settings group `ingress.*`: public hosts, the ingress controller and TLS."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from stacks.settings.engine import DNS_LABEL, DNS_NAME, by_env, setting


@dataclass(frozen=True)
class IngressSettings:
    domain: str = setting(
        "ingress.domain",
        "DNS domain of the public hosts (mlflow.<domain>, airflow.<domain>, ...)",
        required=True,
        pattern=DNS_NAME,
    )
    controller: Literal["traefik", "existing"] = setting(
        "ingress.controller",
        "traefik = install Traefik with the platform; existing = use the cluster's controller",
        default="traefik",
        choices=("traefik", "existing"),
    )
    class_name: str | None = setting(
        "ingress.className",
        "IngressClass of the platform's Ingresses; default <namespacePrefix>-traefik with controller=traefik "
        "(each stack's Traefik serves only its own class); required with controller=existing",
        pattern=DNS_LABEL,
    )
    controller_namespace: str | None = setting(
        "ingress.controllerNamespace",
        "namespace of the ingress controller's pods (admitted by the serving NetworkPolicy); default "
        "<namespacePrefix>-ingress with controller=traefik; required with controller=existing",
        pattern=DNS_LABEL,
    )
    install_cert_manager: bool = setting(
        "ingress.installCertManager",
        "install cert-manager (cluster-wide, once per cluster): set false on a second stack sharing the cluster",
        default=True,
    )
    cert_manager_namespace: str = setting(
        "ingress.certManagerNamespace",
        "namespace of cert-manager (where the CA secret lives)",
        default="cert-manager",
        pattern=DNS_LABEL,
    )
    service_type: Literal["LoadBalancer", "NodePort"] = setting(
        "ingress.serviceType",
        "Service type of the Traefik entry point",
        default_fn=by_env("NodePort", "LoadBalancer"),
        choices=("LoadBalancer", "NodePort"),
    )
    tls_issuer: Literal["ca", "acme"] = setting(
        "ingress.tlsIssuer",
        "ca = certificates from the platform's internal CA; acme = Let's Encrypt (public hosts)",
        default="ca",
        choices=("ca", "acme"),
    )
    acme_email: str | None = setting(
        "ingress.acmeEmail", "ACME account e-mail (tlsIssuer=acme)", pattern=r"^[^@\s]+@[^@\s]+$"
    )
    acme_server: str = setting(
        "ingress.acmeServer",
        "ACME directory URL",
        default="https://acme-v02.api.letsencrypt.org/directory",
        pattern=r"^https://",
    )
