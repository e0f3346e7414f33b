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
import math
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from services.common import api_rules, env_settings, git_access
from services.common.catalog import (
    DEFAULT_PROFILES,
    IMAGE_KINDS,
    Catalog,
    CatalogError,
    ImageBuild,
    Profile,
    names,
    parse_catalog,
)
from services.common.serving_rules import QUANTITY, quantity_bytes

PROJECT = "mlops-platform"
ENVIRONMENTS = ("dev", "staging", "prod")

Environment = Literal["dev", "staging", "prod"]
DefaultFn = Callable[[str], Any]


class SettingsError(env_settings.SettingsError):
    """Invalid or unknown stack settings (the services' settings error, with several problems): `problems` holds
    one line per problem."""

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
    mode: Literal["nfs", "efsAccessPoint"] = setting(
        "nfs.mode",
        "nfs = volumes are sub-directories of nfs.path, created with the pods' ownership by a one-shot Job per volume "
        "(the export must let root chown: no_root_squash, or EFS); efsAccessPoint = one EFS access point per "
        "volume (POSIX user and root directory enforced by EFS; needs the EFS CSI driver on the cluster)",
        default="nfs",
        choices=("nfs", "efsAccessPoint"),
    )
    efs_file_system_id: str | None = setting(
        "nfs.efsFileSystemId",
        "EFS file system of the access points (efsAccessPoint); default: the fs-... of nfs.server when it is an "
        "EFS DNS name",
        pattern=r"^fs-[0-9a-f]{8,40}$",
    )

    @property
    def file_system_id(self) -> str | None:
        """The EFS file system: nfs.efsFileSystemId, else the one nfs.server names (fs-....efs.<region>...)."""
        if self.efs_file_system_id:
            return self.efs_file_system_id
        match = re.match(r"^(fs-[0-9a-f]{8,40})\.efs\.", self.server)
        return match.group(1) if match else None


@dataclass(frozen=True)
class MlflowSettings:
    chart_version: str = setting("mlflow.chartVersion", "community-charts mlflow chart version", default="1.11.5")
    image_tag: str | None = setting(
        "mlflow.imageTag", "MLflow image tag; unset = the chart's appVersion", check=_image_tag
    )
    basic_auth: bool = setting(
        "mlflow.basicAuth",
        "MLflow basic auth with a generated admin password and an ordinary user for the DAGs and serving (every "
        "environment: the tracking server holds the registry that serving loads models from)",
        default=True,
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


GIT_KNOWN_HOSTS_KEY = "airflow.gitKnownHosts"
GIT_CREDENTIALS_PREFIX = "airflow.gitCredentials."
# The keys of one set of named git credentials, `airflow.gitCredentials.<name>.<key>`: (field, secret, doc).
GIT_CREDENTIAL_FIELDS: dict[str, tuple[str, bool, str]] = {
    "sshKey": (
        "ssh_key",
        True,
        "SSH private key of a read-only deploy key, for the ssh:// and git@ training sources whose "
        "training.source.credentials is <name>",
    ),
    "token": ("token", True, "read-only access token for the https:// training sources whose credentials is <name>"),
    "username": ("username", False, f"user name sent with that token; unset = {git_access.DEFAULT_TOKEN_USERNAME}"),
}


@dataclass(frozen=True)
class GitCredentials:
    """Read-only git credentials that training sources name (`training.source.credentials: <name>`): the secret
    stack settings `airflow.gitCredentials.<name>.sshKey` and `.token`, and `.username`. Each is its own key, stored
    encrypted (`pulumi config set --secret`), so that a plaintext one is found and refused like any secret."""

    ssh_key: Secret | None = None
    token: Secret | None = None
    username: str = git_access.DEFAULT_TOKEN_USERNAME


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
        "airflow.imageRepository",
        "Airflow image that carries the DAGs' dependencies; used when images.airflow is unset",
        default="apache/airflow",
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
        "airflow.gitSshKey",
        "SSH private key for git-sync (secret); unset = public HTTPS repository. Also the training pods' key for "
        "the SSH sources that name no training.source.credentials",
        secret=True,
    )
    git_known_hosts: str | None = setting(
        GIT_KNOWN_HOSTS_KEY,
        "SSH host keys (known_hosts lines, as ssh-keyscan prints them) that git-sync and the training pods accept; "
        "unset = the keys github.com and gitlab.com publish. Host key checking is never off",
        check=lambda value: git_access.known_hosts_problem(str(value)),
    )
    git_credentials: Mapping[str, GitCredentials] = field(default_factory=dict)
    """Named read-only credentials of the training sources, from the keys `airflow.gitCredentials.<name>.*`."""

    @property
    def known_hosts(self) -> str:
        """The SSH host keys the platform's git clients accept (airflow.gitKnownHosts, else GitHub's and GitLab's)."""
        return self.git_known_hosts or git_access.DEFAULT_KNOWN_HOSTS


@dataclass(frozen=True)
class ServingSettings:
    """Platform-wide serving settings; everything per model lives in `models.<name>.serving`."""

    image: str = setting(
        "serving.image",
        "serving image repository (used when images.serving is unset)",
        default="ghcr.io/mlops-platform/serving",
    )
    image_tag: str = setting("serving.imageTag", "serving image tag (pinned)", default="0.1.0", check=_image_tag)
    poll_seconds: int = setting("serving.pollSeconds", "registry watcher interval", default=30, minimum=1, maximum=3600)


_AIRFLOW_USER = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


def _resources(value: dict[str, Any]) -> dict[str, str]:
    """`{cpu, memory}` as Kubernetes quantities (a YAML number such as `cpu: 1` is taken as its text)."""
    if set(value) != {"cpu", "memory"}:
        raise ValueError("must be an object with exactly cpu and memory")
    out = {key: str(value[key]) for key in ("cpu", "memory")}
    for key, quantity in out.items():
        if isinstance(value[key], bool) or not QUANTITY.match(quantity):
            raise ValueError(f"{key} must be a Kubernetes quantity such as 500m, 2 or 4Gi")
    return out


@dataclass(frozen=True)
class ApiSettings:
    """The platform API (services/api, docs/api.md): its replicas, its Airflow user, its loops, its pods' size."""

    replicas: int = setting(
        "api.replicas",
        "API replicas (any replica serves any client; one at a time leads the reconciler)",
        default_fn=_by_env(1, 2),
        minimum=1,
        maximum=10,
    )
    airflow_user: str = setting(
        "api.airflowUser",
        "Airflow user the API triggers and follows DAG runs as (created by a Job, role User; password generated)",
        default=api_rules.AIRFLOW_USER,
        pattern=_AIRFLOW_USER,
    )
    reconcile_seconds: float = setting(
        "api.reconcileSeconds",
        "interval of the reconciler that brings unfinished trainings and rollbacks up to date from Airflow and MLflow",
        default=api_rules.RECONCILE_SECONDS.default,
        minimum=api_rules.RECONCILE_SECONDS.minimum,
        maximum=api_rules.RECONCILE_SECONDS.maximum,
    )
    events_poll_seconds: float = setting(
        "api.eventsPollSeconds",
        "how often an open event stream (SSE) looks for new events",
        default=api_rules.EVENTS_POLL_SECONDS.default,
        minimum=api_rules.EVENTS_POLL_SECONDS.minimum,
        maximum=api_rules.EVENTS_POLL_SECONDS.maximum,
    )
    requests: Mapping[str, str] = setting(
        "api.requests",
        "CPU and memory requests of each API pod: {cpu, memory}",
        default=dict(api_rules.REQUESTS),
        parse=_resources,
    )
    limits: Mapping[str, str] = setting(
        "api.limits",
        "CPU and memory limits of each API pod: {cpu, memory} (memory at least the request)",
        default=dict(api_rules.LIMITS),
        parse=_resources,
    )


# Keys of the single-model platform, refused with the key that took their place.
RETIRED_KEYS: dict[str, str] = {
    "serving.modelName": "models.<name> (every model of the catalog is served under its own name)",
    "serving.aliases": "models.<name>.serving.aliases",
    "serving.routing": "models.<name>.serving.routing",
    "serving.profile": "models.<name>.serving.profile",
    "serving.profiles": "profiles (shared by the training and the serving pods)",
    "serving.minReplicas": "models.<name>.serving.minReplicas",
    "serving.maxReplicas": "models.<name>.serving.maxReplicas",
    "serving.workers": "models.<name>.serving.workers",
}


@dataclass(frozen=True)
class AlertSettings:
    slack_webhook_url: Secret | None = setting(
        "alerts.slackWebhookUrl", "Slack incoming webhook (secret); unset = alerts are only logged", secret=True
    )


@dataclass(frozen=True)
class ChartSettings:
    traefik: str = setting("charts.traefik", "Traefik chart version", default="41.3.0")
    cert_manager: str = setting("charts.certManager", "cert-manager chart version", default="v1.21.1")
    kube_prometheus_stack: str = setting(
        "charts.kubePrometheusStack", "kube-prometheus-stack chart version: monitoring", default="88.5.3"
    )
    loki: str = setting("charts.loki", "Grafana Loki chart version, grafana-community repository", default="18.11.0")
    alloy: str = setting("charts.alloy", "Grafana Alloy chart version", default="1.11.1")


_DURATION = r"^[0-9]+(s|m|h|d|w|y)$"


@dataclass(frozen=True)
class ObservabilitySettings:
    """Monitoring (Prometheus, Alertmanager, Grafana) and central logs (Loki, Alloy) of the stack:
    docs/observability.md."""

    enabled: bool = setting(
        "observability.enabled",
        "deploy monitoring and central logs with the stack (kube-prometheus-stack, Loki, Alloy)",
        default=True,
    )
    retention: str = setting(
        "observability.retention",
        "how long Prometheus keeps samples (a Prometheus duration: 15d, 8w)",
        default_fn=_by_env("15d", "30d"),
        pattern=_DURATION,
    )
    retention_size: str | None = setting(
        "observability.retentionSize",
        "Prometheus deletes the oldest blocks beyond this size (e.g. 40GB); unset = by time only",
        pattern=r"^[0-9]+(KB|MB|GB|TB)$",
    )
    storage_size: str = setting(
        "observability.storageSize",
        "Prometheus volume size",
        default_fn=_by_env("20Gi", "100Gi"),
        check=_quantity,
    )
    storage_class: str | None = setting(
        "observability.storageClass",
        "StorageClass of the Prometheus, Alertmanager and Loki volumes; unset = cluster default",
    )
    scrape_interval: str = setting(
        "observability.scrapeInterval", "how often Prometheus scrapes every target", default="30s", pattern=_DURATION
    )
    log_retention_days: int = setting(
        "observability.logRetentionDays",
        "days Loki keeps log lines (deleted by its compactor)",
        default_fn=_by_env(14, 30),
        minimum=1,
        maximum=3650,
    )
    log_storage_size: str = setting(
        "observability.logStorageSize",
        "Loki's volume (write-ahead log, index cache); chunks live in the bucket",
        default="10Gi",
        check=_quantity,
    )


@dataclass(frozen=True)
class RetentionSettings:
    """How long the platform's own logs are kept (Loki's: observability.logRetentionDays)."""

    airflow_logs_days: int = setting(
        "retention.airflowLogsDays",
        "days Airflow's task logs are kept: an S3 lifecycle rule expires the bucket's Airflow log prefix "
        "(remote logging), the log volume's daily pruning CronJob deletes older files (airflow.remoteLogging false)",
        default_fn=_by_env(30, 90),
        minimum=1,
        maximum=3650,
    )
    serving_logs_days: int = setting(
        "retention.servingLogsDays",
        "days the serving log files are kept on their volume: a daily CronJob deletes older files of every pod "
        "(and the directories of pods gone since)",
        default_fn=_by_env(7, 30),
        minimum=1,
        maximum=3650,
    )


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
        check=_cidrs,
    )


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


def _check_profile_images(value: Any) -> str | None:
    for name, ref in value.items():
        if not re.fullmatch(_IMAGE_NAME, str(name)):
            return f"has {name!r}, which is not an image name (<profile>-<kind>, lowercase, e.g. gpu-serving)"
        if not isinstance(ref, str):
            return f"has {name!r}: {_quote(ref)}, which is not an image reference"
        problem = _check_image(ref)
        if problem is not None:
            return f"has {name!r}: {_quote(ref)}, which {problem}"
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
    api: str | None = setting(
        "images.api",
        "platform API image (services/api/Dockerfile), same forms as images.serving; prod: pinned by digest",
        default_fn=_by_env("api:0.1.0", None),
        check=_check_image,
    )

    profiles: Mapping[str, str] = setting(
        "images.profiles",
        "the profiles' images built from this repository's Dockerfiles (profiles.<p>.images.<kind>: {dockerfile, "
        "target}), by image name <profile>-<kind> (e.g. gpu-serving): their references, same forms as "
        "images.serving; written by `make images`, passed by the deploy workflow; prod: pinned by digest",
        default={},
        check=_check_profile_images,
    )

    def image(self, name: str) -> ImageRef | None:
        """The resolved reference of image `name` (`serving`, `airflow`, `api`), None when unset."""
        value = getattr(self, name)
        return None if value is None else ImageRef.parse(value, self.registry)

    @property
    def serving_image(self) -> ImageRef | None:
        return self.image("serving")

    @property
    def airflow_image(self) -> ImageRef | None:
        return self.image("airflow")


IMAGE_NAMES = ("serving", "airflow", "api")  # every image the platform builds: one images.<name> setting each


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
    for name, value in sorted(s.images.profiles.items()):
        if not ImageRef.parse(value).pinned:
            problems.append(
                f"{s.source}: {PROJECT}:images.profiles.{name} must be pinned by digest in prod "
                f"(<repository>@sha256:<64 hex>); got {_quote(value)}"
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
    api: ApiSettings
    alerts: AlertSettings
    charts: ChartSettings
    images: ImagesSettings
    retention: RetentionSettings
    network: NetworkSettings
    catalog: Catalog
    """The model catalog: `models` validated with `profiles` (services/common/catalog.py), parsed once, every
    profile image resolved to a reference."""
    profile_builds: Mapping[str, ProfileBuild]
    """The profile images built from this repository's Dockerfiles, by image name (`profile_builds`)."""
    observability: ObservabilitySettings
    models: Mapping[str, Any] = setting(
        "models",
        "the model catalog: registered model name -> {training, gate, serving}; every entry is trained by its "
        "own DAGs and served by its own deployment (docs/models.md)",
        required=True,
    )
    profiles: Mapping[str, Any] = setting(
        "profiles",
        "resource profiles of the training and serving pods: name -> {images, requests, limits, gpus, "
        "nodeSelector, tolerations, priorityClassName}; entries here add to or replace the shipped ones",
        default=DEFAULT_PROFILES,
    )
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

    def model_host(self, model: str) -> str:
        """The public host of a model's serving: `models.<model>.serving.host`, default
        `<slug>.models.<ingress.domain>`."""
        return (
            self.catalog.models[model].serving.host
            or f"{names(model)['slug']}.{MODELS_SUBDOMAIN}.{self.ingress.domain}"
        )

    @property
    def platform_serving_image(self) -> str:
        """The platform's serving image: images.serving when set, else serving.image:serving.imageTag."""
        ref = self.images.serving_image
        return ref.reference if ref is not None else f"{self.serving.image}:{self.serving.image_tag}"

    def serving_image(self, model: str) -> str:
        """The image of a model's serving pods: its serving profile's `images.serving`, else the platform's."""
        image = self.serving_profile(model).images.serving
        if isinstance(image, str):  # load_settings resolved it: a reference (a built image's recorded one)
            return ImageRef.parse(image, self.images.registry).reference
        return self.platform_serving_image

    @property
    def database_egress_cidrs(self) -> tuple[str, ...]:
        """rds mode: where the database's clients may open 5432 (network.databaseCidrs, else
        database.allowedCidrs)."""
        return self.network.database_cidrs or self.database.allowed_cidrs

    @property
    def fetched_sources(self) -> dict[str, str]:
        """The git URL each model's training run fetches its code from (airflow.gitRepo when its source names only
        a ref), by model; models trained from the platform's own checkout are left out."""
        return {
            model: spec.training.source.repo or self.airflow.git_repo
            for model, spec in sorted(self.catalog.models.items())
            if spec.training.source.fetched
        }

    @property
    def git_ssh_ports(self) -> tuple[int, ...]:
        """The ports the Airflow namespace's pods open SSH connections to: git-sync's and the training sources'."""
        urls = [self.airflow.git_repo, *self.fetched_sources.values()]
        return tuple(sorted({host[1] for url in urls if (host := git_access.ssh_host(url)) is not None}))

    def serving_profile(self, model: str) -> Profile:
        return self.catalog.profiles[self.catalog.models[model].serving.profile]

    @property
    def airflow_image(self) -> ImageRef:
        """The Airflow image (it also trains, unless a training profile names its own): images.airflow when set,
        else airflow.imageRepository:airflow.imageTag."""
        return self.images.airflow_image or ImageRef(self.airflow.image_repository, self.airflow.image_tag)

    @property
    def api_image(self) -> str:
        """The platform API's image (images.api; it has no other setting to fall back on)."""
        ref = self.images.image("api")
        if ref is None:
            raise SettingsError(
                [f"{self.source}: {PROJECT}:images.api is required (the platform API image, services/api/Dockerfile)"]
            )
        return ref.reference


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
    "api": ApiSettings,
    "alerts": AlertSettings,
    "charts": ChartSettings,
    "images": ImagesSettings,
    "retention": RetentionSettings,
    "network": NetworkSettings,
    "observability": ObservabilitySettings,
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
    "api",
    "alerts",
    "charts",
    "images",
    "retention",
    "network",
    "observability",
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
    if annotation is float:
        if isinstance(raw, bool):
            return None, "must be a number"
        try:
            number = float(str(raw))
        except ValueError:
            return None, "must be a number"
        return (number, None) if math.isfinite(number) else (None, "must be a finite number")
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


@dataclass(frozen=True)
class ProfileBuild:
    """An image the stack builds from a Dockerfile of this repository for its profiles (`profiles.<p>.images.<kind>`
    is an ImageBuild): its name (the key of its reference in `images.profiles`), the profile images that are it,
    as (profile, kind), and the models whose training or serving pods run it (empty: no pod of the stack does)."""

    name: str
    build: ImageBuild
    uses: tuple[tuple[str, str], ...]
    used_by: tuple[str, ...]


def profile_builds(catalog: Catalog, source: str, problems: list[str]) -> dict[str, ProfileBuild]:
    """Every image built from a Dockerfile for the profiles of `catalog` (as parsed, before references are
    resolved), by name. An image name that is not one, or one name built two ways, is a problem."""
    out: dict[str, ProfileBuild] = {}
    for profile, spec in sorted(catalog.profiles.items()):
        for kind, build in spec.images.builds().items():
            key = f"{source}: {PROJECT}:profiles.{profile}.images.{kind}"
            name = build.name(profile, kind)
            if not re.fullmatch(_IMAGE_NAME, name):
                problems.append(
                    f"{key} is built from {build.dockerfile} as the image {name!r}, which is not an image name: "
                    "name it with `image` (lowercase letters, digits and - . _)"
                )
                continue
            users = {m for m, model in catalog.models.items() if getattr(model, kind).profile == profile}
            seen = out.get(name)
            if seen is None:
                out[name] = ProfileBuild(name, build, ((profile, kind),), tuple(sorted(users)))
            elif seen.build.model_copy(update={"image": None}) != build.model_copy(update={"image": None}):
                other = "profiles.{}.images.{}".format(*seen.uses[0])
                problems.append(
                    f"{key} builds the image {name} from {build.dockerfile} ({build.target}), but {other} builds it "
                    f"from {seen.build.dockerfile} ({seen.build.target}): one image name, one build"
                )
            else:
                out[name] = ProfileBuild(
                    name, build, (*seen.uses, (profile, kind)), tuple(sorted(users | set(seen.used_by)))
                )
    return out


def _raw_catalog(top: Mapping[str, Any], source: str, problems: list[str]) -> Catalog | None:
    """`models` and `profiles` (the shipped profiles, with the stack's added or replaced) as one Catalog, profile
    images as written; each problem names its key path, e.g. `mlops-platform:models.iris.gate.metric Field
    required`. None when the catalog cannot be built."""
    if "models" not in top or "profiles" not in top:
        return None  # already reported: missing or not an object
    try:
        return parse_catalog(top["models"], {**DEFAULT_PROFILES, **top["profiles"]})
    except CatalogError as exc:
        problems.extend(f"{source}: {PROJECT}:{path} {message}" for path, message in exc.problems)
        return None


def _catalog(
    stack: str, top: Mapping[str, Any], images: Mapping[str, Any], source: str, problems: list[str]
) -> tuple[Catalog, dict[str, ProfileBuild]] | None:
    """The stack's Catalog with every profile image resolved to a reference: a reference under images.registry
    like the platform's own, a Dockerfile-built image to its reference in images.profiles. A built image that a
    model's pods run must be recorded there; one no pod runs is left unset. Also returns the built images
    (`profile_builds`). None when the catalog cannot be built."""
    catalog = _raw_catalog(top, source, problems)
    if catalog is None:
        return None
    registry = images.get("registry", DEFAULT_REGISTRY)
    recorded = images.get("profiles", {})
    builds = profile_builds(catalog, source, problems)
    built = {use: build for build in builds.values() for use in build.uses}
    resolved: dict[str, Profile] = {}
    for name, profile in catalog.profiles.items():
        refs: dict[str, str | None] = {}
        for kind in IMAGE_KINDS:
            value = getattr(profile.images, kind)
            key = f"{PROJECT}:profiles.{name}.images.{kind}"
            if isinstance(value, ImageBuild):
                build = built.get((name, kind))
                if build is None:
                    continue  # reported by profile_builds
                value = recorded.get(build.name)
                if value is None and build.used_by:
                    problems.append(
                        f"{source}: {key} is built from {build.build.dockerfile} but {PROJECT}:images.profiles has no "
                        f"{build.name} (the pods of {', '.join(build.used_by)} run it): build it and record its "
                        f"reference with `make images STACK={stack}`"
                    )
                    continue
                refs[kind] = None if value is None else ImageRef.parse(value, registry).reference
                continue
            if value is None:
                continue
            try:
                refs[kind] = ImageRef.parse(value, registry).reference
            except ValueError as exc:
                problems.append(f"{source}: {key} {exc}; got {_quote(value)}")
        resolved[name] = profile.model_copy(update={"images": profile.images.model_copy(update=refs)})
    return catalog.model_copy(update={"profiles": resolved}), builds


def stack_profile_builds(stack: str, config: Mapping[str, Any], source: str | None = None) -> dict[str, ProfileBuild]:
    """The profile images a stack's configuration builds from Dockerfiles (what `make images` and the images
    workflow build besides the platform's), found before their references are recorded. Raises SettingsError
    naming the key when `models` or `profiles` is invalid."""
    source = source or f"Pulumi.{stack}.yaml"
    problems: list[str] = []
    top: dict[str, Any] = {}
    hints = typing.get_type_hints(StackSettings)
    for f in dataclasses.fields(StackSettings):
        meta: Meta | None = f.metadata.get("setting")
        if meta is None or meta.key not in ("models", "profiles"):
            continue
        raw = config.get(f"{PROJECT}:{meta.key}")
        value, problem = (meta.default, None) if raw is None else _parse(raw, hints[f.name])
        if problem is not None or value is None:
            problems.append(f"{source}: {PROJECT}:{meta.key} {problem or 'is required'}")
        else:
            top[meta.key] = value
    catalog = _raw_catalog(top, source, problems)
    builds = profile_builds(catalog, source, problems) if catalog is not None else {}
    if problems:
        raise SettingsError(problems)
    return builds


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
    known = {key for key, _, _ in declared()} | {k for k in ours if _is_git_credentials_key(k)}
    for key in sorted(set(ours) & set(RETIRED_KEYS)):
        problems.append(f"{source}: {ns}{key} is no longer a setting: set {ns}{RETIRED_KEYS[key]}")
    for key in sorted(set(ours) - known - set(RETIRED_KEYS)):
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
                    problems.append(_plaintext_secret(source, meta.key))
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
            groups[cls_name][f.name] = value
    groups["airflow"]["git_credentials"] = _git_credentials(ours, secret_keys, source, problems)

    parsed = _catalog(stack, groups[""], groups["images"], source, problems)
    if problems or parsed is None:
        raise SettingsError(problems)
    catalog, builds = parsed

    nested = {name: _GROUPS[name](**groups[name]) for name in _GROUP_FIELDS}
    settings = StackSettings(
        stack=stack,
        source=source,
        catalog=catalog.for_environment(environment),
        profile_builds=builds,
        **groups[""],
        **nested,
    )
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
    if s.nfs.mode == "efsAccessPoint" and not s.nfs.file_system_id:
        problems.append(
            f"{src}: {ns}nfs.efsFileSystemId is required when nfs.mode is efsAccessPoint and nfs.server is not an "
            f"EFS DNS name (fs-....efs.<region>.amazonaws.com); got nfs.server {_quote(s.nfs.server)}"
        )
    if s.ingress.tls_issuer == "acme" and not s.ingress.acme_email:
        problems.append(f"{src}: {ns}ingress.acmeEmail is required when ingress.tlsIssuer is acme")
    _check_models(s, problems)
    _check_sources(s, problems)
    _check_api(s, problems)
    if s.is_prod and not s.protect:
        problems.append(f"{src}: {ns}protect must stay true in prod")
    if s.is_prod and s.database.mode == "rds":
        for key, on in (("multiAz", s.database.multi_az), ("deletionProtection", s.database.deletion_protection)):
            if not on:
                problems.append(f"{src}: {ns}database.{key} must stay true in prod")


def _check_api(s: StackSettings, problems: list[str]) -> None:
    """The API pods' memory request fits their limit (Kubernetes would refuse the Deployment)."""
    requests, limits = s.api.requests, s.api.limits
    if quantity_bytes(requests["memory"]) > quantity_bytes(limits["memory"]):
        problems.append(
            f"{s.source}: {PROJECT}:api.requests memory {requests['memory']} is above api.limits memory "
            f"{limits['memory']}"
        )


# Hosts of the platform's own services under ingress.domain: no model may take them.
PLATFORM_HOSTS = ("mlflow", "airflow", "api")
MODELS_SUBDOMAIN = "models"


def _check_models(s: StackSettings, problems: list[str]) -> None:
    """Per model: its public host under ingress.domain and unique; an s3:// dataset names a key or prefix (never a
    whole bucket). Prod: profile images pinned by digest, like the platform's."""
    src, ns = s.source, f"{PROJECT}:"
    taken = {s.host(service): f"the {service} host" for service in PLATFORM_HOSTS}
    for model, spec in sorted(s.catalog.models.items()):
        key = f"{ns}models.{model}"
        host = s.model_host(model)
        if spec.serving.host is not None and (
            not re.match(_DNS_NAME, host) or not host.endswith(f".{s.ingress.domain}")
        ):
            problems.append(
                f"{src}: {key}.serving.host must be a DNS name under ingress.domain ({s.ingress.domain}); "
                f"got {_quote(host)}"
            )
        elif host in taken:
            problems.append(f"{src}: {key}.serving.host {host} is already {taken[host]}")
        taken.setdefault(host, f"the host of models.{model}")
        auth = spec.serving.auth
        if s.is_prod and auth.mode == "none" and not auth.anonymous_reason:
            problems.append(
                f"{src}: {key}.serving.auth.mode none lets anyone call the model in prod: use apiKey or oidc, or "
                "say why in serving.auth.anonymousReason"
            )
        dataset = spec.training.dataset or ""
        if dataset.startswith("s3://") and not dataset.removeprefix("s3://").partition("/")[2].strip("/"):
            problems.append(
                f"{src}: {key}.training.dataset must name an object or a prefix inside its bucket, not a whole "
                f"bucket; got {_quote(dataset)}"
            )
    if s.is_prod:
        built = {use for b in s.profile_builds.values() for use in b.uses}  # checked as images.profiles entries
        for name, profile in sorted(s.catalog.profiles.items()):
            for kind in IMAGE_KINDS:
                value = getattr(profile.images, kind)
                if value is not None and (name, kind) not in built and not ImageRef.parse(value).pinned:
                    problems.append(
                        f"{src}: {ns}profiles.{name}.images.{kind} must be pinned by digest in prod "
                        f"(<repository>@sha256:<64 hex>); got {_quote(value)}"
                    )


def _plaintext_secret(source: str, key: str) -> str:
    return (
        f"{source}: {PROJECT}:{key} is a secret; store it with `pulumi config set --secret {key} ...` "
        "(it is in plaintext now)"
    )


def _is_git_credentials_key(key: str) -> bool:
    return key == GIT_CREDENTIALS_PREFIX.rstrip(".") or key.startswith(GIT_CREDENTIALS_PREFIX)


def _git_credentials(
    ours: Mapping[str, Any], secret_keys: frozenset[str] | set[str], source: str, problems: list[str]
) -> dict[str, GitCredentials]:
    """The keys `airflow.gitCredentials.<name>.<key>` as GitCredentials by name. A secret one in plaintext, a key
    that is not one of GIT_CREDENTIAL_FIELDS and a set with neither sshKey nor token are problems."""
    values: dict[str, dict[str, Any]] = {}
    for key in sorted(k for k in ours if _is_git_credentials_key(k)):
        full = f"{PROJECT}:{key}"
        name, _, part = key.removeprefix(GIT_CREDENTIALS_PREFIX).partition(".")
        if not re.match(git_access.CREDENTIALS_NAME_PATTERN, name) or part not in GIT_CREDENTIAL_FIELDS:
            close = difflib.get_close_matches(part, list(GIT_CREDENTIAL_FIELDS), n=1, cutoff=0.6)
            hint = f" (did you mean .{close[0]}?)" if close and name else ""
            problems.append(
                f"{source}: {full} is not a known setting{hint}: each git credential is its own key, "
                f"{PROJECT}:{GIT_CREDENTIALS_PREFIX}<name>.sshKey, .token or .username, <name> of lower-case letters, "
                "digits and '-' (at most 32)"
            )
            continue
        field_name, secret, _ = GIT_CREDENTIAL_FIELDS[part]
        if secret and full not in secret_keys:
            problems.append(_plaintext_secret(source, key))
            continue
        raw = ours[key]
        if not isinstance(raw, str) or not raw.strip():
            problems.append(f"{source}: {full} must be a non-empty string; got {'[secret]' if secret else _quote(raw)}")
            continue
        values.setdefault(name, {})[field_name] = Secret(raw) if secret else raw
    out = {}
    for name, fields in sorted(values.items()):
        if "ssh_key" not in fields and "token" not in fields:
            problems.append(
                f"{source}: {PROJECT}:{GIT_CREDENTIALS_PREFIX}{name} has a username but neither .sshKey nor .token"
            )
            continue
        out[name] = GitCredentials(**fields)
    return out


def _check_sources(s: StackSettings, problems: list[str]) -> None:
    """Every fetched training source can be fetched by its pod: the credentials it names exist and fit its URL (an
    SSH key for ssh:// and git@, a token for https://), an SSH URL without named credentials has airflow.gitSshKey,
    and every SSH host (the sources' and git-sync's) has a key in airflow.gitKnownHosts."""
    src, ns, air = s.source, f"{PROJECT}:", s.airflow

    def host_key(url: str, where: str) -> None:
        host = git_access.ssh_host(url)
        if host is not None and not git_access.has_host_key(air.known_hosts, *host):
            shown = host[0] if host[1] == git_access.SSH_PORT else f"[{host[0]}]:{host[1]}"
            problems.append(
                f"{src}: {where} is on {shown}, which has no host key in {ns}{GIT_KNOWN_HOSTS_KEY} (unset: only "
                f"github.com and gitlab.com): add the keys the host publishes (`ssh-keyscan -p {host[1]} {host[0]}`, "
                "compared with its published fingerprints)"
            )

    if air.git_ssh_key is not None:
        host_key(air.git_repo, f"{ns}airflow.gitRepo {air.git_repo}")
    for model, url in s.fetched_sources.items():
        source = s.catalog.models[model].training.source
        key = f"{ns}models.{model}.training.source"
        where = f"{key}.repo {url}" if source.repo else f"{key}.ref fetches {ns}airflow.gitRepo {url}, which"
        is_ssh = git_access.ssh_host(url) is not None
        if source.credentials is not None:
            named = f"{ns}{GIT_CREDENTIALS_PREFIX}{source.credentials}"
            creds = air.git_credentials.get(source.credentials)
            if creds is None:
                problems.append(
                    f"{src}: {key}.credentials is {source.credentials}, but neither {named}.sshKey nor {named}.token "
                    "is set (`pulumi config set --secret ...`)"
                )
            elif is_ssh and creds.ssh_key is None:
                problems.append(f"{src}: {where} is an SSH URL, but {named}.sshKey is not set (a read-only deploy key)")
            elif not is_ssh and creds.token is None:
                problems.append(f"{src}: {where} is an https URL, but {named}.token is not set (a read-only token)")
        elif is_ssh and air.git_ssh_key is None:
            problems.append(
                f"{src}: {where} is an SSH URL, but neither {key}.credentials nor {ns}airflow.gitSshKey is set: the "
                "training pod would have no key to fetch it with"
            )
        if is_ssh:
            host_key(url, where)


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
        if key == GIT_KNOWN_HOSTS_KEY:  # the named git credentials, one key each
            for part, (_, secret, doc) in GIT_CREDENTIAL_FIELDS.items():
                kind = "secret" if secret else "str"
                rows.append(f"| `{PROJECT}:{GIT_CREDENTIALS_PREFIX}<name>.{part}` | {kind} | unset | {doc} |")
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
