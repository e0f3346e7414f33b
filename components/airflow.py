"""Airflow (the official Apache Airflow chart) running the platform's training DAGs."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_random as random
import yaml
from pulumi_kubernetes.core.v1 import ConfigMap, Secret
from pulumi_kubernetes.helm.v3 import Release, RepositoryOptsArgs
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs

from components.artifact_store import S3Endpoint
from components.database import CA_DIR, server_ca_path
from components.images import tag_form
from components.namespaces import NamespaceRef
from components.naming import DB_CREDENTIALS_ANNOTATION, ROTATION_ANNOTATION, cluster_url, labels, platform_key
from components.options import inherited_depends_on
from components.pod_security import SECRET_FILE_MODE
from observability.scrape import AIRFLOW_STATSD_MAPPINGS
from services.common import contract, git_access
from stacks.settings import AirflowSettings, ImageRef
from stacks.settings import Secret as SecretSetting

AIRFLOW_REPO = "https://airflow.apache.org"
RELEASE = "airflow"
API_PORT = 8080
STATSD_EXPORTER_PORT = 9102  # the chart's StatsD exporter (Prometheus metrics of the scheduler and tasks)
AIRFLOW_UID, AIRFLOW_GID = 50000, 0  # the image's user and group: the owner of the log volume
# Secret names and the keys the official chart reads from them.
FERNET_SECRET, FERNET_KEY = "airflow-fernet-key", "fernet-key"
API_SECRET, API_KEY = "airflow-api-secret-key", "api-secret-key"
JWT_SECRET, JWT_KEY = "airflow-jwt-secret", "jwt-secret"
GIT_SSH_SECRET, GIT_SSH_KEY = git_access.DEPLOY_KEY_SECRET, git_access.DEPLOY_KEY_KEY  # git-sync's deploy key
GIT_SYNC_UID, STATSD_UID = 65533, 65534  # the chart's defaults for these containers
# git-sync checks the repository out here (the chart's default dags mount + "repo"); the DAGs
# import the shared contract and alert helper (services.common) from the repository root.
GIT_SYNC_ROOT = "/opt/airflow/dags/repo"
# On every Airflow pod (the chart's components and the KubernetesExecutor's task pods): changes with the catalog's
# content, so the pods roll onto a new catalog.
CATALOG_ANNOTATION = platform_key("model-catalog")
CATALOG_VOLUME = "model-catalog"
DB_CA_VOLUME = "db-server-ca"
# The Airflow user's S3 key reaches every Airflow container as boto's shared credentials file (from its Secret's
# `credentials` key): training code reads s3:// datasets with it (the IAM policy grants the catalog's datasets).
HOME = "/home/airflow"  # the image's $HOME: MLflow's credentials file is mounted under it


@dataclass(frozen=True)
class AirflowPlatformArgs:
    """`image`: the Airflow image (it also trains); `catalog`: the model catalog's JSON as the DAGs read it;
    `s3_secret`: the Secret with the Airflow user's S3 key (its connection and AWS's own variables); `region`: the
    artifact bucket's region."""

    namespace: NamespaceRef
    settings: AirflowSettings
    image: ImageRef
    catalog: pulumi.Input[str]
    region: str
    host: str
    ingress_class: str
    cluster_issuer: pulumi.Input[str]
    metadata_secret: str
    bucket: pulumi.Input[str]
    log_prefix: str
    logs_connection_secret: str
    logs_connection_id: str
    logs_claim: str
    rotation_annotation: pulumi.Input[str]
    db_credentials_annotation: pulumi.Input[str] | None = None  # changes with the metadata database's credentials
    endpoints_configmap: str = contract.ENDPOINTS_CONFIGMAP
    reload_token_secret: str = contract.RELOAD_TOKEN_SECRET
    slack_secret: str = contract.SLACK_SECRET
    mlflow_credentials_secret: str = contract.MLFLOW_CREDENTIALS_SECRET
    s3_endpoint: S3Endpoint | None = None
    """An S3-compatible store (artifacts.mode s3Compatible): its endpoint, CA and addressing in every Airflow
    container, task pods included; None = AWS S3."""
    db_ca_configmap: str | None = None  # the database server's CA (ConfigMap, key ca.crt) for libpq; None = not given
    images: Mapping[str, ImageRef] = field(default_factory=dict)  # AUX_IMAGES; absent: the chart's default


# The chart's other images (third-party images of the stack settings) by their key under `images`: the chart has
# no digest field for them, so a pinned one carries its digest in the tag
AUX_IMAGES = {"statsd-exporter": "statsd", "git-sync": "gitSync", "redis": "redis"}


# Pod Security `restricted` for the chart's pods and containers (the chart's default uid 50000)
_RESTRICTED_POD = {
    "runAsNonRoot": True,
    "runAsUser": AIRFLOW_UID,
    "fsGroup": AIRFLOW_GID,
    "seccompProfile": {"type": "RuntimeDefault"},
}
_RESTRICTED_CONTAINER = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
_STATSD_POD = {"runAsNonRoot": True, "runAsUser": STATSD_UID, "seccompProfile": {"type": "RuntimeDefault"}}


def _secret(name: str, parent: pulumi.Resource, namespace: NamespaceRef, key: str, value: pulumi.Input[str]) -> Secret:
    return Secret(
        name,
        metadata=ObjectMetaArgs(name=name, namespace=namespace.output),
        type="Opaque",
        string_data={key: pulumi.Output.secret(value)},
        opts=pulumi.ResourceOptions(parent=parent),
    )


def _ssh_key(key: SecretSetting) -> pulumi.Output[str]:
    """An SSH private key setting as a secret Output ending with a newline (OpenSSH refuses a key file without
    one, and `pulumi config set --secret ... "$(cat key)"` drops it)."""
    text = key.reveal()
    return pulumi.Output.secret(text if text.endswith("\n") else text + "\n")


def _git_sync_values(s: AirflowSettings) -> dict[str, object]:
    """The chart's `dags.gitSync`: the DAGs' repository, with the SSH key Secret when one is configured."""
    git_sync: dict[str, object] = {
        "enabled": True,
        "repo": s.git_repo,
        "branch": s.git_branch,
        "rev": "HEAD",
        "depth": 1,
        "subPath": s.git_sub_path,
        "resources": {"requests": {"cpu": "20m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
    }
    if s.git_ssh_key is not None:
        git_sync["sshKeySecret"] = GIT_SSH_SECRET
        git_sync["knownHosts"] = s.known_hosts  # pinned host keys: without them git-sync checks none
    # git-sync and StatsD do not take the global contexts: without these they would run with
    # only a runAsUser (privilege escalation allowed, capabilities kept)
    git_sync["securityContexts"] = {"container": {"runAsUser": GIT_SYNC_UID, **_RESTRICTED_CONTAINER}}
    return git_sync


def _log_values(args: AirflowPlatformArgs) -> dict[str, object]:
    """Task logs: to the bucket's Airflow prefix through the rotated-key connection (its variable
    from the connection Secret: an accepted exception, see harness/checks.py ACCEPTED_SECRET_ENV), or to the NFS
    claim. Returns the chart's `logs`, `secret` and `config.logging`. AWS's own credentials are a file
    (`_credential_files`), not variables."""
    if not args.settings.remote_logging:
        return {
            "logs": {"persistence": {"enabled": True, "existingClaim": args.logs_claim}},
            "secret": [],
            "logging": {"remote_logging": "False", "colored_console_log": "False"},
        }
    conn_env = f"AIRFLOW_CONN_{args.logs_connection_id.upper()}"
    return {
        "logs": {"persistence": {"enabled": False}},
        "secret": [{"envName": conn_env, "secretName": args.logs_connection_secret, "secretKey": conn_env}],
        "logging": {
            "remote_logging": "True",
            "remote_base_log_folder": pulumi.Output.concat("s3://", args.bucket, f"/{args.log_prefix.strip('/')}"),
            "remote_log_conn_id": args.logs_connection_id,
            "colored_console_log": "False",
        },
    }


S3Values = list[dict[str, Any]]


def _s3_client_values(endpoint: S3Endpoint | None) -> tuple[S3Values, S3Values, S3Values]:
    """An S3-compatible store's variables (boto3's own: endpoint, CA bundle, config file), volume and mount for every
    Airflow container, task pods included; nothing on AWS S3."""
    if endpoint is None:
        return [], [], []
    env = [{"name": k, "value": v} for k, v in sorted(endpoint.boto_env().items())]
    return env, [endpoint.volume()], [endpoint.volume_mount()]


def db_ca_values(configmap: str | None) -> dict[str, list[dict[str, object]]]:
    """The database server's CA for libpq (PGSSLROOTCERT) in an Airflow container: its env, volumes and mounts."""
    if not configmap:
        return {"env": [], "volumes": [], "volumeMounts": []}
    return {
        "env": [{"name": "PGSSLROOTCERT", "value": server_ca_path()}],
        "volumes": [{"name": DB_CA_VOLUME, "configMap": {"name": configmap}}],
        "volumeMounts": [{"name": DB_CA_VOLUME, "mountPath": CA_DIR, "readOnly": True}],
    }


def _volumes(db_ca: dict[str, list[dict[str, object]]], s3_volumes: S3Values, s3_mounts: S3Values) -> dict[str, Any]:
    """The model catalog, an S3-compatible store's client ConfigMap (its CA, the AWS config file) and the database
    server's CA, each when given, in every Airflow container (the chart's components, its migration Job and the task
    pods alike): the chart's `volumes` and `volumeMounts`."""
    return {
        "volumes": [
            {"name": CATALOG_VOLUME, "configMap": {"name": contract.MODEL_CATALOG_CONFIGMAP}},
            *s3_volumes,
            *db_ca["volumes"],
        ],
        "volumeMounts": [
            {"name": CATALOG_VOLUME, "mountPath": contract.MODEL_CATALOG_MOUNT, "readOnly": True},
            *s3_mounts,
            *db_ca["volumeMounts"],
        ],
    }


def _credential_files(
    args: AirflowPlatformArgs,
) -> tuple[list[dict[str, object]], list[dict[str, object]], list[dict[str, str]]]:
    """The credentials every Airflow container needs, as files (services/common/contract.py): the reload token and
    the Slack webhook (`<NAME>_FILE`), MLflow's credentials file under $HOME/.mlflow (optional: empty without
    MLflow auth) and the Airflow user's S3 key as boto's shared credentials file (AWS_SHARED_CREDENTIALS_FILE).
    Returns the chart's volumes, volumeMounts and env entries."""
    volumes: list[dict[str, object]] = []
    mounts: list[dict[str, object]] = []
    env: list[dict[str, str]] = []
    for volume, secret, var in (
        ("reload-token", args.reload_token_secret, contract.RELOAD_TOKEN),
        ("slack-webhook", args.slack_secret, contract.SLACK_WEBHOOK_URL),
    ):
        volumes.append({"name": volume, "secret": {"secretName": secret, "defaultMode": SECRET_FILE_MODE}})
        mounts.append({"name": volume, "mountPath": contract.secret_file(secret, "").rstrip("/"), "readOnly": True})
        env.append({"name": var.file_variable, "value": contract.secret_file(secret, var.name)})
    key = contract.MLFLOW_CREDENTIALS_KEY
    volumes.append(
        {
            "name": "mlflow-credentials",
            "secret": {
                "secretName": args.mlflow_credentials_secret,
                "defaultMode": SECRET_FILE_MODE,
                "optional": True,
                "items": [{"key": key, "path": key}],
            },
        }
    )
    mounts.append(
        {
            "name": "mlflow-credentials",
            "mountPath": str(contract.mlflow_credentials_file(HOME).parent),
            "readOnly": True,
        }
    )
    aws = contract.AWS_CREDENTIALS_KEY
    volumes.append(
        {
            "name": "aws-credentials",
            "secret": {
                "secretName": args.logs_connection_secret,
                "defaultMode": SECRET_FILE_MODE,
                "items": [{"key": aws, "path": aws}],
            },
        }
    )
    secret_dir = contract.secret_file(args.logs_connection_secret, "").rstrip("/")
    mounts.append({"name": "aws-credentials", "mountPath": secret_dir, "readOnly": True})
    env.append({"name": contract.AWS_SHARED_CREDENTIALS_FILE.name, "value": f"{secret_dir}/{aws}"})
    return volumes, mounts, env


def catalog_checksum(document: str) -> str:
    """The value of the catalog annotation: changes whenever the catalog's JSON does."""
    return hashlib.sha256(document.encode()).hexdigest()[:16]


def chart_values(args: AirflowPlatformArgs, internal_url: pulumi.Input[str]) -> dict[str, object]:
    """The Airflow chart's values for these arguments (`internal_url`: the API server's Service)."""
    s = args.settings
    env_from = [{"configMapRef": {"name": args.endpoints_configmap}}]
    volumes, mounts, file_env = _credential_files(args)
    logs = _log_values(args)
    s3_env, s3_volumes, s3_mounts = _s3_client_values(args.s3_endpoint)
    db_ca = db_ca_values(args.db_ca_configmap)
    image = {"repository": args.image.repository, "tag": args.image.tag, "digest": args.image.digest}
    return {
        "executor": s.executor,
        # a digest wins over the tag in the chart, as in the reference
        "images": {
            "airflow": {**{k: v for k, v in image.items() if v}, "pullPolicy": "IfNotPresent"},
            **{key: tag_form(args.images[name]) for name, key in AUX_IMAGES.items() if name in args.images},
        },
        "postgresql": {"enabled": False},
        "redis": {"enabled": s.executor == "CeleryExecutor"},
        "data": {"metadataSecretName": args.metadata_secret},
        "fernetKeySecretName": FERNET_SECRET,
        "apiSecretKeySecretName": API_SECRET,
        "jwtSecretName": JWT_SECRET,
        "createUserJob": {"enabled": False},
        "migrateDatabaseJob": {"enabled": True},
        "dags": {"gitSync": _git_sync_values(s)},
        "logs": logs["logs"],
        "secret": logs["secret"],
        "env": [
            {"name": "PYTHONPATH", "value": GIT_SYNC_ROOT},
            {
                "name": contract.MODEL_CATALOG.name,
                "value": f"{contract.MODEL_CATALOG_MOUNT}/{contract.MODEL_CATALOG_KEY}",
            },
            {"name": contract.AWS_DEFAULT_REGION.name, "value": args.region},
            *s3_env,
            *db_ca["env"],
            *file_env,
        ],
        # the model catalog, an S3-compatible store's client files, the database server's CA and the credential
        # files in every Airflow container (the chart's components, its migration Job and the task pods alike)
        **_volumes(db_ca, [*s3_volumes, *volumes], [*s3_mounts, *mounts]),
        "extraEnvFrom": yaml.safe_dump(env_from, default_flow_style=False),
        "airflowPodAnnotations": {
            ROTATION_ANNOTATION: args.rotation_annotation,
            **({DB_CREDENTIALS_ANNOTATION: args.db_credentials_annotation} if args.db_credentials_annotation else {}),
            CATALOG_ANNOTATION: pulumi.Output.from_input(args.catalog).apply(catalog_checksum),
        },
        "securityContexts": {"pod": _RESTRICTED_POD, "containers": _RESTRICTED_CONTAINER},
        "statsd": {
            "securityContexts": {"pod": _STATSD_POD, "container": _RESTRICTED_CONTAINER},
            # task outcomes by DAG, task and state (quality gate, promotion, rollback) for the dashboards
            "extraMappings": [dict(m) for m in AIRFLOW_STATSD_MAPPINGS],
        },
        "config": {
            # Airflow 3 derives the workers' Execution API URL from api.base_url (the public
            # host, behind TLS with the internal CA): task pods must call the API server's Service
            "core": {
                "load_examples": "False",
                # the DAGs of the catalog run when triggered (the platform API, the CLI) without unpausing
                "dags_are_paused_at_creation": "False",
                "execution_api_server_url": pulumi.Output.concat(internal_url, "/execution/"),
            },
            "logging": logs["logging"],
            "api": {"base_url": f"https://{args.host}"},
        },
        "apiServer": {"resources": {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}},
        "scheduler": {"resources": {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}},
        "workers": {"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "4Gi"}}},
        "ingress": {
            "apiServer": {
                "enabled": True,
                "ingressClassName": args.ingress_class,
                "annotations": {"cert-manager.io/cluster-issuer": args.cluster_issuer},
                "path": "/",
                "pathType": "Prefix",
                "hosts": [{"name": args.host, "tls": {"enabled": True, "secretName": "airflow-tls"}}],
            }
        },
    }


class AirflowPlatform(pulumi.ComponentResource):
    """Builds the Airflow Helm release with the executor from the settings (KubernetesExecutor by
    default), the metadata database from the existing connection Secret (`data.metadataSecretName`,
    the chart's bundled Postgres off), fernet, API and JWT secrets generated with pulumi-random and
    passed by Secret name, DAGs from git via git-sync (SSH key Secret and pinned host keys when configured), the
    training sources' read-only git credentials (a Secret per `airflow.gitCredentials.<name>`) and the SSH host keys
    (ConfigMap `git-known-hosts`) for the task pods to mount (services.common.git_access), task logs to
    the bucket's Airflow prefix through the rotated-key connection (or to the NFS claim), the
    endpoints ConfigMap as environment and the reload-token, Slack and MLflow-credentials Secrets as files of every
    Airflow container (`<NAME>_FILE`; MLflow's own file under $HOME/.mlflow; so the DAGs read the contract's
    variables), the model catalog as a ConfigMap mounted in every
    Airflow container (task pods included) with MLOPS_MODEL_CATALOG naming the file, the Airflow user's S3 key as
    boto's shared credentials file (AWS_SHARED_CREDENTIALS_FILE; s3:// datasets), the S3 key's rotation annotation
    and the catalog's checksum on the
    pods (they roll when either changes), the image by digest when it has one, security contexts fit for Pod
    Security `restricted` (git-sync and StatsD included), the workers' Execution API pointed at the API
    server's Service (not the public host), and the API server's TLS Ingress.
    The chart's create-user job is off: it would create `admin/admin`.

    Exports the attributes below; `release` (the Helm release) is a handle, not an output.
    """

    url: pulumi.Output[str]
    """The API server's URL through the TLS Ingress."""
    internal_url: pulumi.Output[str]
    """The API server's in-cluster URL."""
    catalog_checksum: pulumi.Output[str]
    """The checksum of the model catalog the pods carry (changes with the catalog)."""

    def __init__(self, name: str, args: AirflowPlatformArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:platform:AirflowPlatform", name, None, opts)
        secrets = self._secrets(name, args)
        catalog = ConfigMap(
            f"{name}-model-catalog",
            metadata=ObjectMetaArgs(
                name=contract.MODEL_CATALOG_CONFIGMAP,
                namespace=args.namespace.output,
                labels=labels(component="model-catalog"),
            ),
            data={contract.MODEL_CATALOG_KEY: args.catalog},
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.catalog_checksum = pulumi.Output.from_input(args.catalog).apply(catalog_checksum)
        self.internal_url = cluster_url(f"{RELEASE}-api-server", args.namespace.name, API_PORT)
        self.release: Release = Release(
            f"{name}-release",
            name=RELEASE,
            chart="airflow",
            version=args.settings.chart_version,
            repository_opts=RepositoryOptsArgs(repo=AIRFLOW_REPO),
            namespace=args.namespace.output,
            timeout=1200,
            values=chart_values(args, self.internal_url),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*secrets, catalog, *inherited_depends_on(opts)]),
        )
        self.url = pulumi.Output.from_input(f"https://{args.host}")
        self.register_outputs(
            {"url": self.url, "internal_url": self.internal_url, "catalog_checksum": self.catalog_checksum}
        )

    def _secrets(self, name: str, args: AirflowPlatformArgs) -> list[pulumi.CustomResource]:
        """Fernet, API and JWT secrets from pulumi-random, the git SSH key's Secret when set, and the training
        sources' git credentials and host keys (`_git_access`)."""
        s = args.settings
        child = pulumi.ResourceOptions(parent=self)
        fernet = random.RandomBytes(f"{name}-fernet", length=32, opts=child)
        api_key = random.RandomPassword(f"{name}-api-secret-key", length=48, special=False, opts=child)
        jwt = random.RandomPassword(f"{name}-jwt-secret", length=64, special=False, opts=child)
        # Fernet wants 32 url-safe base64-encoded bytes (with padding)
        fernet_key = fernet.base64.apply(lambda b: b.replace("+", "-").replace("/", "_"))
        secrets: list[pulumi.CustomResource] = [
            _secret(FERNET_SECRET, self, args.namespace, FERNET_KEY, fernet_key),
            _secret(API_SECRET, self, args.namespace, API_KEY, api_key.result),
            _secret(JWT_SECRET, self, args.namespace, JWT_KEY, jwt.result),
        ]
        if s.git_ssh_key is not None:
            secrets.append(_secret(GIT_SSH_SECRET, self, args.namespace, GIT_SSH_KEY, _ssh_key(s.git_ssh_key)))
        elif not s.git_repo.startswith("https://"):
            pulumi.log.warn(
                f"airflow.gitRepo {s.git_repo} is an SSH URL but airflow.gitSshKey is not set: git-sync cannot "
                "clone it (pulumi config set --secret airflow.gitSshKey ...)",
                self,
            )
        return [*secrets, *self._git_access(name, args)]

    def _git_access(self, name: str, args: AirflowPlatformArgs) -> list[pulumi.CustomResource]:
        """The training sources' read-only git credentials, where the task pods run (services.common.git_access):
        the SSH host keys they accept (ConfigMap git-known-hosts) and one Secret per `airflow.gitCredentials.<name>`
        whose keys are the files the pod sees (ssh-key; or token and username)."""
        child = pulumi.ResourceOptions(parent=self)
        namespace, component = args.namespace.output, labels(component="git-credentials")
        created: list[pulumi.CustomResource] = [
            ConfigMap(
                f"{name}-{git_access.KNOWN_HOSTS_CONFIGMAP}",
                metadata=ObjectMetaArgs(name=git_access.KNOWN_HOSTS_CONFIGMAP, namespace=namespace, labels=component),
                data={git_access.KNOWN_HOSTS_FILE: args.settings.known_hosts},
                opts=child,
            )
        ]
        for credentials, found in sorted(args.settings.git_credentials.items()):
            files: dict[str, pulumi.Input[str]] = {}
            if found.ssh_key is not None:
                files[git_access.SSH_KEY_FILE] = _ssh_key(found.ssh_key)
            if found.token is not None:
                files[git_access.TOKEN_FILE] = found.token.output()
                files[git_access.USERNAME_FILE] = pulumi.Output.secret(found.username)
            secret = git_access.secret_name(credentials)
            created.append(
                Secret(
                    f"{name}-{secret}",
                    metadata=ObjectMetaArgs(name=secret, namespace=namespace, labels=component),
                    type="Opaque",
                    string_data=files,
                    opts=child,
                )
            )
        return created
