"""Composition of the data layer for one stack: artifact store, database, shared NFS storage."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pulumi

from components import airflow, serving
from components.artifact_store import (
    AIRFLOW_LOG_PREFIX,
    MLFLOW_PREFIX,
    ArtifactStore,
    ArtifactStoreArgs,
    Consumer,
    S3CompatibleStore,
    S3CompatibleStoreArgs,
    S3Endpoint,
    StoreCredentials,
    rotation_plan,
)
from components.database import AppDatabase, Database, DatabaseArgs
from components.logging import LOKI_PREFIX
from components.namespaces import NamespaceRef, PlatformNamespaces
from components.shared_storage import NfsVolume, SharedStorage, SharedStorageArgs
from stacks.settings import StackSettings

# The rotation clock (S3 keys and database passwords). `pulumi up` uses the real time; set this (ISO-8601 with a
# zone) to run a rotation drill for a given instant, as the tests do. It is read here and nowhere else: the
# components take the instant as `ArtifactStoreArgs.now` and `DatabaseArgs.rotation` and never read a clock. An
# environment variable rather than a stack setting, so a drill cannot be committed to a stack file.
ROTATION_CLOCK_VAR = "MLOPS_ROTATION_NOW"

# Names of the data layer's Secrets and claims in the services' namespaces, defined here and read
# by the services' composition through `DataLayer` (the services themselves never spell them).
MLFLOW_S3_SECRET = "mlflow-s3-credentials"
AIRFLOW_LOGS_SECRET = "airflow-s3-logs"
AIRFLOW_LOGS_CONN_ID = "mlops_s3_logs"
MLFLOW_DB_SECRET = "mlflow-db"
AIRFLOW_DB_SECRET = "airflow-metadata"
MLFLOW_AUTH_DB_SECRET = "mlflow-auth-db"
API_DB_SECRET = "mlops-api-db"  # the platform API's connection Secret (username, password) in its namespace
SERVING_LOGS_CLAIM = "serving-logs"
AIRFLOW_LOGS_CLAIM = "airflow-logs"
LOKI_S3_SECRET = "loki-s3-credentials"


def rotation_now() -> datetime:
    raw = os.environ.get(ROTATION_CLOCK_VAR)
    if not raw:
        return datetime.now(UTC)
    now = datetime.fromisoformat(raw)
    if now.tzinfo is None:
        raise ValueError(f"{ROTATION_CLOCK_VAR} must carry a time zone, e.g. 2026-11-23T00:00:00+00:00; got {raw!r}")
    return now


@dataclass
class DataLayer:
    """What the platform's services need from the data layer (names are plain where they are known).
    The field names are an interface (infra/platform_services.py reads them): add fields, do not rename.

    - `artifacts`, `database`, `storage`: the three components.
    - `bucket_name`: the artifact bucket; `mlflow_prefix` ("mlflow/") and `airflow_log_prefix`
      ("airflow-logs/") are the only prefixes the two IAM users may touch.
    - `mlflow_s3_secret`: Secret in the MLflow namespace with `AWS_ACCESS_KEY_ID` and
      `AWS_SECRET_ACCESS_KEY` (the MLflow chart's `artifactRoot.s3.existingSecret`).
    - `airflow_logs_secret`: Secret in the Airflow namespace with `AIRFLOW_CONN_<airflow_logs_conn_id
      upper-cased>`, an `aws://` connection URI for remote logging, and the same key as `AWS_ACCESS_KEY_ID` and
      `AWS_SECRET_ACCESS_KEY` (for training code reading s3:// datasets).
    - `rotation_annotations`: consumer ("mlflow", "airflow") -> a value to put on that workload's pod
      template (e.g. `podAnnotations`); it changes when the active key changes and resolves only
      after the Secret holds the new key, so the pods roll onto it. Not secret.
    - `db_credential_annotations`: application ("mlflow", "mlflow_auth", "airflow", "platform_api") -> a value
      for the pod template of the workloads that read its database Secret (`DB_CREDENTIALS_ANNOTATION`); it
      changes when the Secret gets the next login role and password, and resolves only after the Secret holds
      them, so the pods roll onto them. Not secret.
    - `mlflow_db_secret`: Secret in the MLflow namespace with `username` and `password`
      (`backendStore.existingDatabaseSecret`); `airflow_db_secret`: Secret in the Airflow namespace with
      `connection` = `postgresql://...` (the Airflow chart's `data.metadataSecretName`).
    - `db_host` (resolves after the bootstrap Job has created the roles and databases), `db_port`,
      `mlflow_database`, `airflow_database`.
    - `mlflow_auth_db_secret` (MLflow namespace, `username`/`password`) and `mlflow_auth_database`:
      the database of MLflow's basic-auth users and permissions; None unless `mlflow.basicAuth`.
    - `api_db_secret` (API namespace, `username`/`password`) and `api_database`: the platform API's own
      database (runs, events, tokens).
    - `serving_logs_claim` (serving namespace) and `airflow_logs_claim` (Airflow namespace; the claim
      exists only when `airflow.remoteLogging` is false): ReadWriteMany NFS claims.
    - `volume_ready`: claim -> what must have completed before a pod mounts it (the Job that prepared its
      directory, or its EFS access point); absent when there is nothing to wait for.
    - `loki_s3_secret` (monitoring namespace, `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`) and `loki_prefix`
      ("loki/"): central logs' own consumer of the bucket (rotation annotation under "loki"); None unless
      `observability.enabled`.
    - `s3_endpoint`: with `artifacts.mode: s3Compatible`, how every consumer reaches the store (its URL, region,
      addressing, and the ConfigMap with its CA in each consumer's namespace); None on AWS S3.
    """

    artifacts: ArtifactStore | S3CompatibleStore
    database: Database
    storage: SharedStorage
    bucket_name: pulumi.Output[str]
    mlflow_prefix: str
    airflow_log_prefix: str
    mlflow_s3_secret: str
    airflow_logs_secret: str
    airflow_logs_conn_id: str
    mlflow_db_secret: str
    airflow_db_secret: str
    serving_logs_claim: str
    airflow_logs_claim: str
    rotation_annotations: dict[str, pulumi.Output[str]]
    db_host: pulumi.Output[str]
    db_port: pulumi.Output[int]
    mlflow_database: str
    airflow_database: str = "airflow"
    api_db_secret: str = API_DB_SECRET
    api_database: str = "platform_api"
    mlflow_auth_db_secret: str | None = None
    mlflow_auth_database: str | None = None
    volume_ready: dict[str, pulumi.Resource] = field(default_factory=dict)
    db_sslmode: str = "disable"
    db_ca_configmap: str | None = None  # the external server's CA (key ca.crt) in every app namespace; None = none
    loki_s3_secret: str | None = None
    loki_prefix: str | None = None
    s3_endpoint: S3Endpoint | None = None
    db_credential_annotations: dict[str, pulumi.Output[str]] = field(default_factory=dict)

    def db_credentials(self, *apps: str) -> pulumi.Output[str]:
        """One pod-template value for a workload that reads the database Secrets of `apps` (those that exist): it
        changes when any of them gets new credentials."""
        values = [self.db_credential_annotations[app] for app in apps if app in self.db_credential_annotations]
        return pulumi.Output.all(*values).apply(lambda v: "-".join(str(x) for x in v))


def app_databases(s: StackSettings, ns: Mapping[str, NamespaceRef]) -> dict[str, AppDatabase]:
    """Application -> its database, role and connection Secret (in the namespace of `ns`, service -> namespace):
    MLflow's, Airflow's and the platform API's, and with MLflow basic auth the database of its users and permissions
    (shared by the replicas). On a provisioned external server the database and role are the given ones."""
    wanted = [
        ("mlflow", ns["mlflow"], MLFLOW_DB_SECRET, "username-password"),
        ("airflow", ns["airflow"], AIRFLOW_DB_SECRET, "sqlalchemy-url"),
        ("platform_api", ns["api"], API_DB_SECRET, "username-password"),
    ]
    if s.mlflow.basic_auth:
        wanted.append(("mlflow_auth", ns["mlflow"], MLFLOW_AUTH_DB_SECRET, "username-password"))
    apps = {}
    for app, namespace, secret, form in wanted:
        given = s.database.given(app) if _provisioned(s) else None
        database, role = (given.database, given.user) if given else (app, app)
        apps[app] = AppDatabase(database, role, namespace, secret, form, app)
    return apps


def _provisioned(s: StackSettings) -> bool:
    return s.database.mode == "external" and s.database.provisioned


def _given_passwords(s: StackSettings, apps: Mapping[str, AppDatabase]) -> dict[str, pulumi.Output[str]] | None:
    """A provisioned server's given password of each application's role (secret); None otherwise."""
    if not _provisioned(s):
        return None
    passwords = {}
    for app, spec in apps.items():
        given = s.database.given(app)
        if given is None:  # load_settings refuses this
            raise ValueError(f"database.credentials of {app} are missing")
        passwords[spec.role] = given.password.output()
    return passwords


def training_datasets(s: StackSettings) -> tuple[str, ...]:
    """The datasets of the catalog's models (`training.dataset`); those inside the artifact bucket are granted."""
    return tuple(sorted({m.training.dataset for m in s.catalog.models.values() if m.training.dataset}))


def _consumers(s: StackSettings, ns: Mapping[str, NamespaceRef]) -> dict[str, Consumer]:
    """The store's consumers: MLflow, Airflow (its logs, and the training pods' datasets), Loki with observability."""
    consumers = {
        "mlflow": Consumer(MLFLOW_PREFIX, ns["mlflow"], MLFLOW_S3_SECRET, "aws-env"),
        # the training pods are Airflow task pods: the Airflow user reads the catalog's datasets in the bucket
        "airflow": Consumer(
            AIRFLOW_LOG_PREFIX,
            ns["airflow"],
            AIRFLOW_LOGS_SECRET,
            "airflow-connection",
            AIRFLOW_LOGS_CONN_ID,
            datasets=training_datasets(s),
        ),
    }
    if s.observability.enabled:
        # central logs: Loki's chunks and index under its own prefix, with its own rotated key
        consumers["loki"] = Consumer(LOKI_PREFIX, ns["monitoring"], LOKI_S3_SECRET, "aws-env")
    return consumers


def _artifact_store(
    s: StackSettings, ns: Mapping[str, NamespaceRef], opts: pulumi.ResourceOptions
) -> ArtifactStore | S3CompatibleStore:
    """The bucket on AWS with its IAM users and rotating keys, or the existing bucket of an S3-compatible store."""
    consumers = _consumers(s, ns)
    if s.artifacts.s3_compatible:
        return _s3_compatible_store(s, consumers, opts)
    return ArtifactStore(
        "artifacts",
        ArtifactStoreArgs(
            stack=s.stack,
            region=s.aws_region,
            now=rotation_now(),
            key_rotation_days=s.artifacts.key_rotation_days,
            noncurrent_version_days=s.artifacts.noncurrent_version_days,
            abort_multipart_days=s.artifacts.abort_multipart_days,
            kms_key_arn=s.artifacts.kms_key_arn,
            protect=s.protect,
            consumers=consumers,
            expire_prefixes={AIRFLOW_LOG_PREFIX: s.retention.airflow_logs_days} if s.airflow.remote_logging else {},
        ),
        opts=opts,
    )


def _s3_compatible_store(
    s: StackSettings, consumers: dict[str, Consumer], opts: pulumi.ResourceOptions
) -> S3CompatibleStore:
    """artifacts.mode s3Compatible: each consumer's key of its slot in use (secret), the endpoint, the CA."""
    a = s.artifacts
    if a.bucket is None or a.endpoint is None:  # load_settings refuses this
        raise ValueError("artifacts.bucket and artifacts.endpoint are required in s3Compatible mode")
    credentials = {}
    for consumer in consumers:
        key = a.active_key(consumer)
        credentials[consumer] = StoreCredentials(
            key.slot, pulumi.Output.secret(key.access_key_id), key.secret_access_key.output()
        )
    return S3CompatibleStore(
        "artifacts",
        S3CompatibleStoreArgs(
            bucket=a.bucket,
            endpoint=a.endpoint,
            region=a.region,
            path_style=a.path_style,
            consumers=consumers,
            credentials=credentials,
            ca_certificate=a.ca_certificate,
        ),
        opts=opts,
    )


def _database(
    s: StackSettings, apps: dict[str, AppDatabase], namespace: NamespaceRef, opts: pulumi.ResourceOptions
) -> Database:
    db = s.database
    return Database(
        "database",
        DatabaseArgs(
            stack=s.stack,
            mode=db.mode,
            engine_version=db.engine_version,
            namespace=namespace,
            apps=list(apps.values()),
            # the stack's rotation period, the IAM keys' (artifacts.keyRotationDays)
            rotation=rotation_plan(rotation_now(), s.artifacts.key_rotation_days),
            protect=s.protect,
            image=s.third_party_image(f"postgres-{db.engine_version}").reference,
            instance_class=db.instance_class,
            allocated_storage_gb=db.allocated_storage_gb,
            multi_az=db.multi_az,
            deletion_protection=db.deletion_protection,
            backup_retention_days=db.backup_retention_days,
            final_snapshot=s.is_prod,
            vpc_id=db.vpc_id,
            subnet_ids=db.subnet_ids,
            allowed_cidrs=db.allowed_cidrs,
            storage_size=db.storage_size,
            storage_class=db.storage_class,
            host=db.host,
            port=db.port,
            sslmode=s.database_sslmode,
            ca_certificate=db.ca_certificate,
            admin_user=db.admin_user,
            admin_password=db.admin_password.output() if db.admin_password else None,
            given_passwords=_given_passwords(s, apps),
        ),
        opts=opts,
    )


def storage_namespace(s: StackSettings) -> str | None:
    """Where the NFS preparation Jobs run (Pod Security baseline: they chown as root); None with EFS access
    points."""
    return s.namespace("storage") if s.nfs.mode == "nfs" else None


def _log_volume(claim: str, namespace: NamespaceRef, size: str, uid: int, gid: int, days: int) -> NfsVolume:
    """A log volume of `namespace`: its claim and sub-directory named `claim`, owned by the uid and gid its pods run
    as, its files pruned after `days`."""
    return NfsVolume(claim, namespace, claim, size, uid=uid, gid=gid, prune_days=days)


def _shared_storage(s: StackSettings, ns: Mapping[str, NamespaceRef], opts: pulumi.ResourceOptions) -> SharedStorage:
    """The serving logs' volume, and Airflow's task logs' volume unless they go to the bucket: owned by the uid and
    gid their pods run as, their files pruned after the retention days."""
    serving_logs = (s.nfs.serving_logs_size, serving.RUN_AS, serving.RUN_AS, s.retention.serving_logs_days)
    volumes = {SERVING_LOGS_CLAIM: _log_volume(SERVING_LOGS_CLAIM, ns["serving"], *serving_logs)}
    if not s.airflow.remote_logging:
        airflow_logs = (
            s.nfs.airflow_logs_size,
            airflow.AIRFLOW_UID,
            airflow.AIRFLOW_GID,
            s.retention.airflow_logs_days,
        )
        volumes[AIRFLOW_LOGS_CLAIM] = _log_volume(AIRFLOW_LOGS_CLAIM, ns["airflow"], *airflow_logs)
    return SharedStorage(
        "storage",
        SharedStorageArgs(
            stack=s.stack,
            server=s.nfs.server,
            path=s.nfs.path,
            mount_options=s.nfs.mount_options,
            volumes=volumes,
            image=s.platform_serving_image,
            protect=s.protect,
            mode=s.nfs.mode,
            prepare_namespace=ns["storage"] if storage_namespace(s) is not None else None,
            file_system_id=s.nfs.file_system_id,
        ),
        opts=opts,
    )


def build_data_layer(
    s: StackSettings, aws_opts: pulumi.ResourceOptions, k8s_opts: pulumi.ResourceOptions, namespaces: PlatformNamespaces
) -> DataLayer:
    """The three components, their Kubernetes objects in the stack's namespaces (each waits for its Namespace)."""
    both = pulumi.ResourceOptions.merge(aws_opts, k8s_opts)
    ns = namespaces.refs
    apps = app_databases(s, ns)
    artifacts = _artifact_store(s, ns, both)
    database = _database(s, apps, ns["data"], both)
    storage = _shared_storage(s, ns, both)
    auth = apps.get("mlflow_auth")
    return DataLayer(
        artifacts=artifacts,
        database=database,
        storage=storage,
        bucket_name=artifacts.bucket_name,
        mlflow_prefix=MLFLOW_PREFIX,
        airflow_log_prefix=AIRFLOW_LOG_PREFIX,
        mlflow_s3_secret=MLFLOW_S3_SECRET,
        airflow_logs_secret=AIRFLOW_LOGS_SECRET,
        airflow_logs_conn_id=AIRFLOW_LOGS_CONN_ID,
        mlflow_db_secret=apps["mlflow"].secret_name,
        airflow_db_secret=apps["airflow"].secret_name,
        serving_logs_claim=SERVING_LOGS_CLAIM,
        airflow_logs_claim=AIRFLOW_LOGS_CLAIM,
        rotation_annotations=artifacts.rotation_annotations,
        db_host=database.host,
        db_port=database.port,
        db_sslmode=database.sslmode,
        db_ca_configmap=database.ca_configmap,
        mlflow_database=apps["mlflow"].database,
        airflow_database=apps["airflow"].database,
        api_db_secret=apps["platform_api"].secret_name,
        api_database=apps["platform_api"].database,
        mlflow_auth_db_secret=auth.secret_name if auth else None,
        mlflow_auth_database=auth.database if auth else None,
        volume_ready={storage.claims[key]: ready for key, ready in storage.ready.items()},
        loki_s3_secret=LOKI_S3_SECRET if s.observability.enabled else None,
        loki_prefix=LOKI_PREFIX if s.observability.enabled else None,
        s3_endpoint=artifacts.endpoint if isinstance(artifacts, S3CompatibleStore) else None,
        db_credential_annotations=database.credential_annotations,
    )
