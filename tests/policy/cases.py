"""A compliant and a violating input for every policy in the pack, built like the engine's resources."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from policy.testing import UNKNOWN, Resource

ACCOUNT = "123456789012"


# --- AWS -----------------------------------------------------------------------------------------
def bucket(name: str = "artifacts", **props: Any) -> Resource:
    physical = f"{name}-3f2a1b"
    return Resource(
        "aws:s3/bucket:Bucket", name, {"bucket": physical, "id": physical, "arn": f"arn:aws:s3:::{physical}", **props}
    )


def _on(b: Resource, kind: str, name: str, props: dict[str, Any], preview: bool = False) -> Resource:
    """A bucket companion; `preview=True` models a new bucket whose name is not known yet."""
    if preview:
        return Resource(
            kind, name, {"bucket": UNKNOWN, **props}, dependencies=(b.urn,), property_dependencies={"bucket": (b.urn,)}
        )
    return Resource(kind, name, {"bucket": b.props["bucket"], **props}, dependencies=(b.urn,))


def public_access_block(b: Resource, preview: bool = False, name: str = "", **flags: bool) -> Resource:
    props = {
        "blockPublicAcls": True,
        "blockPublicPolicy": True,
        "ignorePublicAcls": True,
        "restrictPublicBuckets": True,
        **flags,
    }
    return _on(b, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", name or f"{b.name}-pab", props, preview)


def versioning(b: Resource, status: str = "Enabled", preview: bool = False) -> Resource:
    return _on(
        b,
        "aws:s3/bucketVersioning:BucketVersioning",
        f"{b.name}-versioning",
        {"versioningConfiguration": {"status": status}},
        preview,
    )


def encryption(b: Resource, algorithm: str | None = "aws:kms", preview: bool = False) -> Resource:
    rules = (
        [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": algorithm}, "bucketKeyEnabled": True}]
        if algorithm
        else []
    )
    kind = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    return _on(b, kind, f"{b.name}-sse", {"rules": rules}, preview)


def tls_only_document(b: Resource, resources: list[str] | None = None, extra: Iterable[dict[str, Any]] = ()) -> str:
    arn = b.props["arn"]
    statements = [
        *extra,
        {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": resources if resources is not None else [arn, f"{arn}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        },
    ]
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def bucket_policy(b: Resource, document: str | None = None, preview: bool = False) -> Resource:
    return _on(
        b, "aws:s3/bucketPolicy:BucketPolicy", f"{b.name}-policy", {"policy": document or tls_only_document(b)}, preview
    )


def secure_bucket(name: str = "artifacts", preview: bool = False) -> list[Resource]:
    b = bucket(name)
    if preview:  # a bucket about to be created: provider-computed outputs are unknown
        b.props = {**b.props, "id": UNKNOWN, "arn": UNKNOWN}
    policy = bucket_policy(b, UNKNOWN if preview else None, preview=preview)  # built from the unknown ARN
    return [b, public_access_block(b, preview), versioning(b, preview=preview), encryption(b, preview=preview), policy]


def without(resources: list[Resource], type_fragment: str) -> list[Resource]:
    return [r for r in resources if type_fragment not in r.type]


def document(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


READ_ARTIFACTS = {
    "Effect": "Allow",
    "Action": ["s3:GetObject", "s3:ListBucket"],
    "Resource": ["arn:aws:s3:::artifacts-3f2a1b", "arn:aws:s3:::artifacts-3f2a1b/*"],
}
ADMIN = {"Effect": "Allow", "Action": "*", "Resource": "*"}


def iam(kind: str, name: str, **props: Any) -> Resource:
    return Resource(kind, name, props)


def user(name: str = "mlflow", preview: bool = False) -> Resource:
    physical = f"{name}-a1b2c3d"
    if preview:
        return Resource("aws:iam/user:User", name, {"name": UNKNOWN, "id": UNKNOWN, "arn": UNKNOWN})
    return Resource(
        "aws:iam/user:User", name, {"name": physical, "id": physical, "arn": f"arn:aws:iam::{ACCOUNT}:user/{physical}"}
    )


def access_key(u: Resource | str, preview: bool = False) -> Resource:
    if isinstance(u, str):
        return Resource("aws:iam/accessKey:AccessKey", "key", {"user": u})
    if preview:
        return Resource(
            "aws:iam/accessKey:AccessKey",
            f"{u.name}-key",
            {"user": UNKNOWN},
            dependencies=(u.urn,),
            property_dependencies={"user": (u.urn,)},
        )
    return Resource("aws:iam/accessKey:AccessKey", f"{u.name}-key", {"user": u.props["name"]}, dependencies=(u.urn,))


GOOD_DB: dict[str, Any] = {
    "engine": "postgres",
    "instanceClass": "db.m7g.large",
    "storageEncrypted": True,
    "publiclyAccessible": False,
    "backupRetentionPeriod": 14,
    "deletionProtection": True,
}


def db(
    name: str = "metadata", kind: str = "aws:rds/instance:Instance", provider: Resource | None = None, **overrides: Any
) -> Resource:
    props = {**GOOD_DB, **overrides}
    return Resource(kind, name, {k: v for k, v in props.items() if v is not None}, provider=provider)


def aws_provider(environment: str) -> Resource:
    # As the engine stores provider configuration: nested objects JSON-encoded.
    tags = {
        "tags": {"mlops-platform/stack": environment, "mlops-platform/environment": environment, "managed-by": "pulumi"}
    }
    return Resource("pulumi:providers:aws", "aws", {"region": "eu-west-1", "defaultTags": json.dumps(tags)})


# --- Kubernetes ----------------------------------------------------------------------------------
GOOD_CONTAINER: dict[str, Any] = {
    "name": "serving",
    "image": "ghcr.io/acme/mlops-serving:0.1.0",
    "securityContext": {"allowPrivilegeEscalation": False, "privileged": False, "capabilities": {"drop": ["ALL"]}},
    "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
}
GOOD_POD_CONTEXT = {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}}


def container(**changes: Any) -> dict[str, Any]:
    """GOOD_CONTAINER with top-level keys replaced (None removes a key)."""
    c = {**GOOD_CONTAINER, **changes}
    return {k: v for k, v in c.items() if v is not None}


def pod_spec(
    *containers: dict[str, Any], init: Iterable[dict[str, Any]] = (), context: dict[str, Any] | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "securityContext": GOOD_POD_CONTEXT if context is None else context,
        "containers": list(containers or [container()]),
    }
    if init:
        spec["initContainers"] = list(init)
    return spec


def k8s(kind: str, name: str, api: str, body: dict[str, Any]) -> Resource:
    return Resource(
        f"kubernetes:{api}:{kind}",
        name,
        {
            "apiVersion": api.replace("core/", ""),
            "kind": kind,
            "metadata": {"name": name, "namespace": "mlops-serving"},
            **body,
        },
    )


def workload(kind: str, spec: dict[str, Any], name: str = "serving") -> Resource:
    template = {"metadata": {"labels": {"app": name}}, "spec": spec}
    if kind == "Deployment":
        return k8s(kind, name, "apps/v1", {"spec": {"selector": {"matchLabels": {"app": name}}, "template": template}})
    if kind in ("StatefulSet", "DaemonSet", "ReplicaSet"):
        return k8s(kind, name, "apps/v1", {"spec": {"selector": {"matchLabels": {"app": name}}, "template": template}})
    if kind == "Job":
        return k8s(kind, name, "batch/v1", {"spec": {"template": template}})
    if kind == "CronJob":
        return k8s(
            kind, name, "batch/v1", {"spec": {"schedule": "0 * * * *", "jobTemplate": {"spec": {"template": template}}}}
        )
    if kind == "Pod":
        return k8s(kind, name, "core/v1", {"spec": spec})
    raise ValueError(kind)


WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod")


def deployment(*containers: dict[str, Any], **kw: Any) -> Resource:
    return workload("Deployment", pod_spec(*containers, **kw))


def ingress(tls: list[dict[str, Any]] | None, hosts: Iterable[str] = ("serving.mlops.example.com",)) -> Resource:
    rules = [
        {
            "host": h,
            "http": {
                "paths": [
                    {
                        "path": "/",
                        "pathType": "Prefix",
                        "backend": {"service": {"name": "serving", "port": {"number": 80}}},
                    }
                ]
            },
        }
        for h in hosts
    ]
    spec: dict[str, Any] = {"ingressClassName": "traefik", "rules": rules}
    if tls is not None:
        spec["tls"] = tls
    return k8s("Ingress", "serving", "networking.k8s.io/v1", {"spec": spec})


def persistent_volume(policy: str | None) -> Resource:
    spec: dict[str, Any] = {
        "capacity": {"storage": "50Gi"},
        "accessModes": ["ReadWriteMany"],
        "nfs": {"server": "nfs.example.com", "path": "/exports"},
    }
    if policy is not None:
        spec["persistentVolumeReclaimPolicy"] = policy
    return k8s("PersistentVolume", "serving-logs", "core/v1", {"spec": spec})


def config_map(data: dict[str, str]) -> Resource:
    return k8s("ConfigMap", "serving-config", "core/v1", {"data": data})


def helm_release(version: str | None, chart: str = "traefik", kind: str = "kubernetes:helm.sh/v3:Release") -> Resource:
    props: dict[str, Any] = {
        "chart": chart,
        "repositoryOpts": {"repo": "https://traefik.github.io/charts"},
        "namespace": "mlops-ingress",
    }
    if version is not None:
        props["version"] = version
    return Resource(kind, chart, props)


# --- the table -----------------------------------------------------------------------------------
Target = Resource | list[Resource]


@dataclass
class Case:
    target: Target
    expect: str | None = None  # a violating case: text the reported message must contain
    env: dict[str, str] = field(default_factory=dict)
    label: str = ""


def ok(target: Target, label: str = "", env: dict[str, str] | None = None) -> Case:
    return Case(target, None, env or {}, label)


def bad(target: Target, expect: str, label: str = "", env: dict[str, str] | None = None) -> Case:
    return Case(target, expect, env or {}, label)


def _k8s_cases() -> dict[str, list[Case]]:
    return {
        "k8s-run-as-non-root": [
            ok(deployment(), "pod-level runAsNonRoot"),
            ok(
                deployment(
                    container(securityContext={**GOOD_CONTAINER["securityContext"], "runAsUser": 999}), context={}
                ),
                "container UID only",
            ),
            bad(deployment(context={}), "may run as root", "no security context"),
            bad(
                deployment(container(securityContext={**GOOD_CONTAINER["securityContext"], "runAsUser": 0})),
                "runs as UID 0",
                "container overrides with UID 0",
            ),
            bad(
                deployment(init=[container(name="migrate")], context={"runAsNonRoot": False}),
                "initContainer 'migrate'",
                "init container",
            ),
        ],
        "k8s-not-privileged": [
            ok(deployment()),
            bad(
                deployment(container(securityContext={**GOOD_CONTAINER["securityContext"], "privileged": True})),
                "is privileged",
            ),
        ],
        "k8s-no-privilege-escalation": [
            ok(deployment()),
            bad(
                deployment(container(securityContext={"privileged": False})), "allowPrivilegeEscalation: false", "unset"
            ),
            bad(
                deployment(container(securityContext={"allowPrivilegeEscalation": True})),
                "allows privilege escalation",
                "true",
            ),
        ],
        "k8s-resource-requests-and-limits": [
            ok(deployment()),
            bad(
                deployment(
                    container(resources={"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}})
                ),
                "resources.limits.cpu",
                "no CPU limit",
            ),
            bad(
                deployment(container(resources=None)),
                "resources.requests.cpu, resources.requests.memory",
                "no resources",
            ),
        ],
        "k8s-pinned-image-tags": [
            ok(deployment(container(image="ghcr.io/acme/mlops-airflow:3.2.0-mlops-0.1.0")), "version tag"),
            ok(deployment(container(image="registry.local:5000/mlops/serving@sha256:" + "a" * 64)), "digest"),
            bad(deployment(container(image="python")), "without a tag", "no tag"),
            bad(deployment(container(image="ghcr.io/acme/serving:latest")), "floating tag", "latest"),
            bad(
                deployment(container(image="registry.local:5000/mlops/serving")),
                "without a tag",
                "registry port is not a tag",
            ),
        ],
        "k8s-ingress-tls": [
            ok(ingress([{"hosts": ["serving.mlops.example.com"], "secretName": "serving-tls"}])),
            ok(ingress([{"hosts": ["*.mlops.example.com"], "secretName": "wildcard-tls"}]), "wildcard certificate"),
            bad(ingress(None), "serves plain HTTP", "no tls"),
            bad(
                ingress(
                    [{"hosts": ["serving.mlops.example.com"], "secretName": "t"}],
                    hosts=["serving.mlops.example.com", "mlflow.mlops.example.com"],
                ),
                "mlflow.mlops.example.com",
                "host not covered",
            ),
        ],
        "k8s-persistent-volume-retain": [
            ok(persistent_volume("Retain")),
            bad(persistent_volume("Delete"), "'Delete'", "Delete"),
            bad(persistent_volume(None), "unset", "unset"),
        ],
        "k8s-configmap-no-secrets": [
            ok(
                config_map(
                    {
                        "MLOPS_SERVING_RELOAD_URL": "http://serving/reload",
                        "MLFLOW_TRACKING_URI": "http://mlflow:5000",
                        "DB_PASSWORD_FILE": "/run/secrets/db/password",
                        "SECRET_NAME": "mlflow-db",
                        "TOKEN_URL": "https://idp/token",
                        "AWS_ACCESS_KEY_ID_SECRET_REF": "ref",
                        "S3_KEY_PREFIX": "models/",
                        "ROUTING_KEY": "X-Client-Id",
                        "publicKey": "ssh-ed25519 AAAA",
                        "KEYCLOAK_REALM": "mlops",
                        "MONKEY_COUNT": "3",
                        "TOKENIZER": "bert",
                        "DATABASE_URL": "postgresql://mlflow:$(DB_PASSWORD)@db:5432/mlflow",
                        "PASSWORD_MIN_LENGTH": "12",
                    }
                ),
                "references and look-alikes",
            ),
            bad(config_map({"DB_PASSWORD": "hunter2"}), "'DB_PASSWORD' looks like a secret", "password"),
            bad(config_map({"apiKey": "abc"}), "'apiKey'", "camelCase api key"),
            bad(config_map({"AWS_SECRET_ACCESS_KEY": "x"}), "'AWS_SECRET_ACCESS_KEY'", "aws secret"),
            bad(config_map({"AIRFLOW__CORE__FERNET_KEY": "x"}), "FERNET_KEY", "fernet key"),
            bad(config_map({"MLFLOW_TRACKING_TOKEN": "x"}), "MLFLOW_TRACKING_TOKEN", "token"),
            bad(
                config_map({"tls.key": "-----BEGIN PRIVATE KEY-----\nMIIE...\n-----END PRIVATE KEY-----\n"}),
                "tls.key",
                "key file",
            ),
            bad(
                config_map({"ca.pem": "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n"}),
                "a PEM private key",
                "private key value",
            ),
            bad(
                config_map({"DATABASE_URL": "postgresql://mlflow:s3cr3t@db:5432/mlflow"}),
                "a URL with an embedded password",
                "password in URL",
            ),
            bad(
                config_map({"MLOPS_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/x"}),
                "'MLOPS_SLACK_WEBHOOK_URL'",
                "webhook URL key",
            ),
            bad(
                config_map({"ALERTS": "https://hooks.slack.com/services/T0/B0/x"}), "a webhook URL", "webhook URL value"
            ),
        ],
        "helm-chart-version-pinned": [
            ok(helm_release("34.1.0")),
            ok(helm_release("v1.16.2", chart="cert-manager"), "v-prefixed"),
            ok(helm_release(None, chart="./charts/mlops-serving"), "chart from this repository"),
            ok(helm_release("1.2.3", kind="kubernetes:helm.sh/v4:Chart"), "v4 Chart"),
            bad(helm_release(None), "has no version", "no version"),
            bad(helm_release("^34.0.0"), "'^34.0.0'", "range"),
            bad(helm_release("latest"), "'latest'", "latest"),
            bad(helm_release("1.x", kind="kubernetes:helm.sh/v4:Chart"), "'1.x'", "v4 Chart wildcard"),
        ],
    }


def _aws_cases() -> dict[str, list[Case]]:
    b = bucket()
    full = secure_bucket()
    other = bucket("logs")
    prod_env = {"PULUMI_STACK": "prod"}
    return {
        "s3-public-access-blocked": [
            ok(full),
            ok(secure_bucket(preview=True), "preview: bucket name unknown, matched by dependency"),
            bad(without(full, "PublicAccessBlock"), "has no aws.s3.BucketPublicAccessBlock", "missing"),
            bad(
                [*without(full, "PublicAccessBlock"), public_access_block(b, restrictPublicBuckets=False)],
                "restrict_public_buckets=True",
                "one flag off",
            ),
            bad(
                [*full, public_access_block(b, name="artifacts-pab-2")],
                "has 2 aws.s3.BucketPublicAccessBlock",
                "two blocks",
            ),
            bad(
                [*full, other, versioning(other), encryption(other), bucket_policy(other)],
                "bucket 'logs'",
                "second bucket: the first's block does not count",
            ),
        ],
        "s3-encryption-configured": [
            ok(full),
            ok(
                [
                    bucket(
                        serverSideEncryptionConfiguration={
                            "rule": {"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}
                        }
                    )
                ],
                "inline (legacy) configuration",
            ),
            bad(without(full, "ServerSideEncryption"), "has no server-side encryption configuration", "missing"),
            bad(
                [*without(full, "ServerSideEncryption"), encryption(b, None)], "sets no default encryption", "no rules"
            ),
        ],
        "s3-versioning-enabled": [
            ok(full),
            ok(secure_bucket(preview=True), "preview"),
            bad(without(full, "Versioning"), "has no aws.s3.BucketVersioning", "missing"),
            bad([*without(full, "Versioning"), versioning(b, "Suspended")], "status 'Suspended'", "suspended"),
        ],
        "s3-tls-only": [
            ok(full),
            ok(
                [*without(full, "BucketPolicy"), bucket_policy(b, tls_only_document(b, extra=[READ_ARTIFACTS]))],
                "TLS deny next to allows",
            ),
            bad(without(full, "BucketPolicy"), "has no aws.s3.BucketPolicy", "missing"),
            bad(
                [*without(full, "BucketPolicy"), bucket_policy(b, document(READ_ARTIFACTS))],
                "does not deny requests without TLS",
                "no deny",
            ),
            bad(
                [
                    *without(full, "BucketPolicy"),
                    bucket_policy(b, tls_only_document(b, resources=[f"{b.props['arn']}/*"])),
                ],
                "does not deny requests without TLS",
                "objects only",
            ),
            bad(
                [*full, other, public_access_block(other), versioning(other), encryption(other)],
                "bucket 'logs'",
                "second bucket: the first's policy does not count",
            ),
        ],
        "iam-no-wildcard-admin": [
            ok(iam("aws:iam/policy:Policy", "artifacts-rw", policy=document(READ_ARTIFACTS))),
            ok(
                iam(
                    "aws:iam/rolePolicy:RolePolicy",
                    "s3-all",
                    policy=document({"Effect": "Allow", "Action": "s3:*", "Resource": "*"}),
                ),
                "service wildcard",
            ),
            bad(
                iam("aws:iam/policy:Policy", "admin", policy=document(ADMIN)),
                "allows Action '*' on Resource '*'",
                "policy",
            ),
            bad(
                iam(
                    "aws:iam/userPolicy:UserPolicy",
                    "inline",
                    policy=document(READ_ARTIFACTS, {"Action": ["s3:GetObject", "*:*"], "Resource": ["*"]}),
                ),
                "statement 1",
                "user policy, implicit Allow",
            ),
            bad(
                iam("aws:iam/role:Role", "ops", inlinePolicies=[{"name": "all", "policy": document(ADMIN)}]),
                "inlinePolicies[0] (all)",
                "role inline",
            ),
            bad(
                iam(
                    "aws:s3/bucketPolicy:BucketPolicy",
                    "open",
                    bucket="b",
                    policy=json.loads(document({**ADMIN, "Principal": "*"})),
                ),
                "Resource '*'",
                "object document",
            ),
            bad(
                iam("aws:iam/policy:Policy", "garbled", policy="{not json"),
                "is not a JSON policy document",
                "unparseable",
            ),
        ],
        "iam-no-aws-managed-full-access": [
            ok(
                iam(
                    "aws:iam/userPolicyAttachment:UserPolicyAttachment",
                    "a",
                    user="mlflow",
                    policyArn=f"arn:aws:iam::{ACCOUNT}:policy/mlflow-artifacts",
                )
            ),
            ok(
                iam(
                    "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
                    "ro",
                    role="r",
                    policyArn="arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess",
                ),
                "AWS read-only",
            ),
            bad(
                iam(
                    "aws:iam/userPolicyAttachment:UserPolicyAttachment",
                    "s3",
                    user="mlflow",
                    policyArn="arn:aws:iam::aws:policy/AmazonS3FullAccess",
                ),
                "AmazonS3FullAccess",
                "S3 full access",
            ),
            bad(
                iam("aws:iam/role:Role", "admin", managedPolicyArns=["arn:aws:iam::aws:policy/AdministratorAccess"]),
                "AdministratorAccess",
                "admin on role",
            ),
            bad(
                iam(
                    "aws:iam/groupPolicyAttachmentsExclusive:GroupPolicyAttachmentsExclusive",
                    "g",
                    groupName="ops",
                    policyArns=["arn:aws-us-gov:iam::aws:policy/service-role/AWSGlueServiceNotebookFullAccess"],
                ),
                "FullAccess",
                "path and partition",
            ),
        ],
        "iam-access-keys-for-stack-users-only": [
            ok([user(), access_key(user())]),
            ok(
                [user(preview=True), access_key(user(preview=True), preview=True)],
                "preview: user name unknown, matched by dependency",
            ),
            bad(
                [user(), access_key("alice")],
                "IAM user 'alice', which this stack does not create",
                "someone else's user",
            ),
        ],
        "rds-storage-encrypted": [
            ok(db()),
            ok(db(kind="aws:rds/cluster:Cluster"), "cluster"),
            bad(db(storageEncrypted=None), "unencrypted", "unset"),
            bad(db(kind="aws:rds/cluster:Cluster", storageEncrypted=False), "storage_encrypted=True", "cluster off"),
        ],
        "rds-not-publicly-accessible": [
            ok(db()),
            ok(db(publiclyAccessible=None), "unset (private by default)"),
            bad(db(publiclyAccessible=True), "publicly_accessible=False", "instance"),
            bad(
                db(kind="aws:rds/clusterInstance:ClusterInstance", publiclyAccessible=True),
                "is publicly accessible",
                "cluster instance",
            ),
        ],
        "rds-backup-retention": [
            ok(db(backupRetentionPeriod=7), "exactly 7"),
            bad(db(backupRetentionPeriod=1), "for 1 day(s)", "one day"),
            bad(db(backupRetentionPeriod=None), "unset (AWS then keeps 1 day)", "unset"),
        ],
        "rds-deletion-protection-in-prod": [
            ok(db(), "prod with protection", env=prod_env),
            ok(db(deletionProtection=None, provider=aws_provider("dev")), "dev stack", env={"PULUMI_STACK": "dev"}),
            ok(
                db(deletionProtection=None, tagsAll=UNKNOWN),
                "dev preview: computed tags unknown",
                env={"PULUMI_STACK": "dev"},
            ),
            bad(db(deletionProtection=None), "stack 'prod' is a production stack", "stack name", env=prod_env),
            bad(
                db(deletionProtection=False),
                "stack 'eu-prod'",
                "stack name with a prod word",
                env={"PULUMI_STACK": "eu-prod"},
            ),
            bad(
                db(deletionProtection=False),
                "stack config mlops-platform:environment",
                "stack config",
                env={"PULUMI_STACK": "main", "PULUMI_CONFIG": json.dumps({"mlops-platform:environment": "prod"})},
            ),
            bad(
                db(deletionProtection=False, provider=aws_provider("prod")),
                "provider default tag mlops-platform/environment=prod",
                "provider default tags",
            ),
            bad(
                db(deletionProtection=False, tags={"mlops-platform/environment": "prod"}),
                "tag mlops-platform/environment=prod",
                "resource tag",
            ),
        ],
    }


def all_cases() -> dict[str, list[Case]]:
    return {**_aws_cases(), **_k8s_cases()}
