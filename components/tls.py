"""TLS for the platform's Ingresses: cert-manager, an internal CA, and an optional ACME issuer."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import pulumi
from pulumi_kubernetes.apiextensions import CustomResource
from pulumi_kubernetes.core.v1 import Namespace, Secret
from pulumi_kubernetes.helm.v3 import Release, RepositoryOptsArgs
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs

CERT_MANAGER_REPO = "https://charts.jetstack.io"
CERT_MANAGER_API = "cert-manager.io/v1"


@dataclass(frozen=True)
class TlsIssuersArgs:
    """`prefix` names the stack's issuers (two stacks on one cluster do not collide);
    `install_cert_manager` installs the cert-manager release (once per cluster)."""

    prefix: str
    stack: str
    install_cert_manager: bool
    cert_manager_namespace: str
    chart_version: str
    issuer: str  # "ca" | "acme"
    ingress_class: str
    acme_email: str | None = None
    acme_server: str = "https://acme-v02.api.letsencrypt.org/directory"


class TlsIssuers(pulumi.ComponentResource):
    """Builds cert-manager (namespace with Pod Security `restricted` and a Helm release with its
    CRDs, when `install_cert_manager`), a self-signed bootstrap ClusterIssuer, the stack's internal
    root CA as a cert-manager Certificate (ECDSA P-256, 10 years), a CA ClusterIssuer that signs
    every service certificate, and, with issuer=acme, an ACME ClusterIssuer (HTTP-01 through the
    platform's IngressClass) for public hosts.

    Exports `cluster_issuer` (the issuer the Ingresses annotate), `ca_issuer`, and
    `ca_certificate` (PEM of the internal CA, public, for users to trust).
    """

    def __init__(self, name: str, args: TlsIssuersArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:platform:TlsIssuers", name, None, opts)
        labels = {"app.kubernetes.io/part-of": "mlops-platform", "mlops-platform/stack": args.stack}
        ns = args.cert_manager_namespace
        crds_ready: list[pulumi.Resource] = []
        if args.install_cert_manager:
            namespace = Namespace(
                f"{name}-namespace",
                metadata=ObjectMetaArgs(
                    name=ns,
                    labels={
                        **labels,
                        "kubernetes.io/metadata.name": ns,
                        "pod-security.kubernetes.io/enforce": "restricted",
                        "pod-security.kubernetes.io/enforce-version": "latest",
                    },
                ),
                opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
            )
            release = Release(
                f"{name}-cert-manager",
                name="cert-manager",
                chart="cert-manager",
                version=args.chart_version,
                repository_opts=RepositoryOptsArgs(repo=CERT_MANAGER_REPO),
                namespace=ns,
                atomic=True,
                timeout=600,
                values={
                    # CRDs come with the release and are kept if the release is ever removed
                    "crds": {"enabled": True, "keep": True},
                    "replicaCount": 1,
                    "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
                    "webhook": {
                        "resources": {"requests": {"cpu": "20m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}}
                    },
                    "cainjector": {
                        "resources": {"requests": {"cpu": "20m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}
                    },
                    "prometheus": {"enabled": True},
                },
                opts=pulumi.ResourceOptions(parent=self, depends_on=[namespace]),
            )
            crds_ready = [release]

        after_crds = pulumi.ResourceOptions(parent=self, depends_on=crds_ready)
        selfsigned = CustomResource(
            f"{name}-selfsigned",
            api_version=CERT_MANAGER_API,
            kind="ClusterIssuer",
            metadata=ObjectMetaArgs(name=f"{args.prefix}-selfsigned", labels=labels),
            spec={"selfSigned": {}},
            opts=after_crds,
        )
        ca_secret = f"{args.prefix}-root-ca"
        root_ca = CustomResource(
            f"{name}-root-ca",
            api_version=CERT_MANAGER_API,
            kind="Certificate",
            metadata=ObjectMetaArgs(
                name=ca_secret,
                namespace=ns,
                labels=labels,
                # `pulumi up` waits until cert-manager has issued the CA
                annotations={"pulumi.com/waitFor": "condition=Ready"},
            ),
            spec={
                "isCA": True,
                "commonName": f"mlops-platform {args.stack} root CA",
                "secretName": ca_secret,
                "duration": "87600h",
                "renewBefore": "720h",
                "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Never"},
                "issuerRef": {"name": f"{args.prefix}-selfsigned", "kind": "ClusterIssuer", "group": "cert-manager.io"},
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[selfsigned, *crds_ready]),
        )
        ca_issuer = CustomResource(
            f"{name}-ca-issuer",
            api_version=CERT_MANAGER_API,
            kind="ClusterIssuer",
            metadata=ObjectMetaArgs(name=f"{args.prefix}-ca", labels=labels),
            spec={"ca": {"secretName": ca_secret}},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[root_ca]),
        )
        # the names are known; deriving them from the resources makes users of them wait for those
        self.ca_issuer: pulumi.Output[str] = ca_issuer.urn.apply(lambda _: f"{args.prefix}-ca")
        issuer = self.ca_issuer
        if args.issuer == "acme":
            if not args.acme_email:
                raise ValueError("an ACME issuer needs acme_email")
            acme = CustomResource(
                f"{name}-acme-issuer",
                api_version=CERT_MANAGER_API,
                kind="ClusterIssuer",
                metadata=ObjectMetaArgs(name=f"{args.prefix}-acme", labels=labels),
                spec={
                    "acme": {
                        "server": args.acme_server,
                        "email": args.acme_email,
                        "privateKeySecretRef": {"name": f"{args.prefix}-acme-account"},
                        "solvers": [{"http01": {"ingress": {"ingressClassName": args.ingress_class}}}],
                    }
                },
                opts=after_crds,
            )
            issuer = acme.urn.apply(lambda _: f"{args.prefix}-acme")
        self.cluster_issuer: pulumi.Output[str] = issuer

        # The CA's certificate, read back from the Secret cert-manager wrote. The Secret's id is
        # derived from the Certificate's id, so a first `pulumi preview` (Certificate not yet
        # created: unknown) does not try to read a Secret that does not exist yet.
        secret_id = root_ca.id.apply(lambda _: f"{ns}/{ca_secret}")
        ca = Secret.get(
            f"{name}-root-ca-secret", secret_id, opts=pulumi.ResourceOptions(parent=self, depends_on=[root_ca])
        )
        self.ca_certificate: pulumi.Output[str] = pulumi.Output.unsecret(
            ca.data.apply(lambda data: base64.b64decode((data or {}).get("ca.crt", "")).decode())
        )
        self.register_outputs(
            {"cluster_issuer": self.cluster_issuer, "ca_issuer": self.ca_issuer, "ca_certificate": self.ca_certificate}
        )
