"""TLS for the platform's Ingresses: cert-manager, an internal CA, and an optional ACME issuer."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
from pulumi_kubernetes.apiextensions import CustomResource
from pulumi_kubernetes.core.v1 import Namespace, Secret
from pulumi_kubernetes.helm.v3 import Release, RepositoryOptsArgs
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs

from components.images import repository_form, with_images
from components.namespaces import NamespaceRef
from components.naming import APP_NAME, labels
from stacks.settings import ImageRef

CERT_MANAGER_REPO = "https://charts.jetstack.io"
CERT_MANAGER_API = "cert-manager.io/v1"
# Ports and labels NetworkPolicies name: the webhook the API server calls, the metrics, and the pods cert-manager
# starts in a certificate's namespace to answer ACME HTTP-01 challenges (the ingress controller reaches them).
WEBHOOK_PORT = 10250
METRICS_PORT = 9402
WEBHOOK_PODS = {APP_NAME: "webhook"}
ACME_SOLVER_PODS = {"acme.cert-manager.io/http01-solver": "true"}
ACME_SOLVER_PORT = 8089


def root_ca_name(prefix: str) -> str:
    """The root CA's Certificate and the Secret cert-manager writes it to."""
    return f"{prefix}-root-ca"


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
    images: Mapping[str, ImageRef] = field(default_factory=dict)  # CERT_MANAGER_IMAGES; absent: chart default


_CERT_MANAGER_VALUES = {
    # CRDs come with the release and are kept if the release is ever removed
    "crds": {"enabled": True, "keep": True},
    "replicaCount": 1,
    "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
    "webhook": {"resources": {"requests": {"cpu": "20m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}}},
    "cainjector": {"resources": {"requests": {"cpu": "20m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}},
    "prometheus": {"enabled": True},
}

# cert-manager's images (the third-party images of the stack settings) and where its values set them
CERT_MANAGER_IMAGES = {
    f"cert-manager-{component}": (path, repository_form)
    for component, path in (
        ("controller", "image"),
        ("webhook", "webhook.image"),
        ("cainjector", "cainjector.image"),
        ("acmesolver", "acmesolver.image"),
        ("startupapicheck", "startupapicheck.image"),
    )
}


class TlsIssuers(pulumi.ComponentResource):
    """Builds cert-manager (namespace with Pod Security `restricted` and a Helm release with its
    CRDs, when `install_cert_manager`), a self-signed bootstrap ClusterIssuer, the stack's internal
    root CA as a cert-manager Certificate (ECDSA P-256, 10 years), a CA ClusterIssuer that signs
    every service certificate, and, with issuer=acme, an ACME ClusterIssuer (HTTP-01 through the
    platform's IngressClass) for public hosts.

    Exports the attributes below; `cert_manager_namespace` (cert-manager's namespace: the stack's own Namespace
    when it installs cert-manager) is a handle, not an output.
    """

    cluster_issuer: pulumi.Output[str]
    """The ClusterIssuer the Ingresses annotate (the CA issuer, or the ACME issuer)."""
    ca_issuer: pulumi.Output[str]
    """The internal CA's ClusterIssuer."""
    ca_certificate: pulumi.Output[str]
    """PEM of the internal CA (public, for users to trust)."""

    def __init__(self, name: str, args: TlsIssuersArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:platform:TlsIssuers", name, None, opts)
        self.cert_manager_namespace = NamespaceRef(args.cert_manager_namespace)
        crds_ready = [self._cert_manager(name, args)] if args.install_cert_manager else []
        root_ca = self._root_ca(name, args, crds_ready)
        self.ca_issuer = self._ca_issuer(name, args, root_ca)
        self.cluster_issuer = self._acme_issuer(name, args, crds_ready) if args.issuer == "acme" else self.ca_issuer
        self.ca_certificate = self._ca_certificate(name, args, root_ca)
        self.register_outputs(
            {"cluster_issuer": self.cluster_issuer, "ca_issuer": self.ca_issuer, "ca_certificate": self.ca_certificate}
        )

    def _cert_manager(self, name: str, args: TlsIssuersArgs) -> Release:
        """cert-manager's namespace (kept on delete; sets `cert_manager_namespace`) and release, with its CRDs."""
        ns = args.cert_manager_namespace
        namespace = Namespace(
            f"{name}-namespace",
            metadata=ObjectMetaArgs(
                name=ns,
                labels=labels(
                    stack=args.stack,
                    base={
                        "kubernetes.io/metadata.name": ns,
                        "pod-security.kubernetes.io/enforce": "restricted",
                        "pod-security.kubernetes.io/enforce-version": "latest",
                    },
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
        )
        self.cert_manager_namespace = NamespaceRef(ns, namespace)
        return Release(
            f"{name}-cert-manager",
            name="cert-manager",
            chart="cert-manager",
            version=args.chart_version,
            repository_opts=RepositoryOptsArgs(repo=CERT_MANAGER_REPO),
            namespace=self.cert_manager_namespace.output,
            atomic=True,
            timeout=600,
            values=with_images(_CERT_MANAGER_VALUES, args.images, CERT_MANAGER_IMAGES),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _root_ca(self, name: str, args: TlsIssuersArgs, crds_ready: list[Release]) -> CustomResource:
        """The self-signed bootstrap issuer and the stack's root CA Certificate it signs."""
        selfsigned = CustomResource(
            f"{name}-selfsigned",
            api_version=CERT_MANAGER_API,
            kind="ClusterIssuer",
            metadata=ObjectMetaArgs(name=f"{args.prefix}-selfsigned", labels=labels(stack=args.stack)),
            spec={"selfSigned": {}},
            opts=pulumi.ResourceOptions(parent=self, depends_on=crds_ready),
        )
        ca_secret = root_ca_name(args.prefix)
        return CustomResource(
            f"{name}-root-ca",
            api_version=CERT_MANAGER_API,
            kind="Certificate",
            metadata=ObjectMetaArgs(
                name=ca_secret,
                namespace=self.cert_manager_namespace.output,
                labels=labels(stack=args.stack),
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

    def _ca_issuer(self, name: str, args: TlsIssuersArgs, root_ca: CustomResource) -> pulumi.Output[str]:
        """The CA ClusterIssuer; returns its name, resolving once it exists."""
        ca_issuer = CustomResource(
            f"{name}-ca-issuer",
            api_version=CERT_MANAGER_API,
            kind="ClusterIssuer",
            metadata=ObjectMetaArgs(name=f"{args.prefix}-ca", labels=labels(stack=args.stack)),
            spec={"ca": {"secretName": root_ca_name(args.prefix)}},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[root_ca]),
        )
        # the names are known; deriving them from the resources makes users of them wait for those
        return ca_issuer.urn.apply(lambda _: f"{args.prefix}-ca")

    def _acme_issuer(self, name: str, args: TlsIssuersArgs, crds_ready: list[Release]) -> pulumi.Output[str]:
        """The ACME ClusterIssuer (HTTP-01 through the stack's IngressClass); returns its name."""
        if not args.acme_email:
            raise ValueError("an ACME issuer needs acme_email")
        acme = CustomResource(
            f"{name}-acme-issuer",
            api_version=CERT_MANAGER_API,
            kind="ClusterIssuer",
            metadata=ObjectMetaArgs(name=f"{args.prefix}-acme", labels=labels(stack=args.stack)),
            spec={
                "acme": {
                    "server": args.acme_server,
                    "email": args.acme_email,
                    "privateKeySecretRef": {"name": f"{args.prefix}-acme-account"},
                    "solvers": [{"http01": {"ingress": {"ingressClassName": args.ingress_class}}}],
                }
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=crds_ready),
        )
        return acme.urn.apply(lambda _: f"{args.prefix}-acme")

    def _ca_certificate(self, name: str, args: TlsIssuersArgs, root_ca: CustomResource) -> pulumi.Output[str]:
        """The CA's certificate, read back from the Secret cert-manager wrote. The Secret's id is
        derived from the Certificate's id, so a first `pulumi preview` (Certificate not yet
        created: unknown) does not try to read a Secret that does not exist yet."""
        ns, ca_secret = args.cert_manager_namespace, root_ca_name(args.prefix)
        secret_id = root_ca.id.apply(lambda _: f"{ns}/{ca_secret}")
        ca = Secret.get(
            f"{name}-root-ca-secret", secret_id, opts=pulumi.ResourceOptions(parent=self, depends_on=[root_ca])
        )
        return pulumi.Output.unsecret(
            ca.data.apply(lambda data: base64.b64decode((data or {}).get("ca.crt", "")).decode())
        )
