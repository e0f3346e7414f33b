"""The mlops-platform policies (CrossGuard, pulumi-policy): every check `pulumi preview --policy-pack policy` runs.

`policy/__main__.py` only builds the `PolicyPack` from `POLICIES`; the checks live in `policy/aws.py`,
`policy/kubernetes.py`, `policy/rbac.py`, `policy/images.py` and `policy/secrets.py`, the shared helpers in
`policy/common.py`. Each policy is mandatory (but those in ADVISORY, which the stacks do not meet yet) and reports
a message that names the resource, what is wrong and what to change; the engine prepends the policy's
description to that message.

Importing this module makes the SDK keep the engine's secret marks (`policy.common.install_secret_marks`),
which the credential policies read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from policy import aws, images, kubernetes, rbac, secrets
from policy.common import install_secret_marks
from policy.secrets import secret_looking_key, secret_looking_value

__all__ = ["PACK_NAME", "POLICIES", "names", "policy_named", "secret_looking_key", "secret_looking_value"]

PACK_NAME = "mlops-platform-guardrails"
MANDATORY = EnforcementLevel.MANDATORY
# Policies the stacks do not meet yet (docs/policy.md lists the known findings): reported, not blocking. None now:
# the prod stack pins every image it sets by digest (stacks/settings/images.py).
ADVISORY: frozenset[str] = frozenset()

install_secret_marks()


def _strings(default: Iterable[str]) -> dict[str, Any]:
    """The config schema of a list of strings with its default."""
    return {"type": "array", "items": {"type": "string"}, "default": list(default)}


def _level(name: str) -> EnforcementLevel:
    return EnforcementLevel.ADVISORY if name in ADVISORY else MANDATORY


def _resource(
    name: str, description: str, validate: Callable[[ResourceValidationArgs, ReportViolation], None], **kw: Any
) -> ResourceValidationPolicy:
    return ResourceValidationPolicy(
        name=name, description=description, validate=validate, enforcement_level=_level(name), **kw
    )


def _stack(
    name: str, description: str, validate: Callable[[StackValidationArgs, ReportViolation], None]
) -> StackValidationPolicy:
    return StackValidationPolicy(name=name, description=description, validate=validate, enforcement_level=_level(name))


AWS_POLICIES: list[Policy] = [
    _stack(
        "s3-public-access-blocked",
        "S3 buckets block all public access (all four BucketPublicAccessBlock settings on).",
        aws.validate_s3_public_access_block,
    ),
    _resource(
        "s3-no-public-acl",
        "S3 buckets and objects grant nothing to everyone by ACL (no public canned ACL, no AllUsers grant).",
        aws.validate_s3_no_public_acl,
    ),
    _resource(
        "s3-no-public-policy",
        "S3 bucket policies allow nothing to Principal '*' without a condition that pins the caller.",
        aws.validate_s3_no_public_policy,
    ),
    _stack(
        "s3-encryption-configured",
        "S3 buckets have default server-side encryption configured.",
        aws.validate_s3_encryption,
    ),
    _stack("s3-versioning-enabled", "S3 buckets have versioning enabled.", aws.validate_s3_versioning),
    _stack("s3-tls-only", "S3 bucket policies deny every request made without TLS.", aws.validate_s3_tls_only),
    _resource(
        "iam-no-wildcard-actions",
        "IAM and bucket policy documents never allow all actions of a service (or of all services) on all resources.",
        aws.validate_iam_no_wildcard_actions,
    ),
    _resource(
        "iam-no-privilege-escalation",
        "IAM policy documents grant no action that lets a principal raise its own permissions.",
        aws.validate_iam_no_privilege_escalation,
    ),
    _resource(
        "iam-no-public-trust",
        "IAM roles cannot be assumed by anyone: no trust to Principal '*' or to GitHub's OIDC provider without a "
        "repository condition.",
        aws.validate_iam_no_public_trust,
    ),
    _resource(
        "iam-no-aws-managed-full-access",
        "No AWS-managed AdministratorAccess, PowerUserAccess or *FullAccess policy is attached.",
        aws.validate_iam_no_aws_managed_full_access,
    ),
    _stack(
        "iam-access-keys-for-stack-users-only",
        "IAM access keys are only created for IAM users this stack creates.",
        aws.validate_iam_access_keys_for_stack_users,
    ),
    _resource(
        "ec2-no-world-open-ingress",
        "Security groups open nothing but TCP 80 and 443 to the world (0.0.0.0/0, ::/0).",
        aws.validate_no_world_open_ingress,
    ),
    _resource("rds-storage-encrypted", "RDS storage is encrypted.", aws.validate_rds_storage_encrypted),
    _resource("rds-not-publicly-accessible", "RDS databases are not publicly accessible.", aws.validate_rds_not_public),
    _resource(
        "rds-credentials-secret",
        "RDS master passwords are Pulumi secrets (or managed by RDS in Secrets Manager).",
        aws.validate_rds_credentials_secret,
    ),
    _resource(
        "rds-backup-retention",
        f"RDS keeps automated backups for at least {aws.MIN_BACKUP_DAYS} days.",
        aws.validate_rds_backup_retention,
        config_schema=PolicyConfigSchema(
            properties={"minimumDays": {"type": "integer", "minimum": 1, "default": aws.MIN_BACKUP_DAYS}}
        ),
    ),
    _resource(
        "rds-deletion-protection-in-prod",
        "Production RDS databases have deletion protection on.",
        aws.validate_rds_deletion_protection,
        config_schema=PolicyConfigSchema(properties={"productionStacks": _strings(aws.PRODUCTION_WORDS)}),
    ),
    _resource(
        "kms-key-rotation",
        "KMS keys (symmetric encryption keys) rotate their key material (enable_key_rotation).",
        aws.validate_kms_key_rotation,
    ),
]

# The Pod Security Standards: every pod the program renders meets the restricted level (which includes baseline).
POD_SECURITY_POLICIES: list[Policy] = [
    _resource(
        "k8s-host-namespaces",
        "Pods do not share the node's network, PID or IPC namespace (PSS baseline).",
        kubernetes.validate_host_namespaces,
    ),
    _resource("k8s-host-ports", "Containers bind no host port (PSS baseline).", kubernetes.validate_host_ports),
    _resource("k8s-no-host-path", "Pods mount no hostPath volume (PSS baseline).", kubernetes.validate_no_host_path),
    _resource(
        "k8s-not-privileged",
        "Containers are not privileged and pods are not Windows HostProcess pods (PSS baseline).",
        kubernetes.validate_not_privileged,
    ),
    _resource(
        "k8s-capabilities",
        "Containers drop ALL capabilities and add none but NET_BIND_SERVICE (PSS baseline and restricted).",
        kubernetes.validate_capabilities,
    ),
    _resource(
        "k8s-seccomp",
        "Pods run under the RuntimeDefault or a Localhost seccomp profile, never Unconfined (PSS baseline and "
        "restricted).",
        kubernetes.validate_seccomp,
    ),
    _resource(
        "k8s-apparmor",
        "Pods do not override the AppArmor profile but with RuntimeDefault or Localhost (PSS baseline).",
        kubernetes.validate_apparmor,
    ),
    _resource(
        "k8s-selinux",
        "Pods set no custom SELinux user or role and only the container SELinux types (PSS baseline).",
        kubernetes.validate_selinux,
    ),
    _resource(
        "k8s-proc-mount", "Containers keep the default masked /proc (PSS baseline).", kubernetes.validate_proc_mount
    ),
    _resource("k8s-safe-sysctls", "Pods set only safe sysctls (PSS baseline).", kubernetes.validate_sysctls),
    _resource(
        "k8s-volume-types",
        "Pods use only configMap, csi, downwardAPI, emptyDir, ephemeral, persistentVolumeClaim, projected and "
        "secret volumes (PSS restricted).",
        kubernetes.validate_volume_types,
    ),
    _resource(
        "k8s-no-privilege-escalation",
        "Containers set allowPrivilegeEscalation: false (PSS restricted).",
        kubernetes.validate_no_privilege_escalation,
    ),
    _resource(
        "k8s-run-as-non-root",
        "Containers must run as non-root: runAsNonRoot true and no UID 0 (PSS restricted).",
        kubernetes.validate_run_as_non_root,
    ),
]

KUBERNETES_POLICIES: list[Policy] = [
    *POD_SECURITY_POLICIES,
    _stack(
        "k8s-namespace-pod-security",
        "The stack's namespaces enforce Pod Security baseline or restricted, and Helm releases deploy into them.",
        kubernetes.validate_namespace_pod_security,
    ),
    _stack(
        "k8s-declared-baseline-pods",
        "A pod declaring mlops-platform/pod-security: baseline runs only in a namespace enforcing baseline.",
        kubernetes.validate_declared_baseline_pods,
    ),
    _resource(
        "k8s-resource-requests-and-limits",
        "Kubernetes containers declare CPU and memory requests and limits.",
        kubernetes.validate_resources,
    ),
    _resource(
        "k8s-pinned-image-tags",
        "Kubernetes container images use a pinned tag or digest (not `latest`, not untagged).",
        kubernetes.validate_pinned_images,
    ),
    _resource(
        "k8s-external-exposure",
        "Only the ingress controller's web ports (80, 443) are exposed outside the cluster (LoadBalancer, NodePort, "
        "externalIPs).",
        kubernetes.validate_external_exposure,
        config_schema=PolicyConfigSchema(
            properties={"ingressControllers": _strings(kubernetes.DEFAULT_INGRESS_CONTROLLERS)}
        ),
    ),
    _resource("k8s-ingress-tls", "Every Ingress terminates TLS for all its hosts.", kubernetes.validate_ingress_tls),
    _resource(
        "k8s-persistent-volume-retain",
        "PersistentVolumes use the Retain reclaim policy.",
        kubernetes.validate_pv_retain,
    ),
    _resource(
        "k8s-persistent-volume-no-host-path",
        "PersistentVolumes are not hostPath volumes (the node's filesystem).",
        kubernetes.validate_pv_no_host_path,
    ),
    _resource(
        "helm-chart-version-pinned",
        "Helm releases and charts pin an exact chart version.",
        kubernetes.validate_helm_chart_version,
    ),
]

RBAC_POLICIES: list[Policy] = [
    _resource(
        "k8s-rbac-no-wildcard-roles",
        "Roles and ClusterRoles list their verbs and resources: no '*'.",
        rbac.validate_no_wildcard_roles,
    ),
    _stack(
        "k8s-rbac-no-admin-bindings",
        "No RoleBinding or ClusterRoleBinding gives a ServiceAccount cluster-admin or a role granting '*' verbs on "
        "'*' resources.",
        rbac.validate_no_admin_bindings,
    ),
    _resource(
        "k8s-rbac-no-anonymous-bindings",
        "No RoleBinding or ClusterRoleBinding binds system:anonymous, system:unauthenticated or system:authenticated.",
        rbac.validate_no_anonymous_bindings,
    ),
]

SECRET_POLICIES: list[Policy] = [
    _resource(
        "k8s-configmap-no-secrets",
        "ConfigMaps carry no credentials (by key name or by value shape).",
        secrets.validate_configmap_no_secrets,
    ),
    _resource(
        "k8s-objects-no-credentials",
        "Kubernetes objects other than Secrets carry no credentials (env values, arguments, annotations...).",
        secrets.validate_k8s_objects_no_credentials,
    ),
    _resource(
        "credentials-marked-secret",
        "Credentials in Helm values, Kubernetes Secrets and other resource inputs are Pulumi secrets.",
        secrets.validate_credentials_marked_secret,
    ),
]


def _digest_config() -> PolicyConfigSchema:
    """The platform's registries (whose images are its own) and which stacks are production."""
    return PolicyConfigSchema(
        properties={
            "registries": _strings(images.DEFAULT_REGISTRIES),
            "productionStacks": _strings(aws.PRODUCTION_WORDS),
        }
    )


DELIVERY_POLICIES: list[Policy] = [
    _resource(
        "platform-images-pinned-by-digest-in-prod",
        "Production runs the platform's own images pinned by digest (repository@sha256:...).",
        images.validate_platform_images_pinned,
        config_schema=_digest_config(),
    ),
    _resource(
        "third-party-images-pinned-by-digest-in-prod",
        "Production runs third-party images pinned by digest, in pods and in the images Helm values set.",
        images.validate_third_party_images_pinned,
        config_schema=_digest_config(),
    ),
]

POLICIES: list[Policy] = [
    *AWS_POLICIES,
    *KUBERNETES_POLICIES,
    *RBAC_POLICIES,
    *SECRET_POLICIES,
    *DELIVERY_POLICIES,
]


def policy_named(name: str) -> Policy:
    for p in POLICIES:
        if p.name == name:
            return p
    raise KeyError(name)


def names(policies: Iterable[Policy] = POLICIES) -> list[str]:
    return [p.name for p in policies]
