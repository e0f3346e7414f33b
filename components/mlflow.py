"""MLflow tracking server and model registry (community-charts `mlflow` chart)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_random as random
from pulumi_kubernetes.core.v1 import (
    ConfigMap,
    ConfigMapVolumeSourceArgs,
    ContainerArgs,
    EmptyDirVolumeSourceArgs,
    EnvVarArgs,
    ResourceRequirementsArgs,
    Secret,
    VolumeArgs,
    VolumeMountArgs,
)
from pulumi_kubernetes.helm.v3 import Release, RepositoryOptsArgs
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs

import services.mlflow.ensure_user as ensure_user_script
from components.artifact_store import S3Endpoint
from components.database import CA_DIR, server_ca_path
from components.images import repository_form, tag_form
from components.jobs import rerun_on_change_job
from components.namespaces import NamespaceRef
from components.naming import (
    DB_CREDENTIALS_ANNOTATION,
    ROTATION_ANNOTATION,
    cluster_host,
    cluster_url,
    labels,
    platform_key,
)
from components.options import inherited_depends_on
from components.pod_security import restricted_container, secret_mount, secret_volume
from services.common import contract
from stacks.settings import ImageRef, MlflowSettings

MLFLOW_REPO = "https://community-charts.github.io/helm-charts"
RELEASE = "mlflow"
SERVICE_PORT = 80  # the chart's Service port (container port 5000)
CONTAINER_PORT = 5000  # what NetworkPolicies see behind the Service
IMAGE = "burakince/mlflow"
# The chart runs `IMAGE:<appVersion>` unless mlflow.imageTag is set; the client-user Job uses the same
# image (already on the nodes). A test keeps this in step with ../shared/charts/mlflow/*/Chart.yaml.
CHART_APP_VERSIONS = {"1.11.5": "3.15.1"}
MLFLOW_UID = 1001  # the chart's default user
METRICS_DIR = "/tmp/mlflow-metrics"  # noqa: S108 - in the chart's /tmp emptyDir (the root filesystem is read-only)
ADMIN_SECRET = "mlflow-admin"
CLIENT_SECRET = "mlflow-client-user"
CLIENT_USERNAME = "mlops-pipelines"
CLIENT_INPUTS_ANNOTATION = platform_key("client-user-inputs")
DB_CA_VOLUME = "db-server-ca"


@dataclass(frozen=True)
class MlflowServerArgs:
    """`auth_db_secret`/`auth_db_name`: the basic-auth database (required with `settings.basic_auth`)."""

    namespace: NamespaceRef
    settings: MlflowSettings
    host: str
    ingress_class: str
    cluster_issuer: pulumi.Input[str]
    region: str
    bucket: pulumi.Input[str]
    artifact_prefix: str
    s3_secret: str
    db_secret: str
    db_host: pulumi.Input[str]
    db_port: pulumi.Input[int]
    db_name: str
    rotation_annotation: pulumi.Input[str]
    auth_db_secret: str | None = None
    db_credentials_annotation: pulumi.Input[str] | None = None  # changes with the database credentials
    auth_db_name: str | None = None
    db_sslmode: str | None = None  # set: libpq's PGSSLMODE for both connections (an external server); else its default
    s3_endpoint: S3Endpoint | None = None  # an S3-compatible store (artifacts.mode s3Compatible); None = AWS S3
    db_ca_configmap: str | None = None  # set: the server's CA (ConfigMap, key ca.crt), mounted for PGSSLROOTCERT
    image: ImageRef | None = None  # the MLflow image (server, migration, client-user Job); None: IMAGE:<appVersion>
    busybox: ImageRef | None = None  # the chart's busybox init images; None: the chart's default

    def __post_init__(self) -> None:
        if self.settings.basic_auth and not (self.auth_db_secret and self.auth_db_name):
            # the chart's fallback is a SQLite file per pod: on a read-only root filesystem, and
            # every replica would hold its own users
            raise ValueError("MLflow basic auth needs its Postgres database (auth_db_secret, auth_db_name)")
        if self.settings.chart_version not in CHART_APP_VERSIONS and not self.settings.image_tag:
            raise ValueError(
                f"MLflow chart {self.settings.chart_version}: add its appVersion to CHART_APP_VERSIONS or set "
                "mlflow.imageTag"
            )


# every container of the chart (server, migration and auth init containers) takes this
_CONTAINER_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": MLFLOW_UID,
    "runAsGroup": MLFLOW_UID,
    "allowPrivilegeEscalation": False,
    "privileged": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
_POD_SECURITY = {
    "fsGroup": MLFLOW_UID,
    "fsGroupChangePolicy": "OnRootMismatch",
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _postgres(args: MlflowServerArgs, database: str | None) -> dict[str, object]:
    """One of the chart's Postgres connections: a database on the platform's server."""
    return {"enabled": True, "host": args.db_host, "port": args.db_port, "database": database, "driver": "psycopg2"}


def _credentials(secret: str | None) -> dict[str, str | None]:
    """A Secret holding `username` and `password`, as the chart refers to one."""
    return {"name": secret, "usernameKey": "username", "passwordKey": "password"}


def _auth_values(args: MlflowServerArgs) -> dict[str, object]:
    """The chart's `auth`: basic auth with the admin Secret and users in their own Postgres database."""
    if not args.settings.basic_auth:
        return {"enabled": False}
    return {
        "enabled": True,
        "existingAdminSecret": _credentials(ADMIN_SECRET),
        "defaultPermission": "READ",
        "postgres": {**_postgres(args, args.auth_db_name), "existingSecret": _credentials(args.auth_db_secret)},
    }


def _backend_store_values(args: MlflowServerArgs) -> dict[str, object]:
    """The chart's `backendStore`: Postgres through the existing database Secret, migrated on upgrade."""
    return {
        "databaseMigration": True,
        "postgres": _postgres(args, args.db_name),
        "existingDatabaseSecret": _credentials(args.db_secret),
    }


def _artifact_root_values(args: MlflowServerArgs) -> dict[str, object]:
    """The chart's `artifactRoot`: proxied artifacts in the bucket's MLflow prefix, rotated-key Secret."""
    prefix = args.artifact_prefix.strip("/")
    return {
        "proxiedArtifactStorage": True,
        "defaultArtifactsDestination": pulumi.Output.concat("s3://", args.bucket, f"/{prefix}"),
        "s3": {
            "enabled": True,
            "bucket": args.bucket,
            "path": prefix,
            "existingSecret": {
                "name": args.s3_secret,
                "keyOfAccessKeyId": contract.AWS_ACCESS_KEY_ID.name,
                "keyOfSecretAccessKey": contract.AWS_SECRET_ACCESS_KEY.name,
            },
        },
    }


def _extra_volumes(args: MlflowServerArgs) -> dict[str, object]:
    """Files mounted in the server: an S3-compatible store's client ConfigMap (its CA) and the database server's CA
    (its PGSSLROOTCERT), each when given; nothing on AWS S3 with a public database certificate."""
    volumes: list[object] = []
    mounts: list[object] = []
    if args.s3_endpoint is not None:
        volumes.append(args.s3_endpoint.volume())
        mounts.append(args.s3_endpoint.volume_mount())
    if args.db_ca_configmap:
        volumes.append({"name": DB_CA_VOLUME, "configMap": {"name": args.db_ca_configmap}})
        mounts.append({"name": DB_CA_VOLUME, "mountPath": CA_DIR, "readOnly": True})
    return {"extraVolumes": volumes, "extraVolumeMounts": mounts} if volumes else {}


def _image_values(args: MlflowServerArgs) -> dict[str, object]:
    """The chart's `image` and `initImages` (the migration runs the server's image; busybox checks the database)."""
    if args.image is None:
        return {"image": {"repository": IMAGE, **({"tag": args.settings.image_tag} if args.settings.image_tag else {})}}
    values: dict[str, object] = {"image": repository_form(args.image)}
    init: dict[str, object] = {"mlflowDbMigration": tag_form(args.image)}
    if args.busybox is not None:
        init |= {"dbchecker": tag_form(args.busybox), "iniFileInitializer": tag_form(args.busybox)}
    return values | {"initImages": init}


def chart_values(args: MlflowServerArgs) -> dict[str, object]:
    """The MLflow chart's values for these arguments."""
    s = args.settings
    return {
        "replicaCount": s.replicas,
        **_image_values(args),
        "podAnnotations": {
            ROTATION_ANNOTATION: args.rotation_annotation,
            **({DB_CREDENTIALS_ANNOTATION: args.db_credentials_annotation} if args.db_credentials_annotation else {}),
        },
        "podSecurityContext": _POD_SECURITY,
        "securityContext": _CONTAINER_SECURITY,
        "backendStore": _backend_store_values(args),
        "artifactRoot": _artifact_root_values(args),
        # MLflow's Prometheus exporter (/metrics on the server port), multiprocess files on the /tmp emptyDir
        "extraArgs": {"exposePrometheus": METRICS_DIR},
        "extraEnvVars": {
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true" if s.job_execution else "false",
            contract.AWS_DEFAULT_REGION.name: args.region,
            **({"PGSSLMODE": args.db_sslmode} if args.db_sslmode else {}),
            **(args.s3_endpoint.mlflow_env() if args.s3_endpoint else {}),
            **({"PGSSLROOTCERT": server_ca_path()} if args.db_ca_configmap else {}),
        },
        **_extra_volumes(args),
        "auth": _auth_values(args),
        "serverAllowedHosts": [args.host, RELEASE, cluster_host(RELEASE, args.namespace.name)],
        "resources": {"requests": {"cpu": s.cpu, "memory": s.memory}, "limits": {"memory": s.memory}},
        "ingress": {
            "enabled": True,
            "className": args.ingress_class,
            "annotations": {"cert-manager.io/cluster-issuer": args.cluster_issuer},
            "hosts": [{"host": args.host, "paths": [{"path": "/", "pathType": "Prefix"}]}],
            "tls": [{"secretName": "mlflow-tls", "hosts": [args.host]}],
        },
    }


def _from_secret(env: str, secret_name: str, key: str) -> EnvVarArgs:
    """`<env>_FILE` naming the file of `key` in `secret_name`, mounted by `_client_user_volumes` (no credential in
    the Job's environment)."""
    return EnvVarArgs(name=f"{env}_FILE", value=contract.secret_file(secret_name, key))


def _client_user_container(image: str, internal_url: pulumi.Input[str]) -> ContainerArgs:
    """Runs `services/mlflow/ensure_user.py` (mounted at /script) with the admin's and the user's Secrets as files."""
    return ContainerArgs(
        name="ensure-user",
        image=image,
        image_pull_policy="IfNotPresent",
        command=["python", "/script/ensure_user.py"],
        env=[
            EnvVarArgs(name="MLFLOW_URL", value=internal_url),
            EnvVarArgs(name="PYTHONDONTWRITEBYTECODE", value="1"),
            _from_secret("ADMIN_USERNAME", ADMIN_SECRET, "username"),
            _from_secret("ADMIN_PASSWORD", ADMIN_SECRET, "password"),
            _from_secret("CLIENT_USERNAME", CLIENT_SECRET, "username"),
            _from_secret("CLIENT_PASSWORD", CLIENT_SECRET, "password"),
        ],
        resources=ResourceRequirementsArgs(
            requests={"cpu": "20m", "memory": "64Mi"}, limits={"cpu": "200m", "memory": "128Mi"}
        ),
        security_context=restricted_container(MLFLOW_UID, read_only_root=True),
        volume_mounts=[
            VolumeMountArgs(name="script", mount_path="/script", read_only=True),
            secret_mount("admin", ADMIN_SECRET),
            secret_mount("client", CLIENT_SECRET),
            VolumeMountArgs(name="tmp", mount_path="/tmp"),  # noqa: S108 - emptyDir (read-only root)
        ],
    )


def _client_user_volumes() -> list[VolumeArgs]:
    return [
        VolumeArgs(name="script", config_map=ConfigMapVolumeSourceArgs(name=f"{CLIENT_SECRET}-script")),
        secret_volume("admin", ADMIN_SECRET),
        secret_volume("client", CLIENT_SECRET),
        VolumeArgs(name="tmp", empty_dir=EmptyDirVolumeSourceArgs(size_limit="16Mi")),
    ]


class MlflowServer(pulumi.ComponentResource):
    """Builds the MLflow Helm release: backend store in Postgres through the existing database
    Secret, artifacts in the bucket's MLflow prefix through the rotated-key Secret, proxied
    artifact serving (clients need only the tracking URL, no AWS keys), background job execution
    off unless configured, resources, security contexts fit for Pod Security `restricted`, a TLS
    Ingress signed by the stack's issuer. The pod template carries the S3 key's rotation
    annotation, so MLflow rolls onto a new key.

    With `basic_auth`: users and permissions in their own Postgres database (shared by every
    replica), an admin account whose generated password lives in the Secret `mlflow-admin`, and an
    ordinary user `mlops-pipelines` for the DAGs and the serving service (generated password, Secret
    `mlflow-client-user`) that a Job creates through MLflow's API once the server is up (again
    whenever the password changes).

    Exports the attributes below; `release` (the Helm release) is a handle, not an output.
    """

    internal_url: pulumi.Output[str]
    """The tracking server's in-cluster URL."""
    external_url: pulumi.Output[str]
    """Its URL through the TLS Ingress."""
    admin_secret: str | None
    """Secret holding the admin's `username` and `password`; None without basic auth."""
    client_username: str | None
    """The DAGs' and serving's MLflow user; None without basic auth."""
    client_password: pulumi.Output[str] | None
    """That user's password (secret), resolving once the user exists; None without basic auth."""

    def __init__(self, name: str, args: MlflowServerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:platform:MlflowServer", name, None, opts)
        s = args.settings
        self.internal_url = cluster_url(RELEASE, args.namespace.name, SERVICE_PORT)
        self.external_url = pulumi.Output.from_input(f"https://{args.host}")
        self.admin_secret = ADMIN_SECRET if s.basic_auth else None
        admin = [self._admin(name, args)] if s.basic_auth else []
        self.release: Release = Release(
            f"{name}-release",
            name=RELEASE,
            chart="mlflow",
            version=s.chart_version,
            repository_opts=RepositoryOptsArgs(repo=MLFLOW_REPO),
            namespace=args.namespace.output,
            atomic=True,
            timeout=900,
            values=chart_values(args),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*admin, *inherited_depends_on(opts)]),
        )
        self.client_username = CLIENT_USERNAME if s.basic_auth else None
        image = args.image.reference if args.image else f"{IMAGE}:{s.image_tag or CHART_APP_VERSIONS[s.chart_version]}"
        self.client_password = self._client_user(name, args, image) if s.basic_auth else None
        self.register_outputs(
            {
                "internal_url": self.internal_url,
                "external_url": self.external_url,
                "admin_secret": self.admin_secret,
                "client_username": self.client_username,
                "client_password": self.client_password,
            }
        )

    def _admin(self, name: str, args: MlflowServerArgs) -> Secret:
        """The admin account's Secret, with a generated password."""
        child = pulumi.ResourceOptions(parent=self)
        generated = random.RandomPassword(f"{name}-admin-password", length=32, special=False, opts=child)
        password: pulumi.Output[str] = pulumi.Output.secret(generated.result)
        return Secret(
            f"{name}-admin",
            metadata=ObjectMetaArgs(name=ADMIN_SECRET, namespace=args.namespace.output),
            type="Opaque",
            string_data={"username": pulumi.Output.secret("admin"), "password": password},
            opts=child,
        )

    def _client_user(self, name: str, args: MlflowServerArgs, image: str) -> pulumi.Output[str]:
        """The DAGs' and serving's MLflow user: its Secret, and a Job that creates it (or sets its
        password) through MLflow's API after the release is up. Returns its password, resolving
        only once the Job has succeeded."""
        child = pulumi.ResourceOptions(parent=self)
        generated = random.RandomPassword(f"{name}-client-password", length=32, special=False, opts=child)
        password: pulumi.Output[str] = pulumi.Output.secret(generated.result)
        user_labels = labels(component=CLIENT_SECRET)
        secret = Secret(
            f"{name}-client-user",
            metadata=ObjectMetaArgs(name=CLIENT_SECRET, namespace=args.namespace.output, labels=user_labels),
            type="Opaque",
            string_data={"username": pulumi.Output.secret(CLIENT_USERNAME), "password": password},
            opts=child,
        )
        script = Path(ensure_user_script.__file__).read_text()
        script_map = ConfigMap(
            f"{name}-client-user-script",
            metadata=ObjectMetaArgs(
                name=f"{CLIENT_SECRET}-script", namespace=args.namespace.output, labels=user_labels
            ),
            data={"ensure_user.py": script},
            opts=child,
        )
        # new inputs (script, server, password) run the Job again
        job = rerun_on_change_job(
            f"{name}-client-user-job",
            name=CLIENT_SECRET,
            namespace=args.namespace,
            labels=user_labels,
            digest_annotation=CLIENT_INPUTS_ANNOTATION,
            inputs=[script, self.internal_url, password],
            uid=MLFLOW_UID,
            container=_client_user_container(image, self.internal_url),
            volumes=_client_user_volumes(),
            backoff_limit=10,
            deadline_seconds=1200,
            parent=self,
            depends_on=[self.release, secret, script_map],
        )
        # consumers of the password (the endpoints' credentials Secrets) wait for the user to exist
        return pulumi.Output.secret(pulumi.Output.all(password, job.id).apply(lambda v: str(v[0])))
