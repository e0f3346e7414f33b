"""MLflow tracking server and model registry (community-charts `mlflow` chart)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_random as random
from pulumi_kubernetes.core.v1 import Secret
from pulumi_kubernetes.helm.v3 import Release, RepositoryOptsArgs
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs

from components.options import inherited_depends_on
from stacks.settings import MlflowSettings

MLFLOW_REPO = "https://community-charts.github.io/helm-charts"
RELEASE = "mlflow"
SERVICE_PORT = 80  # the chart's Service port (container port 5000)
ROTATION_ANNOTATION = "mlops-platform/s3-key"


@dataclass(frozen=True)
class MlflowServerArgs:
    namespace: pulumi.Input[str]
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


class MlflowServer(pulumi.ComponentResource):
    """Builds the MLflow Helm release: backend store in Postgres through the existing database
    Secret, artifacts in the bucket's MLflow prefix through the rotated-key Secret, proxied
    artifact serving (clients need only the tracking URL, no AWS keys), background job execution
    off unless configured, resources, a TLS Ingress signed by the stack's issuer, and with
    `basic_auth` an admin account whose generated password lives in a Secret. The pod template
    carries the S3 key's rotation annotation, so MLflow rolls onto a new key.

    Exports `internal_url`, `external_url` and, with basic auth, `admin_secret`.
    """

    def __init__(self, name: str, args: MlflowServerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:platform:MlflowServer", name, None, opts)
        s = args.settings
        depends: list[pulumi.Resource] = []
        auth: dict[str, object] = {"enabled": False}
        admin_secret_name = "mlflow-admin"
        if s.basic_auth:
            password = random.RandomPassword(f"{name}-admin-password", length=32, special=False, opts=pulumi.ResourceOptions(parent=self))
            admin_password: pulumi.Output[str] = pulumi.Output.secret(password.result)
            admin = Secret(
                f"{name}-admin",
                metadata=ObjectMetaArgs(name=admin_secret_name, namespace=args.namespace),
                type="Opaque",
                string_data={"username": pulumi.Output.secret("admin"), "password": admin_password},
                opts=pulumi.ResourceOptions(parent=self),
            )
            depends.append(admin)
            auth = {
                "enabled": True,
                "existingAdminSecret": {"name": admin_secret_name, "usernameKey": "username", "passwordKey": "password"},
                "defaultPermission": "READ",
            }
        artifacts = pulumi.Output.concat("s3://", args.bucket, f"/{args.artifact_prefix.strip('/')}")
        image: dict[str, str] = {"repository": "burakince/mlflow"}
        if s.image_tag:
            image["tag"] = s.image_tag
        values = {
            "replicaCount": s.replicas,
            "image": image,
            "podAnnotations": {ROTATION_ANNOTATION: args.rotation_annotation},
            "podSecurityContext": {
                "fsGroup": 1001,
                "fsGroupChangePolicy": "OnRootMismatch",
                "runAsNonRoot": True,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "backendStore": {
                "databaseMigration": True,
                "postgres": {
                    "enabled": True,
                    "host": args.db_host,
                    "port": args.db_port,
                    "database": args.db_name,
                    "driver": "psycopg2",
                },
                "existingDatabaseSecret": {"name": args.db_secret, "usernameKey": "username", "passwordKey": "password"},
            },
            "artifactRoot": {
                "proxiedArtifactStorage": True,
                "defaultArtifactsDestination": artifacts,
                "s3": {
                    "enabled": True,
                    "bucket": args.bucket,
                    "path": args.artifact_prefix.strip("/"),
                    "existingSecret": {
                        "name": args.s3_secret,
                        "keyOfAccessKeyId": "AWS_ACCESS_KEY_ID",
                        "keyOfSecretAccessKey": "AWS_SECRET_ACCESS_KEY",
                    },
                },
            },
            "extraEnvVars": {
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true" if s.job_execution else "false",
                "AWS_DEFAULT_REGION": args.region,
            },
            "auth": auth,
            "serverAllowedHosts": [args.host, "mlflow", pulumi.Output.concat("mlflow.", args.namespace, ".svc.cluster.local")],
            "resources": {"requests": {"cpu": s.cpu, "memory": s.memory}, "limits": {"memory": s.memory}},
            "ingress": {
                "enabled": True,
                "className": args.ingress_class,
                "annotations": {"cert-manager.io/cluster-issuer": args.cluster_issuer},
                "hosts": [{"host": args.host, "paths": [{"path": "/", "pathType": "Prefix"}]}],
                "tls": [{"secretName": "mlflow-tls", "hosts": [args.host]}],
            },
        }
        self.release = Release(
            f"{name}-release",
            name=RELEASE,
            chart="mlflow",
            version=s.chart_version,
            repository_opts=RepositoryOptsArgs(repo=MLFLOW_REPO),
            namespace=args.namespace,
            atomic=True,
            timeout=900,
            values=values,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*depends, *inherited_depends_on(opts)]),
        )
        self.internal_url: pulumi.Output[str] = pulumi.Output.concat(
            f"http://{RELEASE}.", args.namespace, f".svc.cluster.local:{SERVICE_PORT}"
        )
        self.external_url: pulumi.Output[str] = pulumi.Output.from_input(f"https://{args.host}")
        self.register_outputs(
            {
                "internal_url": self.internal_url,
                "external_url": self.external_url,
                "admin_secret": admin_secret_name if s.basic_auth else None,
            }
        )
