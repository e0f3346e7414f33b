"""A compliant and a violating input for every policy in the pack, built like the engine's resources."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from policy.testing import UNKNOWN, Resource, secret

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
ARTIFACTS_ARNS = ["arn:aws:s3:::artifacts-3f2a1b", "arn:aws:s3:::artifacts-3f2a1b/*"]
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"


def allow(actions: str | list[str], resources: str | list[str]) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": actions, "Resource": resources}


def public_read(**extra: Any) -> dict[str, Any]:
    return {
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": f"{ARTIFACTS_ARNS[0]}/*",
        **extra,
    }


GITHUB_SUB = "token.actions.githubusercontent.com:sub"


def trust(principal: Any, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole", **extra}


def github_trust(condition: dict[str, Any] | None) -> dict[str, Any]:
    provider = f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com"
    statement = {**trust({"Federated": provider}), "Action": "sts:AssumeRoleWithWebIdentity"}
    aud = {"token.actions.githubusercontent.com:aud": "sts.amazonaws.com"}
    statement["Condition"] = (
        {"StringEquals": aud}
        if condition is None
        else {**condition, "StringEquals": {**aud, **condition.get("StringEquals", {})}}
    )
    return statement


def role(*statements: dict[str, Any]) -> Resource:
    return Resource("aws:iam/role:Role", "deployer", {"assumeRolePolicy": document(*statements)})


def not_principal(statement: dict[str, Any]) -> dict[str, Any]:
    """The statement for everyone except the account (NotPrincipal instead of Principal)."""
    rest = {k: v for k, v in statement.items() if k != "Principal"}
    return {**rest, "NotPrincipal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}}


def ingress_rule(
    from_port: int, to_port: int | None = None, cidrs: list[str] | None = None, ipv6: list[str] | None = None
) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "protocol": "tcp",
        "fromPort": from_port,
        "toPort": from_port if to_port is None else to_port,
    }
    rule["cidrBlocks"] = ["0.0.0.0/0"] if cidrs is None else cidrs
    if ipv6:
        rule["ipv6CidrBlocks"] = ipv6
    return rule


def security_group(*ingress: dict[str, Any]) -> Resource:
    return Resource(
        "aws:ec2/securityGroup:SecurityGroup", "web", {"vpcId": "vpc-1", "ingress": list(ingress), "egress": []}
    )


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
    c = {**copy.deepcopy(GOOD_CONTAINER), **changes}
    return {k: v for k, v in c.items() if v is not None}


def ephemeral_container(**changes: Any) -> dict[str, Any]:
    """A debug container as `kubectl debug` adds it: no resources (the API refuses them there)."""
    return container(name="debug", resources=None, **changes)


def pod_spec(
    *containers: dict[str, Any],
    init: Iterable[dict[str, Any]] = (),
    ephemeral: Iterable[dict[str, Any]] = (),
    context: dict[str, Any] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "securityContext": copy.deepcopy(GOOD_POD_CONTEXT) if context is None else context,
        "containers": list(containers or [container()]),
        **fields,
    }
    if init:
        spec["initContainers"] = list(init)
    if ephemeral:
        spec["ephemeralContainers"] = list(ephemeral)
    return spec


def k8s(kind: str, name: str, api: str, body: dict[str, Any], namespace: str | None = "mlops-serving") -> Resource:
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    return Resource(
        f"kubernetes:{api}:{kind}",
        name,
        {"apiVersion": api.replace("core/", ""), "kind": kind, "metadata": metadata, **body},
    )


# Every kind that renders pods, and where its pod template is (the policies must find each).
WORKLOAD_KINDS = (
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "ReplicationController",
    "Job",
    "CronJob",
    "Pod",
    "PodTemplate",
)
# One kind per distinct pod template path: spec.template, spec.jobTemplate.spec.template, the object, template.
KINDS_BY_TEMPLATE_PATH = ("Deployment", "CronJob", "Pod", "PodTemplate")


def workload(
    kind: str, spec: dict[str, Any], name: str = "serving", annotations: dict[str, str] | None = None
) -> Resource:
    meta: dict[str, Any] = {"labels": {"app": name}}
    if annotations:
        meta["annotations"] = annotations
    template = {"metadata": meta, "spec": spec}
    selector = {"selector": {"matchLabels": {"app": name}}}
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"):
        return k8s(kind, name, "apps/v1", {"spec": {**selector, "template": template}})
    if kind == "ReplicationController":
        return k8s(kind, name, "core/v1", {"spec": {"selector": {"app": name}, "template": template}})
    if kind == "Job":
        return k8s(kind, name, "batch/v1", {"spec": {"template": template}})
    if kind == "CronJob":
        return k8s(
            kind, name, "batch/v1", {"spec": {"schedule": "0 * * * *", "jobTemplate": {"spec": {"template": template}}}}
        )
    if kind == "PodTemplate":
        return k8s(kind, name, "core/v1", {"template": template})
    if kind == "Pod":
        pod = k8s(kind, name, "core/v1", {"spec": spec})
        pod.props["metadata"].update(meta)
        return pod
    raise ValueError(kind)


def deployment(*containers: dict[str, Any], annotations: dict[str, str] | None = None, **kw: Any) -> Resource:
    return workload("Deployment", pod_spec(*containers, **kw), annotations=annotations)


def service(
    service_type: str | None = "ClusterIP",
    ports: Iterable[int] = (8000,),
    app: str = "serving",
    namespace: str = "mlops-serving",
    **spec: Any,
) -> Resource:
    body: dict[str, Any] = {
        "selector": {"app.kubernetes.io/name": app},
        "ports": [{"name": f"p{p}", "port": p, "targetPort": p} for p in ports],
        **spec,
    }
    if service_type:
        body["type"] = service_type
    return k8s("Service", app, "core/v1", {"spec": body}, namespace)


def namespace(name: str, enforce: str | None = "restricted") -> Resource:
    labels = {"kubernetes.io/metadata.name": name}
    if enforce is not None:
        labels["pod-security.kubernetes.io/enforce"] = enforce
    return Resource("kubernetes:core/v1:Namespace", f"ns-{name}", {"metadata": {"name": name, "labels": labels}})


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


def persistent_volume(policy: str | None, source: dict[str, Any] | None = None) -> Resource:
    spec: dict[str, Any] = {
        "capacity": {"storage": "50Gi"},
        "accessModes": ["ReadWriteMany"],
        **(source or {"nfs": {"server": "nfs.example.com", "path": "/exports"}}),
    }
    if policy is not None:
        spec["persistentVolumeReclaimPolicy"] = policy
    return k8s("PersistentVolume", "serving-logs", "core/v1", {"spec": spec})


def config_map(data: dict[str, str]) -> Resource:
    return k8s("ConfigMap", "serving-config", "core/v1", {"data": data})


def helm_release(
    version: str | None = "41.3.0",
    chart: str = "traefik",
    kind: str = "kubernetes:helm.sh/v3:Release",
    values: dict[str, Any] | None = None,
    namespace: str | None = "mlops-ingress",
) -> Resource:
    props: dict[str, Any] = {"chart": chart, "repositoryOpts": {"repo": "https://traefik.github.io/charts"}}
    if namespace is not None:
        props["namespace"] = namespace
    if version is not None:
        props["version"] = version
    if values is not None:
        props["values"] = values
    return Resource(kind, chart, props)


def kms_key(**props: Any) -> Resource:
    return Resource("aws:kms/key:Key", "artifacts", {"description": "artifacts", "deletionWindowInDays": 30, **props})


READ_PODS = {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]}
EVERYTHING = {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}


def rbac_role(*rules: dict[str, Any], kind: str = "Role", name: str = "log-reader") -> Resource:
    namespace = "mlops-serving" if kind == "Role" else None
    return k8s(kind, name, "rbac.authorization.k8s.io/v1", {"rules": list(rules)}, namespace)


def service_account(name: str = "serving", namespace: str = "mlops-serving") -> dict[str, str]:
    return {"kind": "ServiceAccount", "name": name, "namespace": namespace}


def group(name: str) -> dict[str, str]:
    return {"kind": "Group", "name": name, "apiGroup": "rbac.authorization.k8s.io"}


def rbac_binding(
    role_kind: str, role_name: str, *subjects: dict[str, str], kind: str = "RoleBinding", name: str = "serving"
) -> Resource:
    body = {
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role_name},
        "subjects": list(subjects or [service_account()]),
    }
    namespace = "mlops-serving" if kind == "RoleBinding" else None
    return k8s(kind, name, "rbac.authorization.k8s.io/v1", body, namespace)


# --- the table -----------------------------------------------------------------------------------
Target = Resource | list[Resource]


@dataclass
class Case:
    target: Target
    expect: str | None = None  # a violating case: text the reported message must contain
    env: dict[str, str] = field(default_factory=dict)
    label: str = ""
    tags: frozenset[str] = frozenset()  # what the case exercises: "list:initContainers", "kind:CronJob"...


def ok(target: Target, label: str = "", env: dict[str, str] | None = None, tags: Iterable[str] = ()) -> Case:
    return Case(target, None, env or {}, label, frozenset(tags))


def bad(
    target: Target, expect: str, label: str = "", env: dict[str, str] | None = None, tags: Iterable[str] = ()
) -> Case:
    return Case(target, expect, env or {}, label, frozenset(tags))


def _k8s_cases() -> dict[str, list[Case]]:
    return {
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
            ok(deployment(ephemeral=[ephemeral_container(image="busybox:1.37.0")]), "ephemeral container pinned"),
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
            bad(config_map({"AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE"}), "an AWS access key ID", "AWS key ID value"),
            bad(config_map({"AUTH_HEADER_VALUE": f"Bearer {JWT}"}), "a JSON Web Token", "JWT value"),
            bad(config_map({"GIT_REMOTE_AUTH": "ghp_" + "a1B2" * 9}), "a GitHub token", "GitHub token value"),
            bad(
                config_map({"airflow.cfg": "[database]\nsql_alchemy_pool_size = 5\nfernet_key = 3v8iR2m1Kq9x\n"}),
                "sets fernet_key (named like a credential) in its text",
                "credential line in a config file",
            ),
            ok(
                config_map(
                    {
                        "ensure_user.py": "token = base64.b64encode(f'{user}:{pw}'.encode()).decode()\n",
                        "app.ini": "password_file = /run/secrets/db\napi_key = ${API_KEY}\n",
                    }
                ),
                "computed values and references in files",
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
        "iam-no-wildcard-actions": [
            ok(iam("aws:iam/policy:Policy", "artifacts-rw", policy=document(READ_ARTIFACTS))),
            ok(
                iam("aws:iam/rolePolicy:RolePolicy", "bucket-admin", policy=document(allow("s3:*", ARTIFACTS_ARNS))),
                "every s3 action on one bucket",
            ),
            ok(iam("aws:iam/policy:Policy", "deny-all", policy=document({**ADMIN, "Effect": "Deny"})), "Deny *"),
            bad(
                iam("aws:iam/policy:Policy", "admin", policy=document(ADMIN)), "every action of every service", "admin"
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
                iam("aws:iam/rolePolicy:RolePolicy", "s3-all", policy=document(allow("s3:*", "*"))),
                "allows every s3 action (s3:*) on every resource",
                "service wildcard on *",
            ),
            bad(
                iam("aws:iam/policy:Policy", "s3-all-buckets", policy=document(allow("S3:*", "arn:aws:s3:::*"))),
                "every S3 action",
                "service wildcard on every bucket ARN, action in capitals",
            ),
            bad(
                iam("aws:iam/groupPolicy:GroupPolicy", "iam-all", policy=document(allow("iam:*", "arn:aws:iam::*:*"))),
                "every iam action",
                "iam:* on every IAM ARN",
            ),
            bad(
                iam(
                    "aws:iam/policy:Policy",
                    "poweruser",
                    policy=document({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}),
                ),
                "allows every action except iam:* (NotAction)",
                "NotAction",
            ),
            bad(
                iam(
                    "aws:s3/bucketPolicy:BucketPolicy",
                    "open",
                    bucket="b",
                    policy=json.loads(document({**ADMIN, "Principal": "*"})),
                ),
                "every action of every service",
                "object document",
            ),
            bad(
                iam("aws:iam/policy:Policy", "garbled", policy="{not json"),
                "is not a JSON policy document",
                "unparseable",
            ),
        ],
        "iam-no-privilege-escalation": [
            ok(iam("aws:iam/userPolicy:UserPolicy", "read", policy=document(READ_ARTIFACTS))),
            ok(
                iam(
                    "aws:iam/rolePolicy:RolePolicy",
                    "pass",
                    policy=document(allow("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/mlops-training")),
                ),
                "PassRole of one role",
            ),
            ok(
                iam(
                    "aws:iam/policy:Policy",
                    "self-keys",
                    policy=document(
                        allow(["iam:CreateAccessKey", "iam:UpdateLoginProfile"], "arn:aws:iam::*:user/${aws:username}")
                    ),
                ),
                "self-service keys",
            ),
            ok(
                iam(
                    "aws:iam/policy:Policy",
                    "deny",
                    policy=document({"Effect": "Deny", "Action": "iam:*", "Resource": "*"}),
                ),
                "Deny",
            ),
            bad(
                iam(
                    "aws:iam/userPolicy:UserPolicy",
                    "grant",
                    policy=document(allow("iam:PutUserPolicy", f"arn:aws:iam::{ACCOUNT}:user/mlops-prod-mlflow")),
                ),
                "allows iam:PutUserPolicy",
                "put a policy on itself",
            ),
            bad(
                iam("aws:iam/policy:Policy", "attach", policy=document(allow("iam:Attach*", "*"))),
                "iam:AttachUserPolicy, iam:AttachGroupPolicy, iam:AttachRolePolicy",
                "action wildcard",
            ),
            bad(
                iam(
                    "aws:iam/role:Role",
                    "ci",
                    inlinePolicies=[{"name": "pass", "policy": document(allow("iam:PassRole", "*"))}],
                ),
                "allows iam:PassRole",
                "PassRole on any role",
            ),
            bad(
                iam(
                    "aws:iam/policy:Policy",
                    "versions",
                    policy=document(allow(["s3:GetObject", "iam:CreatePolicyVersion"], "*")),
                ),
                "iam:CreatePolicyVersion",
                "new policy version",
            ),
            bad(
                iam(
                    "aws:iam/policy:Policy", "assume", policy=document(allow("sts:AssumeRole", "arn:aws:iam::*:role/*"))
                ),
                "sts:AssumeRole",
                "assume any role",
            ),
            bad(
                iam(
                    "aws:iam/policy:Policy",
                    "keys",
                    policy=document(allow("iam:CreateAccessKey", "arn:aws:iam::*:user/*")),
                ),
                "iam:CreateAccessKey",
                "access keys for any user",
            ),
        ],
        "iam-no-public-trust": [
            ok(role(trust(principal={"Service": "ec2.amazonaws.com"})), "service principal"),
            ok(role(trust(principal={"AWS": f"arn:aws:iam::{ACCOUNT}:root"})), "own account"),
            ok(
                role(github_trust({"StringEquals": {GITHUB_SUB: "repo:acme/mlops-platform:environment:production"}})),
                "GitHub, one environment",
            ),
            ok(
                role(trust(principal="*", Condition={"StringEquals": {"aws:PrincipalOrgID": "o-a1b2c3"}})), "org-pinned"
            ),
            bad(role(trust(principal={"AWS": "*"})), "lets any AWS principal assume the role", "AWS *"),
            bad(role(github_trust(None)), "without pinning token.actions.githubusercontent.com:sub", "GitHub, no sub"),
            bad(role(github_trust({"StringLike": {GITHUB_SUB: "repo:*"}})), "any repository", "GitHub, any repo"),
        ],
        "s3-no-public-acl": [
            ok(iam("aws:s3/bucketAcl:BucketAcl", "acl", bucket="b", acl="private")),
            ok(iam("aws:s3/bucketAcl:BucketAcl", "logs", bucket="b", acl="log-delivery-write"), "log delivery"),
            bad(
                iam("aws:s3/bucketAcl:BucketAcl", "acl", bucket="b", acl="public-read"),
                "canned ACL 'public-read'",
                "BucketAcl",
            ),
            bad(
                iam(
                    "aws:s3/bucketAcl:BucketAcl",
                    "grants",
                    bucket="b",
                    accessControlPolicy={
                        "grants": [{"grantee": {"type": "Group", "uri": ALL_USERS}, "permission": "READ"}],
                        "owner": {"id": "o"},
                    },
                ),
                "grants AllUsers (READ)",
                "grant to AllUsers",
            ),
            bad(bucket("legacy", acl="public-read-write"), "'public-read-write'", "inline bucket ACL"),
            bad(
                bucket("legacy", grants=[{"type": "Group", "uri": AUTHENTICATED_USERS, "permissions": ["READ"]}]),
                "grants AuthenticatedUsers",
                "inline grant",
            ),
            bad(
                iam("aws:s3/bucketObjectv2:BucketObjectv2", "model", bucket="b", key="m.pkl", acl="authenticated-read"),
                "anyone with an AWS account",
                "object ACL",
            ),
        ],
        "s3-no-public-policy": [
            ok(bucket_policy(bucket()), "TLS-only deny"),
            ok(
                bucket_policy(
                    bucket(), document(public_read(Condition={"StringEquals": {"aws:SourceVpce": "vpce-0a1b2c3d"}}))
                ),
                "pinned to a VPC endpoint",
            ),
            ok(
                bucket_policy(
                    bucket(), document(public_read(Condition={"IpAddress": {"aws:SourceIp": ["203.0.113.0/24"]}}))
                ),
                "pinned to a CIDR",
            ),
            ok(
                bucket_policy(
                    bucket(), document({**public_read(), "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}})
                ),
                "one account",
            ),
            bad(bucket_policy(bucket(), document(public_read())), "statement 0 allows anyone", "Principal *"),
            bad(
                bucket_policy(bucket(), document({**public_read(), "Principal": {"AWS": ["*"]}})),
                "allows anyone",
                "AWS *",
            ),
            bad(
                bucket_policy(bucket(), tls_only_document(bucket(), extra=[public_read()])),
                "statement 0 allows anyone",
                "next to the TLS deny",
            ),
            bad(
                bucket_policy(
                    bucket(), document(public_read(Condition={"StringNotEquals": {"aws:SourceVpce": "vpce-1"}}))
                ),
                "allows anyone",
                "negated condition",
            ),
            bad(
                bucket_policy(bucket(), document(public_read(Condition={"IpAddress": {"aws:SourceIp": "0.0.0.0/0"}}))),
                "allows anyone",
                "world CIDR",
            ),
            bad(
                bucket_policy(
                    bucket(), document(public_read(Condition={"StringEqualsIfExists": {"aws:SourceVpc": "vpc-1"}}))
                ),
                "allows anyone",
                "IfExists",
            ),
            bad(
                bucket_policy(bucket(), document(public_read(Condition={"ArnLike": {"aws:SourceArn": "arn:aws:*"}}))),
                "allows anyone",
                "wildcard ARN",
            ),
            bad(
                bucket_policy(
                    bucket(),
                    document(not_principal(public_read())),
                ),
                "allows anyone",
                "NotPrincipal",
            ),
            bad(bucket("inline", policy=document(public_read())), "allows anyone", "inline bucket policy"),
        ],
        "ec2-no-world-open-ingress": [
            ok(security_group(ingress_rule(443)), "HTTPS from the world"),
            ok(security_group(ingress_rule(5432, cidrs=["10.40.0.0/16"])), "Postgres from the VPC"),
            ok(
                Resource(
                    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
                    "http",
                    {
                        "securityGroupId": "sg-1",
                        "ipProtocol": "tcp",
                        "fromPort": 80,
                        "toPort": 80,
                        "cidrIpv4": "0.0.0.0/0",
                    },
                ),
                "HTTP rule",
            ),
            bad(security_group(ingress_rule(22)), "ingress[0] opens tcp ports 22-22 to 0.0.0.0/0", "SSH"),
            bad(security_group(ingress_rule(0, 65535, cidrs=[], ipv6=["::/0"])), "to ::/0", "IPv6 world"),
            bad(
                security_group({"protocol": "-1", "fromPort": 0, "toPort": 0, "cidrBlocks": ["0.0.0.0/0"]}),
                "all ports",
                "all traffic",
            ),
            bad(security_group(ingress_rule(80, 443)), "ports 80-443", "range around the web ports"),
            bad(
                Resource(
                    "aws:ec2/securityGroupRule:SecurityGroupRule",
                    "rdp",
                    {
                        "type": "ingress",
                        "protocol": "tcp",
                        "fromPort": 3389,
                        "toPort": 3389,
                        "cidrBlocks": ["0.0.0.0/0"],
                        "securityGroupId": "sg-1",
                    },
                ),
                "3389",
                "RDP rule",
            ),
            bad(
                Resource(
                    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
                    "pg",
                    {
                        "securityGroupId": "sg-1",
                        "ipProtocol": "tcp",
                        "fromPort": 5432,
                        "toPort": 5432,
                        "cidrIpv4": "0.0.0.0/0",
                    },
                ),
                "5432",
                "Postgres rule",
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
        "rds-credentials-secret": [
            ok(db(username="mlops_admin", password=secret("s3cr3t-from-config"))),
            ok(db(username="mlops_admin", manageMasterUserPassword=True), "managed by RDS"),
            ok(db(kind="aws:rds/cluster:Cluster", masterUsername="mlops_admin", masterPassword=secret("x")), "cluster"),
            bad(db(username="mlops_admin", password="hunter2-in-code"), "password is not a Pulumi secret", "instance"),
            bad(
                db(kind="aws:rds/cluster:Cluster", masterPassword="hunter2"),
                "masterPassword is not a Pulumi secret",
                "cluster",
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


JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJtbG9wcy1zZXJ2aW5nIn0.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"
SLACK_HOOK = "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"
PEM = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
TRAEFIK = {"service": {"type": "LoadBalancer"}, "ports": {"websecure": {"http": {"tls": {"enabled": True}}}}}


def _exposure_cases() -> dict[str, list[Case]]:
    ns = namespace("mlops-ingress")
    return {
        "k8s-external-exposure": [
            ok(service(), "ClusterIP"),
            ok(service("LoadBalancer", (80, 443), app="traefik", namespace="mlops-ingress"), "ingress controller web"),
            ok(service("NodePort", (443,), app="ingress-nginx"), "ingress-nginx NodePort"),
            ok(helm_release(values=TRAEFIK), "traefik chart, web entry points only"),
            ok(
                helm_release(
                    values={
                        **TRAEFIK,
                        "service": {"type": "ClusterIP"},
                        "ports": {"metrics": {"expose": {"default": True}}},
                    }
                ),
                "traefik behind ClusterIP",
            ),
            bad(service("LoadBalancer", (8000,)), "does not select the ingress controller", "app LoadBalancer"),
            bad(
                service("NodePort", (80,), app="mlflow"), "exposed outside the cluster (type NodePort)", "app NodePort"
            ),
            bad(
                service("LoadBalancer", (443, 8080), app="traefik"),
                "exposes port(s) p8080 (8080)",
                "ingress controller dashboard port",
            ),
            bad(service(externalIPs=["203.0.113.10"]), "(externalIPs)", "externalIPs on a ClusterIP service"),
            bad(
                helm_release(values={**TRAEFIK, "ports": {"traefik": {"expose": {"default": True}}}}),
                "exposes its 'traefik' entry point",
                "traefik dashboard entry point",
            ),
            ok(helm_release(chart="airflow", values={"apiServer": {"service": {"type": "ClusterIP"}}}), "ClusterIP"),
            bad(
                helm_release(chart="mlflow", values={"service": {"type": "LoadBalancer", "port": 5000}}),
                "values.service.type is LoadBalancer",
                "chart service made a LoadBalancer",
            ),
            bad(
                helm_release(chart="airflow", values={"apiServer": {"service": {"type": "NodePort"}}}),
                "values.apiServer.service.type is NodePort",
                "nested chart service made a NodePort",
            ),
            bad(
                helm_release(values={"ports": {"metrics": {"expose": True}}}),
                "exposes its 'metrics' entry point on the LoadBalancer Service",
                "traefik metrics, default service type",
            ),
        ],
        "k8s-declared-baseline-pods": [
            ok([namespace("mlops-storage", "baseline"), baseline_job()], "root chown Job in a baseline namespace"),
            ok([ns, deployment()], "no pod declares baseline"),
            bad(
                [namespace("mlops-storage", "restricted"), baseline_job()],
                "must be created by this stack with pod-security.kubernetes.io/enforce: baseline (it is 'restricted')",
                "declared baseline in a restricted namespace",
            ),
            bad([baseline_job()], "'not created by this stack'", "declared baseline in a foreign namespace"),
        ],
        "k8s-namespace-pod-security": [
            ok([ns, helm_release()], "release into a restricted namespace of the stack"),
            ok([namespace("mlops-airflow", "baseline"), helm_release(chart="airflow", namespace="mlops-airflow")]),
            bad([namespace("mlops-ingress", None), helm_release()], "label pod-security.kubernetes.io/enforce is None"),
            bad([namespace("mlops-ingress", "privileged")], "is 'privileged'", "privileged namespace"),
            bad(
                [ns, helm_release(namespace="kube-system")], "namespace 'kube-system', which this stack does not create"
            ),
            bad([ns, helm_release(namespace=None)], "the provider's default namespace", "release without namespace"),
        ],
    }


def baseline_job() -> Resource:
    """The NFS preparation Job's shape: root with the baseline capabilities chown needs, declaring baseline."""
    root = container(
        name="prepare",
        securityContext={
            "runAsUser": 0,
            "runAsNonRoot": False,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"], "add": ["CHOWN", "DAC_OVERRIDE", "FOWNER"]},
        },
    )
    job = workload("Job", pod_spec(root, restartPolicy="Never"), name="prepare")
    job.props["spec"]["template"]["metadata"]["labels"]["mlops-platform/pod-security"] = "baseline"
    job.props["metadata"]["namespace"] = "mlops-storage"
    return job


def _secret_cases() -> dict[str, list[Case]]:
    env_ref = {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}
    issuer = {
        "acme": {
            "server": "https://acme-v02.api.letsencrypt.org/directory",
            "privateKeySecretRef": {"name": "acme-account"},
            "externalAccountBinding": {"keyID": "kid-1", "keySecretRef": {"name": "eab", "key": "secret"}},
        }
    }
    secret_values = {
        "auth": {"adminPassword": secret("hunter2hunter2"), "existingSecret": "mlflow-admin"},
        "backendStore": {"existingDatabaseSecret": {"name": "mlflow-db", "passwordKey": "password"}},
        "secret": [{"envName": "AIRFLOW_CONN_S3", "secretName": "airflow-s3", "secretKey": "AIRFLOW_CONN_S3"}],
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
        "podAnnotations": {"mlops-platform/s3-key": "0f99eac3fb0ccbb0"},
    }
    k8s_secret = k8s("Secret", "db", "core/v1", {"stringData": {"password": secret("hunter2hunter2")}})
    plain_secret = k8s("Secret", "db", "core/v1", {"stringData": {"DATABASE_URL": "postgresql://u:hunter2@db/x"}})
    ssm = "aws:ssm/parameter:Parameter"
    return {
        "k8s-objects-no-credentials": [
            ok(deployment(container(env=[env_ref])), "secretKeyRef"),
            ok(k8s("ClusterIssuer", "acme", "cert-manager.io/v1", {"spec": issuer}, None), "issuer refers to Secrets"),
            bad(
                deployment(container(args=["--backend-store-uri=postgresql://mlflow:hunter2@db:5432/mlflow"])),
                "a URL with an embedded password",
                "password in a container argument",
            ),
            bad(
                deployment(container(env=[{"name": "MLOPS_ALERTS", "value": SLACK_HOOK}])),
                "a webhook URL",
                "webhook under an innocuous name",
            ),
            bad(
                deployment(annotations={"example.com/api-token": "tok-8f2d1c"}),
                "is named like a credential ('example.com/api-token')",
                "token in a pod annotation",
            ),
            bad(
                deployment(container(env=[{"name": "DB_PASSWORD", "value": secret("hunter2")}])),
                "marking it secret in Pulumi does not change that",
                "secret-marked env value",
            ),
            bad(
                k8s(
                    "ClusterIssuer",
                    "acme",
                    "cert-manager.io/v1",
                    {"spec": {"acme": {"email": "ops@example.com", "note": PEM}}},
                    None,
                ),
                "a PEM private key",
                "private key in a custom resource",
            ),
        ],
        "credentials-marked-secret": [
            ok(helm_release(chart="mlflow", values=secret_values), "secret values and Secret references"),
            ok(k8s_secret, "Kubernetes Secret data from a Pulumi secret"),
            ok(
                Resource(
                    ssm, "db-password", {"name": "/mlops/db/password", "type": "SecureString", "value": secret("x")}
                )
            ),
            ok(
                Resource(
                    "pulumi:providers:kubernetes",
                    "k8s",
                    {"kubeconfig": secret(f"users:\n- user:\n    client-key-data: {PEM}")},
                )
            ),
            bad(
                helm_release(chart="mlflow", values={"auth": {"adminPassword": "hunter2"}}),
                "values.auth.adminPassword is named like a credential",
                "Helm value",
            ),
            bad(
                plain_secret,
                "stringData.DATABASE_URL is not a Pulumi secret",
                "Kubernetes Secret data",
            ),
            bad(
                k8s("Secret", "htpasswd", "core/v1", {"stringData": {"auth": "admin:$apr1$H6uskkkW$IgXLP6ewTrSu/"}}),
                "stringData.auth is not a Pulumi secret",
                "Kubernetes Secret data of any name",
            ),
            bad(
                Resource(
                    ssm, "db-password", {"name": "/mlops/db/password", "type": "SecureString", "value": "hunter2"}
                ),
                "value is named like a credential ('/mlops/db/password')",
                "SSM parameter value",
            ),
            bad(
                helm_release(chart="airflow", values={"config": {"webserver": {"notify": SLACK_HOOK}}}),
                "contains a webhook URL",
                "webhook in Helm values",
            ),
            bad(
                Resource(
                    "pulumi:providers:kubernetes", "k8s", {"kubeconfig": f"users:\n- user:\n    client-key-data: {PEM}"}
                ),
                "kubeconfig contains a PEM private key",
                "provider kubeconfig",
            ),
            bad(
                Resource(
                    "aws:secretsmanager/secretVersion:SecretVersion", "v", {"secretId": "arn:x", "secretString": "pw"}
                ),
                "secretString is named like a credential",
                "Secrets Manager value",
            ),
        ],
    }


def _merge(*tables: dict[str, list[Case]]) -> dict[str, list[Case]]:
    merged: dict[str, list[Case]] = {}
    for table in tables:
        for name, cases in table.items():
            merged.setdefault(name, []).extend(cases)
    return merged


def _delivery_cases() -> dict[str, list[Case]]:
    prod = {"PULUMI_STACK": "prod"}
    digest = "sha256:" + "ab" * 32
    pinned = deployment(container(image=f"ghcr.io/acme/mlops-platform/serving@{digest}"))
    tagged = deployment(container(image="ghcr.io/acme/mlops-platform/serving:0.1.0"))
    own_registry = deployment(container(image="registry.example.com/ml/serving:0.1.0"))
    airflow = {"repository": "ghcr.io/acme/mlops-platform/airflow", "tag": "3.3.2"}
    return {
        "platform-images-pinned-by-digest-in-prod": [
            ok(pinned, "prod, serving by digest", env=prod),
            ok(tagged, "dev may run tags", env={"PULUMI_STACK": "dev"}),
            ok(deployment(container(image="postgres:16.10-bookworm")), "third-party image", env=prod),
            ok(helm_release(chart="airflow", values={"images": {"airflow": {**airflow, "digest": digest}}}), env=prod),
            bad(tagged, "uses ghcr.io/acme/mlops-platform/serving:0.1.0 without a digest", "prod by tag", env=prod),
            bad(
                own_registry,
                "without a digest",
                "the stack's own images.registry",
                env={**prod, "PULUMI_CONFIG": '{"mlops-platform:images.registry": "registry.example.com/ml"}'},
            ),
            bad(
                helm_release(chart="airflow", values={"images": {"airflow": airflow}}),
                "without values.images.airflow.digest",
                "Airflow chart by tag",
                env=prod,
            ),
        ]
    }


def _rbac_cases() -> dict[str, list[Case]]:
    pods_anywhere = {**READ_PODS, "resources": ["*"]}
    admin_role = rbac_role(EVERYTHING, kind="ClusterRole", name="operator")
    return {
        "k8s-rbac-no-wildcard-roles": [
            ok(rbac_role(READ_PODS), "namespaced reader"),
            ok(rbac_role({**READ_PODS, "apiGroups": ["*"]}, kind="ClusterRole"), "any API group, listed resources"),
            bad(rbac_role(READ_PODS, {**READ_PODS, "verbs": ["*"]}), "rules[1] grants '*' verbs", "all verbs"),
            bad(rbac_role(pods_anywhere, kind="ClusterRole"), "grants '*' resources", "all resources"),
            bad(admin_role, "grants '*' verbs and resources", "everything"),
        ],
        "k8s-rbac-no-admin-bindings": [
            ok([rbac_role(READ_PODS), rbac_binding("Role", "log-reader")], "a listed role"),
            ok(rbac_binding("ClusterRole", "cluster-admin", group("platform-admins")), "people, not a workload"),
            ok([rbac_role(EVERYTHING), rbac_binding("ClusterRole", "log-reader")], "a Role is not the ClusterRole"),
            bad(
                rbac_binding("ClusterRole", "cluster-admin", kind="ClusterRoleBinding"),
                "gives ServiceAccount(s) mlops-serving/serving ClusterRole 'cluster-admin'",
                "cluster-admin",
            ),
            bad(
                [admin_role, rbac_binding("ClusterRole", "operator", service_account("airflow", "mlops-airflow"))],
                "ServiceAccount(s) mlops-airflow/airflow ClusterRole 'operator'",
                "a role of the stack granting everything",
            ),
            bad([rbac_role(EVERYTHING), rbac_binding("Role", "log-reader")], "Role 'log-reader'", "namespaced"),
        ],
        "k8s-rbac-no-anonymous-bindings": [
            ok(rbac_binding("Role", "log-reader", group("platform-readers")), "a named group"),
            *(
                bad(
                    rbac_binding("ClusterRole", "view", subject, kind="ClusterRoleBinding"),
                    f"binds {subject['kind']} '{subject['name']}'",
                    subject["name"],
                )
                for subject in (
                    group("system:anonymous"),
                    group("system:unauthenticated"),
                    group("system:authenticated"),
                    {"kind": "User", "name": "system:anonymous", "apiGroup": "rbac.authorization.k8s.io"},
                )
            ),
        ],
    }


def _least_privilege_cases() -> dict[str, list[Case]]:
    host_path = {"hostPath": {"path": "/var/lib/mlops", "type": "DirectoryOrCreate"}}
    return {
        **_rbac_cases(),
        "k8s-persistent-volume-no-host-path": [
            ok(persistent_volume("Retain"), "NFS"),
            ok(persistent_volume("Retain", {"csi": {"driver": "efs.csi.aws.com", "volumeHandle": "fs-1::fsap-1"}})),
            bad(persistent_volume("Retain", host_path), "is a hostPath volume", "hostPath"),
        ],
        "kms-key-rotation": [
            ok(kms_key(enableKeyRotation=True), "rotating"),
            ok(kms_key(keySpec="RSA_2048", keyUsage="SIGN_VERIFY"), "asymmetric keys cannot rotate"),
            bad(kms_key(), "does not rotate", "unset"),
            bad(kms_key(enableKeyRotation=False, keySpec="SYMMETRIC_DEFAULT"), "enable_key_rotation=True", "false"),
        ],
    }


def _third_party_image_cases() -> dict[str, list[Case]]:
    prod = {"PULUMI_STACK": "prod"}
    digest = "sha256:" + "cd" * 32
    mlflow = {"image": {"repository": "burakince/mlflow", "tag": "3.15.1"}}
    prometheus = {"prometheusOperator": {"image": {"registry": "quay.io", "repository": "prometheus-operator/po"}}}
    return {
        "third-party-images-pinned-by-digest-in-prod": [
            ok(deployment(container(image=f"postgres:16.10-bookworm@{digest}")), "tag and digest", env=prod),
            ok(deployment(container(image="postgres:16.10-bookworm")), "dev may run tags", env={"PULUMI_STACK": "dev"}),
            ok(deployment(container(image="ghcr.io/acme/mlops-platform/serving:0.1.0")), "platform image", env=prod),
            ok(helm_release(chart="traefik", values={"ports": {}}), "chart default image: not visible", env=prod),
            ok(helm_release(chart="mlflow", values={"image": {**mlflow["image"], "digest": digest}}), env=prod),
            ok(
                helm_release(chart="mlflow", values={"image": {**mlflow["image"], "tag": f"3.15.1@{digest}"}}), env=prod
            ),
            ok(
                helm_release(
                    chart="kube-prometheus-stack", values={"x": {"image": {"repository": "a", "sha": "cd" * 32}}}
                ),
                "kube-prometheus-stack sha",
                env=prod,
            ),
            ok(
                helm_release(
                    chart="traefik",
                    values={
                        "image": {"registry": "docker.io", "repository": "traefik", "tag": "v3.7.11", "digest": digest}
                    },
                ),
                "registry, repository, tag and digest",
                env=prod,
            ),
            ok(
                helm_release(
                    chart="airflow",
                    values={
                        "images": {
                            "statsd": {"repository": "quay.io/prometheus/statsd-exporter", "tag": f"v0.29.0@{digest}"}
                        }
                    },
                ),
                "a chart without a digest key: the digest in the tag",
                env=prod,
            ),
            bad(
                deployment(container(image="postgres:16.10-bookworm")), "uses postgres:16.10-bookworm without", env=prod
            ),
            bad(
                helm_release(
                    chart="mlflow", values={"initImages": {"dbchecker": {"repository": "busybox", "tag": "1.38.0"}}}
                ),
                "values.initImages.dbchecker is busybox:1.38.0 without a digest",
                "an init image by tag",
                env=prod,
            ),
            bad(
                helm_release(
                    chart="cert-manager",
                    values={
                        "webhook": {"image": {"repository": "quay.io/jetstack/cert-manager-webhook", "tag": "v1.21.1"}}
                    },
                ),
                "values.webhook.image is quay.io/jetstack/cert-manager-webhook:v1.21.1 without a digest",
                "a nested image by tag",
                env=prod,
            ),
            bad(
                helm_release(chart="traefik", values={"image": {"repository": "traefik", "digest": "sha256:beef"}}),
                "values.image is traefik without a digest",
                "a malformed digest",
                env=prod,
            ),
            bad(
                helm_release(chart="mlflow", values=mlflow),
                "values.image is burakince/mlflow:3.15.1 without a digest",
                "Helm repository and tag",
                env=prod,
            ),
            bad(
                helm_release(chart="kube-prometheus-stack", values=prometheus),
                "values.prometheusOperator.image is quay.io/prometheus-operator/po without",
                "registry and repository",
                env=prod,
            ),
            bad(
                helm_release(chart="loki", values={"sidecar": {"image": "kiwigrid/k8s-sidecar:1.30.0"}}),
                "values.sidecar.image is kiwigrid/k8s-sidecar:1.30.0",
                "image string",
                env=prod,
            ),
        ]
    }


def all_cases() -> dict[str, list[Case]]:
    from tests.policy.pod_cases import pod_security_cases

    return _merge(
        _aws_cases(),
        _k8s_cases(),
        _exposure_cases(),
        _secret_cases(),
        _delivery_cases(),
        _least_privilege_cases(),
        _third_party_image_cases(),
        pod_security_cases(),
    )
