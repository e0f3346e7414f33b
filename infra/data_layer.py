"""Composition of the data layer for one stack: artifact store, database, shared NFS storage."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime

import pulumi

from components.artifact_store import AIRFLOW_LOG_PREFIX, MLFLOW_PREFIX, ArtifactStore, ArtifactStoreArgs, Consumer
from components.database import AppDatabase, Database, DatabaseArgs
from components.namespaces import PlatformNamespaces
from components.shared_storage import NfsVolume, SharedStorage, SharedStorageArgs
from stacks.settings import StackSettings

# The key-rotation clock. `pulumi up` uses the real time; set this (ISO-8601 with a zone) to run a
# rotation drill for a given instant, as the tests do. It is read here and nowhere else: the
# component takes the instant as `ArtifactStoreArgs.now` and never reads a clock itself. An
# environment variable rather than a stack setting, so a drill cannot be committed to a stack file.
ROTATION_CLOCK_VAR = "MLOPS_ROTATION_NOW"


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
    The field names are an interface (infra/services.py reads them): add fields, do not rename.

    - `artifacts`, `database`, `storage`: the three components.
    - `bucket_name`: the artifact bucket; `mlflow_prefix` ("mlflow/") and `airflow_log_prefix`
      ("airflow-logs/") are the only prefixes the two IAM users may touch.
    - `mlflow_s3_secret`: Secret in the MLflow namespace with `AWS_ACCESS_KEY_ID` and
      `AWS_SECRET_ACCESS_KEY` (the MLflow chart's `artifactRoot.s3.existingSecret`).
    - `airflow_logs_secret`: Secret in the Airflow namespace with `AIRFLOW_CONN_<airflow_logs_conn_id
      upper-cased>`, an `aws://` connection URI for remote logging (`envFrom` it).
    - `rotation_annotations`: consumer ("mlflow", "airflow") -> a value to put on that workload's pod
      template (e.g. `podAnnotations`); it changes when the active key changes and resolves only
      after the Secret holds the new key, so the pods roll onto it. Not secret.
    - `mlflow_db_secret`: Secret in the MLflow namespace with `username` and `password`
      (`backendStore.existingDatabaseSecret`); `airflow_db_secret`: Secret in the Airflow namespace with
      `connection` = `postgresql://...` (the Airflow chart's `data.metadataSecretName`).
    - `db_host` (resolves after the bootstrap Job has created the roles and databases), `db_port`,
      `mlflow_database`, `airflow_database`.
    - `mlflow_auth_db_secret` (MLflow namespace, `username`/`password`) and `mlflow_auth_database`:
      the database of MLflow's basic-auth users and permissions; None unless `mlflow.basicAuth`.
    - `serving_logs_claim` (serving namespace) and `airflow_logs_claim` (Airflow namespace; the claim
      exists only when `airflow.remoteLogging` is false): ReadWriteMany NFS claims.
    """

    artifacts: ArtifactStore
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
    mlflow_auth_db_secret: str | None = None
    mlflow_auth_database: str | None = None


def build_data_layer(
    s: StackSettings, aws_opts: pulumi.ResourceOptions, k8s_opts: pulumi.ResourceOptions, namespaces: PlatformNamespaces
) -> DataLayer:
    both = pulumi.ResourceOptions.merge(aws_opts, k8s_opts)
    after_ns = pulumi.ResourceOptions.merge(both, pulumi.ResourceOptions(depends_on=[namespaces]))
    k8s_after_ns = pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=[namespaces]))
    mlflow_ns, airflow_ns = s.namespace("mlflow"), s.namespace("airflow")
    artifacts = ArtifactStore(
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
            consumers={
                "mlflow": Consumer(MLFLOW_PREFIX, mlflow_ns, "mlflow-s3-credentials", "aws-env"),
                "airflow": Consumer(
                    AIRFLOW_LOG_PREFIX, airflow_ns, "airflow-s3-logs", "airflow-connection", "mlops_s3_logs"
                ),
            },
        ),
        opts=after_ns,
    )
    db = s.database
    database = Database(
        "database",
        DatabaseArgs(
            stack=s.stack,
            mode=db.mode,
            engine_version=db.engine_version,
            namespace=s.namespace("data"),
            apps=[
                AppDatabase("mlflow", "mlflow", mlflow_ns, "mlflow-db", "username-password"),
                AppDatabase("airflow", "airflow", airflow_ns, "airflow-metadata", "sqlalchemy-url"),
                # MLflow basic auth keeps users and permissions in their own database (shared by the replicas)
                *(
                    [AppDatabase("mlflow_auth", "mlflow_auth", mlflow_ns, "mlflow-auth-db", "username-password")]
                    if s.mlflow.basic_auth
                    else []
                ),
            ],
            protect=s.protect,
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
        ),
        opts=after_ns,
    )
    volumes = {
        "serving-logs": NfsVolume("serving-logs", s.namespace("serving"), "serving-logs", s.nfs.serving_logs_size)
    }
    if not s.airflow.remote_logging:
        volumes["airflow-logs"] = NfsVolume("airflow-logs", airflow_ns, "airflow-logs", s.nfs.airflow_logs_size)
    storage = SharedStorage(
        "storage",
        SharedStorageArgs(
            stack=s.stack,
            server=s.nfs.server,
            path=s.nfs.path,
            mount_options=s.nfs.mount_options,
            volumes=volumes,
            protect=s.protect,
        ),
        opts=k8s_after_ns,
    )
    return DataLayer(
        artifacts=artifacts,
        database=database,
        storage=storage,
        bucket_name=artifacts.bucket_name,
        mlflow_prefix=MLFLOW_PREFIX,
        airflow_log_prefix=AIRFLOW_LOG_PREFIX,
        mlflow_s3_secret="mlflow-s3-credentials",
        airflow_logs_secret="airflow-s3-logs",
        airflow_logs_conn_id="mlops_s3_logs",
        mlflow_db_secret="mlflow-db",
        airflow_db_secret="airflow-metadata",
        serving_logs_claim="serving-logs",
        airflow_logs_claim="airflow-logs",
        rotation_annotations=artifacts.rotation_annotations,
        db_host=database.host,
        db_port=database.port,
        mlflow_database="mlflow",
        airflow_database="airflow",
        mlflow_auth_db_secret="mlflow-auth-db" if s.mlflow.basic_auth else None,
        mlflow_auth_database="mlflow_auth" if s.mlflow.basic_auth else None,
    )
