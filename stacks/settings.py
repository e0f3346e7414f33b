"""Typed stack settings: every configuration key the program reads, declared once.

Each key is one field of a frozen dataclass below, declared with `setting(...)`: its Pulumi key
(`mlops-platform:<key>` in `Pulumi.<stack>.yaml`), its type (the field's annotation), its default
(a value, or a function of the environment `dev`/`staging`/`prod`), its validation and its doc.
`load_settings` reads a stack's configuration, applies defaults and validates every value; every
problem is reported at once, each line naming the stack file and the key, e.g.

    Pulumi.prod.yaml: mlops-platform:database.mode must be one of rds, in-cluster; got "rdss"

Keys under the project's namespace that nothing declares are errors too, so a typo cannot pass
silently. Secret settings must be stored encrypted (`pulumi config set --secret`) and are handed to
the program as `Secret` values that never print their content.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import json
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from services.common.serving_rules import (
    ALIAS_PATTERN,
    DEFAULT_ALIASES,
    DEFAULT_WORKERS,
    PROCESS_MEMORY_BYTES,
    QUANTITY,
    ROUTING_MODES,
    CanaryRouting,
    FixedRouting,
    RoutingConfig,
    invalid_aliases,
    min_memory_bytes,
    parse_routing,
    quantity_bytes,
)

PROJECT = "mlops-platform"
ENVIRONMENTS = ("dev", "staging", "prod")

Environment = Literal["dev", "staging", "prod"]
DefaultFn = Callable[[str], Any]


class SettingsError(ValueError):
    """Invalid or unknown stack settings. `problems` holds one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid stack settings:\n  " + "\n  ".join(problems))


class Secret:
    """A secret setting's value. It never shows its content in str/repr/logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def output(self) -> Any:
        """The value as a secret `pulumi.Output` (what components must pass on)."""
        import pulumi

        return pulumi.Output.secret(self._value)

    def __repr__(self) -> str:
        return "Secret([secret])"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))


Validator = Callable[[Any], "str | None"]  # returns a problem ("must be ...") or None


@dataclass(frozen=True)
class Meta:
    key: str
    doc: str
    default: Any = None
    default_fn: DefaultFn | None = None
    required: bool = False
    secret: bool = False
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None
    check: Validator | None = None
    parse: Callable[[Any], Any] | None = None  # JSON object -> the field's type; ValueError names the problem


def setting(
    key: str,
    doc: str,
    *,
    default: Any = None,
    default_fn: DefaultFn | None = None,
    required: bool = False,
    secret: bool = False,
    choices: tuple[str, ...] = (),
    minimum: float | None = None,
    maximum: float | None = None,
    pattern: str | None = None,
    check: Validator | None = None,
    parse: Callable[[Any], Any] | None = None,
) -> Any:
    """Declare one setting as a dataclass field. Values are filled in by `load_settings`."""
    meta = Meta(key, doc, default, default_fn, required, secret, choices, minimum, maximum, pattern, check, parse)
    return field(metadata={"setting": meta})


def _by_env(dev: Any, prod: Any, staging: Any = None) -> DefaultFn:
    return lambda env: prod if env == "prod" else (staging if env == "staging" and staging is not None else dev)


# --- validators -----------------------------------------------------------------------------------
_DNS_NAME = r"^(?=.{1,253}$)([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)+[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$"
_K8S_MINOR = r"^1\.(2[5-9]|3[0-7])$"


def _quantity(value: Any) -> str | None:
    return None if QUANTITY.match(str(value)) else "must be a Kubernetes quantity such as 500m, 2 or 4Gi"


def _cidrs(value: Any) -> str | None:
    for item in value:
        try:
            net = ipaddress.ip_network(item, strict=True)
        except ValueError:
            return f"must be a list of CIDR blocks; {item!r} is not one"
        if net.prefixlen == 0:
            return "must not admit the whole internet (0.0.0.0/0)"
    return None


def _image_tag(value: Any) -> str | None:
    if value in ("", "latest"):
        return "must be a pinned tag, not empty or 'latest'"
    return None


# --- the settings ---------------------------------------------------------------------------------
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
        pattern=_DNS_LABEL,
    )


@dataclass(frozen=True)
class IngressSettings:
    domain: str = setting(
        "ingress.domain",
        "DNS domain of the public hosts (mlflow.<domain>, airflow.<domain>, ...)",
        required=True,
        pattern=_DNS_NAME,
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
        pattern=_DNS_LABEL,
    )
    controller_namespace: str | None = setting(
        "ingress.controllerNamespace",
        "namespace of the ingress controller's pods (admitted by the serving NetworkPolicy); default "
        "<namespacePrefix>-ingress with controller=traefik; required with controller=existing",
        pattern=_DNS_LABEL,
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
        pattern=_DNS_LABEL,
    )
    service_type: Literal["LoadBalancer", "NodePort"] = setting(
        "ingress.serviceType",
        "Service type of the Traefik entry point",
        default_fn=_by_env("NodePort", "LoadBalancer"),
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


@dataclass(frozen=True)
class ArtifactSettings:
    kms_key_arn: str | None = setting(
        "artifacts.kmsKeyArn",
        "SSE-KMS key for the bucket; unset = SSE-S3 (AES256)",
        pattern=r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:(key|alias)/.+$",
    )
    noncurrent_version_days: int = setting(
        "artifacts.noncurrentVersionDays",
        "days after which noncurrent object versions expire",
        default_fn=_by_env(30, 90),
        minimum=1,
        maximum=3650,
    )
    abort_multipart_days: int = setting(
        "artifacts.abortMultipartDays",
        "days after which incomplete multipart uploads are aborted",
        default=7,
        minimum=1,
        maximum=365,
    )
    key_rotation_days: int = setting(
        "artifacts.keyRotationDays",
        "IAM access-key rotation period; the previous key stays valid one more period",
        default_fn=_by_env(30, 30),
        minimum=1,
        maximum=365,
    )


@dataclass(frozen=True)
class DatabaseSettings:
    mode: Literal["rds", "in-cluster"] = setting(
        "database.mode",
        "rds = Amazon RDS for PostgreSQL; in-cluster = Postgres on the cluster",
        default_fn=_by_env("in-cluster", "rds"),
        choices=("rds", "in-cluster"),
    )
    engine_version: str = setting(
        "database.engineVersion",
        "PostgreSQL major version (RDS engine and in-cluster image)",
        default="16",
        choices=("14", "15", "16", "17"),
    )
    instance_class: str = setting(
        "database.instanceClass",
        "RDS instance class",
        default_fn=_by_env("db.t4g.micro", "db.m7g.large"),
        pattern=r"^db\.[a-z0-9]+\.[a-z0-9]+$",
    )
    allocated_storage_gb: int = setting(
        "database.allocatedStorageGb", "RDS storage in GiB", default_fn=_by_env(20, 100), minimum=20, maximum=65536
    )
    multi_az: bool = setting("database.multiAz", "RDS Multi-AZ", default_fn=_by_env(False, True))
    deletion_protection: bool = setting(
        "database.deletionProtection", "RDS deletion protection", default_fn=_by_env(False, True)
    )
    backup_retention_days: int = setting(
        "database.backupRetentionDays",
        "RDS automated backup retention in days",
        default_fn=_by_env(7, 14),
        minimum=7,
        maximum=35,
    )
    subnet_ids: tuple[str, ...] = setting(
        "database.subnetIds",
        "private subnets of the RDS subnet group (rds mode; at least two AZs)",
        default=(),
        check=lambda v: (
            None if all(re.match(r"^subnet-[0-9a-f]+$", s) for s in v) else "must be subnet ids (subnet-...)"
        ),
    )
    vpc_id: str | None = setting(
        "database.vpcId", "VPC of the RDS security group (rds mode)", pattern=r"^vpc-[0-9a-f]+$"
    )
    allowed_cidrs: tuple[str, ...] = setting(
        "database.allowedCidrs", "cluster network(s) allowed to reach port 5432 (rds mode)", default=(), check=_cidrs
    )
    storage_size: str = setting("database.storageSize", "in-cluster volume size", default="10Gi", check=_quantity)
    storage_class: str | None = setting(
        "database.storageClass", "StorageClass of the in-cluster volume; unset = cluster default"
    )


@dataclass(frozen=True)
class NfsSettings:
    server: str = setting("nfs.server", "NFS server (host name or IP)", required=True, pattern=r"^[A-Za-z0-9.-]+$")
    path: str = setting("nfs.path", "exported base path; volumes live in sub-directories", required=True, pattern=r"^/")
    mount_options: tuple[str, ...] = setting(
        "nfs.mountOptions",
        "NFS mount options",
        default=("nfsvers=4.1", "hard", "timeo=600", "retrans=2", "noresvport"),
        check=lambda v: None if v else "must not be empty",
    )
    serving_logs_size: str = setting(
        "nfs.servingLogsSize", "capacity of the serving log volume", default="10Gi", check=_quantity
    )
    airflow_logs_size: str = setting(
        "nfs.airflowLogsSize", "capacity of the Airflow log volume", default="20Gi", check=_quantity
    )


@dataclass(frozen=True)
class MlflowSettings:
    chart_version: str = setting("mlflow.chartVersion", "community-charts mlflow chart version", default="1.11.5")
    image_tag: str | None = setting(
        "mlflow.imageTag", "MLflow image tag; unset = the chart's appVersion", check=_image_tag
    )
    basic_auth: bool = setting(
        "mlflow.basicAuth", "enable MLflow basic auth with a generated admin password", default_fn=_by_env(False, True)
    )
    job_execution: bool = setting(
        "mlflow.jobExecution", "MLflow background job execution (~2 GB more memory)", default=False
    )
    replicas: int = setting(
        "mlflow.replicas", "MLflow server replicas", default_fn=_by_env(1, 2), minimum=1, maximum=20
    )
    cpu: str = setting("mlflow.cpu", "MLflow CPU request", default="250m", check=_quantity)
    memory: str = setting(
        "mlflow.memory", "MLflow memory request and limit", default_fn=_by_env("1Gi", "2Gi"), check=_quantity
    )


@dataclass(frozen=True)
class AirflowSettings:
    chart_version: str = setting("airflow.chartVersion", "official Apache Airflow chart version", default="1.21.0")
    executor: Literal["KubernetesExecutor", "CeleryExecutor"] = setting(
        "airflow.executor",
        "Airflow executor",
        default="KubernetesExecutor",
        choices=("KubernetesExecutor", "CeleryExecutor"),
    )
    image_repository: str = setting(
        "airflow.imageRepository", "Airflow image that carries the DAGs' dependencies", default="apache/airflow"
    )
    image_tag: str = setting(
        "airflow.imageTag",
        "tag of that image (build services/airflow/Dockerfile for the DAGs' libraries)",
        default="3.3.2-python3.11",
        check=_image_tag,
    )
    git_repo: str = setting(
        "airflow.gitRepo", "git URL of the DAGs (git-sync)", required=True, pattern=r"^(https://|ssh://|git@)"
    )
    git_branch: str = setting("airflow.gitBranch", "branch git-sync follows", default="main")
    git_sub_path: str = setting("airflow.gitSubPath", "folder of the DAGs in the repository", default="dags")
    remote_logging: bool = setting(
        "airflow.remoteLogging",
        "task logs to the bucket's Airflow prefix (true) or to the NFS log volume (false)",
        default=True,
    )
    git_ssh_key: Secret | None = setting(
        "airflow.gitSshKey", "SSH private key for git-sync (secret); unset = public HTTPS repository", secret=True
    )


@dataclass(frozen=True)
class ModelProfile:
    """Resources of the serving pods for one kind of model."""

    cpu: str
    memory: str
    gpus: int = 0
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, str], ...] = ()


_DEFAULT_PROFILES = {
    # 1Gi holds DEFAULT_WORKERS workers (serving_rules.min_memory_bytes; _cross_checks refuses less).
    "small": {"cpu": "250m", "memory": "1Gi"},
    "large": {"cpu": "2", "memory": "4Gi"},
    "gpu": {
        "cpu": "4",
        "memory": "16Gi",
        "gpus": 1,
        "nodeSelector": {"nvidia.com/gpu.present": "true"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    },
}


def _check_profiles(value: Any) -> str | None:
    if not isinstance(value, dict) or not value:
        return "must be a non-empty object of profile name -> {cpu, memory, gpus?, nodeSelector?, tolerations?}"
    for name, prof in value.items():
        if not isinstance(prof, dict):
            return f"profile {name!r} must be an object"
        unknown = set(prof) - {"cpu", "memory", "gpus", "nodeSelector", "tolerations"}
        if unknown:
            return f"profile {name!r} has unknown fields {sorted(unknown)}"
        for q in ("cpu", "memory"):
            if q not in prof or _quantity(prof[q]):
                return f"profile {name!r} needs {q} as a Kubernetes quantity"
        if not isinstance(prof.get("gpus", 0), int) or prof.get("gpus", 0) < 0:
            return f"profile {name!r}: gpus must be a whole number >= 0"
    return None


def _routing(value: Any) -> RoutingConfig:
    """The serving service's own routing models: a pod never starts on a routing the stack accepted."""
    try:
        return parse_routing(value)
    except ValueError as exc:
        raise ValueError(f"is not a valid routing: {exc}") from None


@dataclass(frozen=True)
class ServingSettings:
    image: str = setting("serving.image", "serving image repository", default="ghcr.io/mlops-platform/serving")
    image_tag: str = setting("serving.imageTag", "serving image tag (pinned)", default="0.1.0", check=_image_tag)
    model_name: str = setting(
        "serving.modelName", "registered model to serve", default="iris-classifier", pattern=r"^[A-Za-z0-9_.-]+$"
    )
    aliases: tuple[str, ...] = setting(
        "serving.aliases",
        f"MLflow aliases to load, each matching `{ALIAS_PATTERN}`",
        default=DEFAULT_ALIASES,
        check=lambda v: None if v and not invalid_aliases(v) else f"must be alias names matching {ALIAS_PATTERN}",
    )
    routing: RoutingConfig = setting(
        "serving.routing",
        f'routing object `{{"mode": ..., ...}}`; mode one of {", ".join(ROUTING_MODES)} (docs/serving.md, Routing)',
        default_fn=_by_env(
            FixedRouting(alias=DEFAULT_ALIASES[0]),
            CanaryRouting(primary=DEFAULT_ALIASES[0], challenger=DEFAULT_ALIASES[1], percent=10),
        ),
        parse=_routing,
    )
    min_replicas: int = setting("serving.minReplicas", "HPA minimum", default_fn=_by_env(1, 2), minimum=1, maximum=100)
    max_replicas: int = setting("serving.maxReplicas", "HPA maximum", default_fn=_by_env(2, 10), minimum=1, maximum=500)
    workers: int = setting(
        "serving.workers",
        f"uvicorn workers per pod; each needs {PROCESS_MEMORY_BYTES // 2**20}Mi of the profile's memory "
        "(docs/serving.md, Sizing)",
        default=DEFAULT_WORKERS,
        minimum=1,
        maximum=32,
    )
    poll_seconds: int = setting("serving.pollSeconds", "registry watcher interval", default=30, minimum=1, maximum=3600)
    profile: str = setting("serving.profile", "model profile the pods use (a key of serving.profiles)", default="small")
    profiles: Mapping[str, ModelProfile] = setting(
        "serving.profiles",
        "model profiles: name -> {cpu, memory, gpus, nodeSelector, tolerations}",
        default=_DEFAULT_PROFILES,
        check=_check_profiles,
    )


@dataclass(frozen=True)
class AlertSettings:
    slack_webhook_url: Secret | None = setting(
        "alerts.slackWebhookUrl", "Slack incoming webhook (secret); unset = alerts are only logged", secret=True
    )


@dataclass(frozen=True)
class ChartSettings:
    traefik: str = setting("charts.traefik", "Traefik chart version", default="41.3.0")
    cert_manager: str = setting("charts.certManager", "cert-manager chart version", default="v1.21.1")


# --- images (the platform's own container images) --------------------------------------------------
# One registry path for every image the platform builds (.github/workflows/images.yml pushes there);
# a reference without a registry path (`serving@sha256:...`, `serving:0.1.0`) is an image under it.
# Prod runs images pinned by digest only: the deploy workflow passes the digests it built from the
# deployed commit as `images.*` configuration (docs/delivery.md).
_IMAGE_NAME = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE_HOST = r"(?:localhost|[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)+)(?::[0-9]+)?"
_IMAGE_REF = re.compile(
    rf"^(?P<repository>(?:{_IMAGE_HOST}/)?{_IMAGE_NAME}(?:/{_IMAGE_NAME})*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>[a-z0-9]+:[a-zA-Z0-9]+))?$"
)
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_REGISTRY = re.compile(rf"^{_IMAGE_HOST}(?:/{_IMAGE_NAME})*$")
DEFAULT_REGISTRY = "ghcr.io/acme/mlops-platform"  # this repository's own GitHub container registry path


@dataclass(frozen=True)
class ImageRef:
    """A container image reference: repository, and a tag, a digest or both."""

    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str, registry: str | None = None) -> ImageRef:
        """Parse `repo:tag`, `repo@sha256:<64 hex>` or `repo:tag@sha256:...`; a repository without a
        `/` is an image under `registry`. Raises ValueError saying what is wrong."""
        m = _IMAGE_REF.match(text.strip()) if isinstance(text, str) else None
        if m is None:
            raise ValueError("must be an image reference: <repository>:<tag> or <repository>@sha256:<64 hex digits>")
        repository, tag, digest = m.group("repository"), m.group("tag"), m.group("digest")
        if digest is not None and not _DIGEST.match(digest):
            raise ValueError(f"has a malformed digest {digest!r}: expected sha256: and 64 lowercase hex digits")
        if digest is None and tag is None:
            raise ValueError("needs a tag or a digest (without one Kubernetes pulls :latest)")
        if digest is None and tag == "latest":
            raise ValueError("must be a pinned tag or a digest, not 'latest'")
        if registry and "/" not in repository:
            repository = f"{registry}/{repository}"
        return cls(repository, tag, digest)

    @property
    def pinned(self) -> bool:
        """Pinned by digest: the reference always pulls the same bytes."""
        return self.digest is not None

    @property
    def reference(self) -> str:
        """What a pod spec's `image:` takes (a digest wins over a tag when both are given)."""
        return self.repository + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


def _check_image(value: Any) -> str | None:
    try:
        ImageRef.parse(value)
    except ValueError as exc:
        return str(exc)
    return None


def _check_registry(value: Any) -> str | None:
    if not _REGISTRY.match(str(value)):
        return "must be a registry path such as ghcr.io/<owner>/<repository> (lowercase, no tag)"
    return None


@dataclass(frozen=True)
class ImagesSettings:
    registry: str = setting(
        "images.registry",
        "registry path of the images the platform builds (the deploy workflow pushes there); "
        "default: this repository's GitHub container registry path",
        default=DEFAULT_REGISTRY,
        check=_check_registry,
    )
    serving: str | None = setting(
        "images.serving",
        "serving image: <repository>@sha256:<digest> (what the deploy workflow passes) or <repository>:<tag>; "
        "a name without '/' is under images.registry; prod: pinned by digest",
        default_fn=_by_env("serving:0.1.0", None),
        check=_check_image,
    )
    airflow: str | None = setting(
        "images.airflow",
        "Airflow image (services/airflow/Dockerfile), same forms as images.serving; prod: pinned by digest",
        default_fn=_by_env("airflow:3.3.2-mlops-0.1.0", None),
        check=_check_image,
    )

    def image(self, name: str) -> ImageRef | None:
        """The resolved reference of image `name` (`serving`, `airflow`), None when unset."""
        value = getattr(self, name)
        return None if value is None else ImageRef.parse(value, self.registry)

    @property
    def serving_image(self) -> ImageRef | None:
        return self.image("serving")

    @property
    def airflow_image(self) -> ImageRef | None:
        return self.image("airflow")


IMAGE_NAMES = ("serving", "airflow")  # every image the platform builds: one images.<name> setting each


def _check_images(s: StackSettings, problems: list[str]) -> None:
    """Prod runs every platform image pinned by digest (the deploy workflow passes the digests).

    Unset in prod is still accepted while the components fall back to serving.image/serving.imageTag and
    airflow.imageRepository/airflow.imageTag; once those keys are retired, unset must be refused here too."""
    if not s.is_prod:
        return
    for name in IMAGE_NAMES:
        key = f"{PROJECT}:images.{name}"
        ref = s.images.image(name)
        if ref is not None and not ref.pinned:
            problems.append(
                f"{s.source}: {key} must be pinned by digest in prod (<repository>@sha256:<64 hex>); "
                f"got {_quote(getattr(s.images, name))}"
            )


@dataclass(frozen=True)
class StackSettings:
    """Everything the program reads from the stack's configuration."""

    stack: str
    source: str
    kubernetes: KubernetesSettings
    ingress: IngressSettings
    artifacts: ArtifactSettings
    database: DatabaseSettings
    nfs: NfsSettings
    mlflow: MlflowSettings
    airflow: AirflowSettings
    serving: ServingSettings
    alerts: AlertSettings
    charts: ChartSettings
    images: ImagesSettings
    environment: Environment = setting(
        "environment",
        "dev, staging or prod; default = the stack name when it is one of those",
        choices=ENVIRONMENTS,
        default_fn=lambda stack: stack if stack in ENVIRONMENTS else None,
        required=True,
    )
    aws_region: str = setting(
        "aws.region",
        "AWS region of the bucket and database",
        default="us-east-1",
        pattern=r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$",
    )
    protect: bool = setting(
        "protect", "protect data-bearing resources (bucket, database, volumes) from deletion", default=True
    )

    @property
    def namespace_prefix(self) -> str:
        return self.kubernetes.namespace_prefix or f"mlops-{self.stack}"

    def namespace(self, service: str) -> str:
        """Namespace of one platform service, e.g. namespace('mlflow') -> 'mlops-dev-mlflow'."""
        return f"{self.namespace_prefix}-{service}"

    def host(self, service: str) -> str:
        return f"{service}.{self.ingress.domain}"

    @property
    def ingress_class(self) -> str:
        return self.ingress.class_name or f"{self.namespace_prefix}-traefik"

    @property
    def ingress_namespace(self) -> str:
        return self.ingress.controller_namespace or self.namespace("ingress")

    @property
    def is_prod(self) -> bool:
        return self.environment == "prod"


# --- loading ----------------------------------------------------------------------------------------
_GROUPS: dict[str, type] = {
    "": StackSettings,
    "kubernetes": KubernetesSettings,
    "ingress": IngressSettings,
    "artifacts": ArtifactSettings,
    "database": DatabaseSettings,
    "nfs": NfsSettings,
    "mlflow": MlflowSettings,
    "airflow": AirflowSettings,
    "serving": ServingSettings,
    "alerts": AlertSettings,
    "charts": ChartSettings,
    "images": ImagesSettings,
}
_GROUP_FIELDS = {
    "kubernetes",
    "ingress",
    "artifacts",
    "database",
    "nfs",
    "mlflow",
    "airflow",
    "serving",
    "alerts",
    "charts",
    "images",
}


def declared() -> Iterator[tuple[str, Meta, Any]]:
    """Every declared setting: (full key without namespace, metadata, annotation)."""
    for cls in _GROUPS.values():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            meta = f.metadata.get("setting")
            if meta is not None:
                yield meta.key, meta, hints[f.name]


def _quote(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else json.dumps(value, default=str)


def _parse(raw: Any, annotation: Any) -> tuple[Any, str | None]:
    """Convert a raw config value (a string, or a JSON value) to the annotated type."""
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin in (Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _parse(raw, inner[0])
    if annotation is Secret:
        return (Secret(str(raw)), None) if isinstance(raw, str) else (None, "must be a string")
    if annotation is bool:
        if isinstance(raw, bool):
            return raw, None
        if str(raw).lower() in ("true", "false"):
            return str(raw).lower() == "true", None
        return None, "must be true or false"
    if annotation is int:
        if isinstance(raw, bool):
            return None, "must be a whole number"
        try:
            return int(str(raw)), None
        except ValueError:
            return None, "must be a whole number"
    if annotation is str or origin is Literal:
        if isinstance(raw, (dict, list, bool)):
            return None, "must be a string"
        return str(raw), None
    if origin is tuple or origin is list:
        value = raw
        if isinstance(raw, str):
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = [s.strip() for s in raw.split(",") if s.strip()]
        if not isinstance(value, list):
            return None, "must be a list"
        return tuple(value), None
    if origin in (Mapping, dict) or annotation is dict:
        value = raw
        if isinstance(raw, str):
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                return None, "must be an object"
        if not isinstance(value, dict):
            return None, "must be an object"
        return value, None
    raise TypeError(f"unsupported setting type {annotation!r}")


def _parse_with(parse: Callable[[Any], Any], raw: Any) -> tuple[Any, str | None]:
    """A JSON object (or its text) converted by a setting's own parser."""
    value, problem = _parse(raw, dict)
    if problem is not None:
        return None, problem
    try:
        return parse(value), None
    except ValueError as exc:
        return None, str(exc)


def _validate(meta: Meta, value: Any) -> str | None:
    if meta.choices and value not in meta.choices:
        return f"must be one of {', '.join(meta.choices)}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if meta.minimum is not None and value < meta.minimum:
            return f"must be >= {meta.minimum:g}"
        if meta.maximum is not None and value > meta.maximum:
            return f"must be <= {meta.maximum:g}"
    if meta.pattern and isinstance(value, str) and not re.match(meta.pattern, value):
        return f"must match {meta.pattern}"
    if meta.check is not None:
        return meta.check(value)
    return None


def _profiles(raw: Mapping[str, Any]) -> dict[str, ModelProfile]:
    return {
        name: ModelProfile(
            cpu=str(p["cpu"]),
            memory=str(p["memory"]),
            gpus=int(p.get("gpus", 0)),
            node_selector=dict(p.get("nodeSelector", {})),
            tolerations=tuple(dict(t) for t in p.get("tolerations", [])),
        )
        for name, p in raw.items()
    }


def load_settings(
    stack: str,
    config: Mapping[str, Any],
    secret_keys: frozenset[str] | set[str] = frozenset(),
    source: str | None = None,
) -> StackSettings:
    """Validate a stack's configuration (keys `mlops-platform:<key>`, other namespaces ignored).

    Raises `SettingsError` listing every problem, each naming `source` and the full key.
    """
    source = source or f"Pulumi.{stack}.yaml"
    problems: list[str] = []
    ns = f"{PROJECT}:"
    ours = {k[len(ns) :]: v for k, v in config.items() if k.startswith(ns)}
    known = {key for key, _, _ in declared()}
    for key in sorted(set(ours) - known):
        close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.75)
        hint = f" (did you mean {ns}{close[0]}?)" if close else ""
        problems.append(f"{source}: {ns}{key} is not a known setting{hint}")

    env_raw = ours.get("environment", stack if stack in ENVIRONMENTS else None)
    environment = env_raw if env_raw in ENVIRONMENTS else "dev"

    groups: dict[str, dict[str, Any]] = {name: {} for name in _GROUPS}
    for cls_name, cls in _GROUPS.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            meta: Meta | None = f.metadata.get("setting")
            if meta is None:
                continue
            full = f"{ns}{meta.key}"
            if meta.key in ours:
                raw = ours[meta.key]
                if meta.secret and full not in secret_keys:
                    problems.append(
                        f"{source}: {full} is a secret; store it with "
                        f"`pulumi config set --secret {meta.key} ...` (it is in plaintext now)"
                    )
                    continue
                value, problem = _parse_with(meta.parse, raw) if meta.parse else _parse(raw, hints[f.name])
                if problem is None and value is not None and not meta.secret:
                    problem = _validate(meta, value)
                if problem is not None:
                    shown = "[secret]" if meta.secret else _quote(raw)
                    problems.append(f"{source}: {full} {problem}; got {shown}")
                    continue
            else:
                if meta.default_fn is not None:
                    value = meta.default_fn(stack if meta.key == "environment" else environment)
                else:
                    value = meta.default
                if value is None and meta.required:
                    problems.append(f"{source}: {full} is required ({meta.doc})")
                    continue
            if f.name == "profiles" and cls is ServingSettings:
                value = _profiles(value)
            groups[cls_name][f.name] = value

    if problems:
        raise SettingsError(problems)

    nested = {name: _GROUPS[name](**groups[name]) for name in _GROUP_FIELDS}
    settings = StackSettings(stack=stack, source=source, **groups[""], **nested)
    _cross_checks(settings, problems)
    if problems:
        raise SettingsError(problems)
    return settings


def _cross_checks(s: StackSettings, problems: list[str]) -> None:
    """Rules that involve more than one key."""
    _check_images(s, problems)
    src, ns = s.source, f"{PROJECT}:"
    if s.database.mode == "rds":
        if len(s.database.subnet_ids) < 2:
            problems.append(f"{src}: {ns}database.subnetIds needs at least two subnets when database.mode is rds")
        if not s.database.vpc_id:
            problems.append(f"{src}: {ns}database.vpcId is required when database.mode is rds")
        if not s.database.allowed_cidrs:
            problems.append(
                f"{src}: {ns}database.allowedCidrs is required when database.mode is rds (the cluster network)"
            )
    if s.ingress.controller == "existing":
        for key, value in (
            ("className", s.ingress.class_name),
            ("controllerNamespace", s.ingress.controller_namespace),
        ):
            if not value:
                problems.append(f"{src}: {ns}ingress.{key} is required when ingress.controller is existing")
    if s.ingress.tls_issuer == "acme" and not s.ingress.acme_email:
        problems.append(f"{src}: {ns}ingress.acmeEmail is required when ingress.tlsIssuer is acme")
    if s.serving.profile not in s.serving.profiles:
        problems.append(
            f"{src}: {ns}serving.profile must be one of {', '.join(sorted(s.serving.profiles))}; got "
            f"{_quote(s.serving.profile)}"
        )
    else:
        profile = s.serving.profiles[s.serving.profile]
        need = min_memory_bytes(s.serving.workers)
        if quantity_bytes(profile.memory) < need:
            problems.append(
                f"{src}: {ns}serving.workers is {s.serving.workers}: that many workers need a memory limit of at least "
                f"{need // 2**20}Mi but profile {_quote(s.serving.profile)} has {profile.memory}; "
                f"lower serving.workers or raise serving.profiles.{s.serving.profile}.memory"
            )
    if s.serving.min_replicas > s.serving.max_replicas:
        problems.append(f"{src}: {ns}serving.minReplicas must be <= serving.maxReplicas")
    missing = [a for a in s.serving.routing.aliases() if a not in s.serving.aliases]
    if missing:
        problems.append(f"{src}: {ns}serving.routing uses aliases {missing} that serving.aliases does not load")
    if s.is_prod and not s.protect:
        problems.append(f"{src}: {ns}protect must stay true in prod")
    if s.is_prod and s.database.mode == "rds":
        for key, on in (("multiAz", s.database.multi_az), ("deletionProtection", s.database.deletion_protection)):
            if not on:
                problems.append(f"{src}: {ns}database.{key} must stay true in prod")


def from_pulumi() -> StackSettings:
    """Load the settings of the running stack (inside `pulumi up`/`preview` or the mock harness)."""
    import pulumi
    from pulumi.runtime import config as runtime_config

    config: dict[str, Any] = dict(runtime_config.get_config_env())
    config.update(runtime_config.CONFIG.get())
    secret_keys = set(runtime_config.get_config_secret_keys_env()) | set(runtime_config._SECRET_KEYS.get())
    return load_settings(pulumi.get_stack(), config, secret_keys)


def settings_table() -> str:
    """Markdown table of every setting (used by docs/configuration.md)."""
    rows = ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for key, meta, annotation in declared():
        if meta.default_fn is not None:
            default = f"dev: `{_fmt(meta.default_fn('dev'))}`, prod: `{_fmt(meta.default_fn('prod'))}`"
        elif meta.default is not None:
            default = f"`{_fmt(meta.default)}`"
        else:
            default = "required" if meta.required else "unset"
        kind = "secret" if meta.secret else _type_name(annotation, meta)
        rows.append(f"| `{PROJECT}:{key}` | {kind} | {default} | {meta.doc} |")
    return "\n".join(rows)


def _fmt(value: Any) -> str:
    if isinstance(value, BaseModel):
        return json.dumps(value.model_dump(mode="json"))
    return json.dumps(value) if isinstance(value, (dict, list, tuple)) else str(value)


def _type_name(annotation: Any, meta: Meta) -> str:
    if meta.choices:
        return " \\| ".join(meta.choices)
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        annotation = next(a for a in get_args(annotation) if a is not type(None))
        origin = get_origin(annotation)
    if origin is tuple:
        return "list"
    if origin in (Mapping, dict) or (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        return "object"
    return getattr(annotation, "__name__", str(annotation))
