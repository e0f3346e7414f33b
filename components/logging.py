"""Central logs of one stack: Loki (monolithic) in the stack's bucket and Grafana Alloy collecting pod logs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi_kubernetes.helm.v3 import Release, RepositoryOptsArgs

from components.artifact_store import S3Endpoint
from components.images import registry_form, with_images
from components.namespaces import NamespaceRef
from components.naming import CLUSTER_DOMAIN, ROTATION_ANNOTATION, cluster_url
from components.options import inherited_depends_on
from components.pod_security import SECRET_FILE_MODE
from observability import logs
from services.common.contract import AWS_CREDENTIALS_KEY, AWS_SHARED_CREDENTIALS_FILE, secret_file
from stacks.settings import ImageRef

GRAFANA_REPO = "https://grafana.github.io/helm-charts"
LOKI_REPO = "https://grafana-community.github.io/helm-charts"
LOKI_RELEASE = "loki"
ALLOY_RELEASE = "alloy"
# Loki's objects live under this prefix of the stack's bucket; its IAM user may touch nothing else
# (infra/data_layer.py gives it a consumer of the artifact store like MLflow's and Airflow's).
LOKI_PREFIX = "loki/"
LOKI_UID = 10001  # the chart's default user
_S3_SECRET_DIR = secret_file("loki-s3", "").rstrip("/")  # where Loki's S3 key Secret is mounted
ALLOY_UID = 473  # the user of the grafana/alloy image


@dataclass(frozen=True)
class CentralLogsArgs:
    """`namespace` runs Loki and Alloy; `collect_namespaces` are the namespaces whose pods' logs are shipped.
    `s3_secret` (in `namespace`) holds the Loki user's rotated key as AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY;
    `rotation_annotation` changes with that key (Loki's pods roll onto a new one). Alloy's release puts a Role in each
    collected namespace: it waits for those the stack creates."""

    stack: str
    namespace: NamespaceRef
    loki_chart_version: str
    alloy_chart_version: str
    region: str
    bucket: pulumi.Input[str]
    s3_secret: str
    rotation_annotation: pulumi.Input[str]
    retention_days: int
    storage_size: str
    storage_class: str | None
    collect_namespaces: Sequence[NamespaceRef]
    prefix: str = LOKI_PREFIX
    s3_endpoint: S3Endpoint | None = None
    """An S3-compatible store (artifacts.mode s3Compatible): its endpoint, addressing and CA; None = AWS S3."""
    images: Mapping[str, ImageRef] = field(default_factory=dict)  # LOKI_IMAGES, ALLOY_IMAGES; absent: chart default


def _s3_client(args: CentralLogsArgs) -> dict[str, Any]:
    """Loki's S3 client (Thanos objstore): AWS S3 in the region, or the S3-compatible store over TLS (never
    `insecure`), path-style when configured, its certificate checked against the mounted CA."""
    endpoint = args.s3_endpoint
    if endpoint is None:
        return {"endpoint": f"s3.{args.region}.amazonaws.com", "region": args.region}
    client: dict[str, Any] = {
        "endpoint": endpoint.host,
        "region": endpoint.region,
        "insecure": False,
        "bucket_lookup_type": "path" if endpoint.path_style else "virtual-hosted",
    }
    if endpoint.ca_path is not None:
        client["http"] = {"tls_ca_path": endpoint.ca_path}
    return client


def _s3_client_volumes(args: CentralLogsArgs) -> dict[str, Any]:
    """An S3-compatible store's client ConfigMap (its CA) mounted in Loki; nothing on AWS S3."""
    if args.s3_endpoint is None:
        return {}
    return {"extraVolumes": [args.s3_endpoint.volume()], "extraVolumeMounts": [args.s3_endpoint.volume_mount()]}


# The charts' images (third-party images of the stack settings) and where their values set them
LOKI_IMAGES = {"loki": ("loki.image", registry_form)}
ALLOY_IMAGES = {"alloy": ("image", registry_form), "alloy-config-reloader": ("configReloader.image", registry_form)}


def loki_values(args: CentralLogsArgs) -> dict[str, Any]:
    """Loki as one binary: chunks and index in the bucket under `prefix` (Thanos object-store client, credentials
    from the rotated-key Secret's environment), retention by the compactor, no gateway, caches, canary or ruler."""
    persistence: dict[str, Any] = {"enabled": True, "size": args.storage_size}
    if args.storage_class:
        persistence["storageClass"] = args.storage_class
    values = {
        "deploymentMode": "Monolithic",
        "loki": {
            "auth_enabled": False,
            "commonConfig": {"replication_factor": 1},
            "schemaConfig": {
                "configs": [
                    {
                        "from": "2026-01-01",
                        "store": "tsdb",
                        "object_store": "s3",
                        "schema": "v13",
                        "index": {"prefix": "index_", "period": "24h"},
                    }
                ]
            },
            "storage": {
                "type": "s3",
                "bucketNames": {"chunks": args.bucket, "ruler": args.bucket},
                "use_thanos_objstore": True,
                "object_store": {
                    "type": "s3",
                    "storage_prefix": args.prefix.strip("/"),
                    "s3": _s3_client(args),
                },
            },
            "limits_config": {"retention_period": f"{args.retention_days * 24}h", "allow_structured_metadata": True},
            "compactor": {"retention_enabled": True, "delete_request_store": "s3"},
            "podAnnotations": {ROTATION_ANNOTATION: args.rotation_annotation},
        },
        "singleBinary": {
            "replicas": 1,
            # the S3 key as boto's shared credentials file (the Secret's `credentials` key), not as environment:
            # Loki's S3 client (Thanos objstore, minio-go) reads AWS_SHARED_CREDENTIALS_FILE when no key is configured;
            # with an S3-compatible store, its client ConfigMap (the CA) too
            "extraVolumes": [
                {
                    "name": "aws-credentials",
                    "secret": {
                        "secretName": args.s3_secret,
                        "defaultMode": SECRET_FILE_MODE,
                        "items": [{"key": AWS_CREDENTIALS_KEY, "path": AWS_CREDENTIALS_KEY}],
                    },
                },
                *_s3_client_volumes(args).get("extraVolumes", []),
            ],
            "extraVolumeMounts": [
                {"name": "aws-credentials", "mountPath": _S3_SECRET_DIR, "readOnly": True},
                *_s3_client_volumes(args).get("extraVolumeMounts", []),
            ],
            "extraEnv": [
                {"name": AWS_SHARED_CREDENTIALS_FILE.name, "value": f"{_S3_SECRET_DIR}/{AWS_CREDENTIALS_KEY}"}
            ],
            "persistence": persistence,
            "resources": {"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}},
        },
        "read": {"replicas": 0},
        "write": {"replicas": 0},
        "backend": {"replicas": 0},
        "gateway": {"enabled": False},
        "chunksCache": {"enabled": False},
        "resultsCache": {"enabled": False},
        "lokiCanary": {"enabled": False},
        "test": {"enabled": False},
        "ruler": {"enabled": False},
        "sidecar": {"rules": {"enabled": False}},
        # Roles in its namespace only: no cluster-wide object, so stacks sharing a cluster do not collide
        "rbac": {"namespaced": True},
    }
    return with_images(values, args.images, LOKI_IMAGES)


def loki_url(namespace: pulumi.Input[str]) -> pulumi.Output[str]:
    return cluster_url(LOKI_RELEASE, namespace, logs.LOKI_PORT)


def loki_base_url(namespace_name: str) -> str:
    """Loki's HTTP API inside the cluster, for a namespace whose name is known (Alloy's and Grafana's config)."""
    return f"http://{LOKI_RELEASE}.{namespace_name}.{CLUSTER_DOMAIN}:{logs.LOKI_PORT}"


def alloy_values(args: CentralLogsArgs) -> dict[str, Any]:
    """Alloy as one Deployment reading pod logs through the Kubernetes API: a Role per collected namespace
    allowing only pods and their logs (no ClusterRole, no host path), the pipeline of observability."""
    url = loki_base_url(args.namespace.name)
    collected = sorted({ns.name for ns in args.collect_namespaces})
    pipeline = logs.LogPipeline(stack=args.stack, namespaces=collected, loki_url=url)
    values = {
        "crds": {"create": False},
        "alloy": {
            "configMap": {"create": True, "content": logs.alloy_config(pipeline)},
            "enableReporting": False,
            "securityContext": {
                "readOnlyRootFilesystem": True,
                "runAsNonRoot": True,
                "runAsUser": ALLOY_UID,
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        },
        "controller": {"type": "deployment", "replicas": 1},
        "rbac": {
            "create": True,
            "namespaces": collected,
            "rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]}],
        },
        "global": {"podSecurityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}},
    }
    return with_images(values, args.images, ALLOY_IMAGES)


class CentralLogs(pulumi.ComponentResource):
    """Builds Loki (the community chart, monolithic: one StatefulSet) storing chunks and index in the stack's
    bucket under its own prefix with its own rotated-key IAM user, and Grafana Alloy shipping the logs of every
    pod of the stack's namespaces to it, labelled with stack, namespace, pod, container, app and model; the
    request id of JSON lines is kept as structured metadata.

    Exports the attribute below; `loki` and `alloy` (the Helm releases) are handles, not outputs.
    """

    loki_url: pulumi.Output[str]
    """Loki's HTTP API inside the cluster (Grafana's data source)."""

    def __init__(self, name: str, args: CentralLogsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:platform:CentralLogs", name, None, opts)
        waits = inherited_depends_on(opts)

        def release(chart: str, repo: str, version: str, values: dict[str, Any], after: list[Any]) -> Release:
            return Release(
                f"{name}-{chart}",
                name=chart,
                chart=chart,
                version=version,
                repository_opts=RepositoryOptsArgs(repo=repo),
                namespace=args.namespace.output,
                timeout=900,
                values=values,
                opts=pulumi.ResourceOptions(parent=self, depends_on=after),
            )

        self.loki: Release = release(LOKI_RELEASE, LOKI_REPO, args.loki_chart_version, loki_values(args), waits)
        roles_in = [ready for ns in args.collect_namespaces for ready in ns.wait_for]
        self.alloy: Release = release(
            ALLOY_RELEASE, GRAFANA_REPO, args.alloy_chart_version, alloy_values(args), [self.loki, *waits, *roles_in]
        )
        self.loki_url = loki_url(args.namespace.name)
        self.register_outputs({"loki_url": self.loki_url})
