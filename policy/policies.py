"""The mlops-platform policies (CrossGuard, pulumi-policy): every check `pulumi preview --policy-pack policy` runs.

`policy/__main__.py` only builds the `PolicyPack` from `POLICIES`; everything testable lives here.
Each policy is mandatory and reports a message that names the resource, what is wrong and what to
change. The engine prepends the policy's description to that message.

Properties arrive as the SDK hands them over: camelCase, secrets unwrapped, numbers as floats, and
wrapped in the SDK's unknown-checking proxies (`Mapping`/`Sequence`, not `dict`/`list`). Reading a
value that is unknown during preview raises the SDK's `UnknownValueError`, which the SDK reports as
"can't run policy ... during preview" (advisory); `pulumi up` then checks the known value.

Production: `rds-deletion-protection-in-prod` applies when any of these says "prod" (fail closed):
  1. the stack's config `mlops-platform:environment` (the CLI hands stack config to policy packs in
     `PULUMI_CONFIG`),
  2. the stack name (`PULUMI_STACK`): one of the policy's `productionStacks` (default `prod`,
     `production`) or containing `prod`/`production` as a `-`/`_`/`.`-separated word (`eu-prod`),
  3. the resource's tags, or its AWS provider's `defaultTags`: `mlops-platform/environment=prod`
     (the program tags every AWS resource so through the provider).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

PACK_NAME = "mlops-platform-guardrails"
PROJECT = "mlops-platform"
ENVIRONMENT_TAG = "mlops-platform/environment"
MANDATORY = EnforcementLevel.MANDATORY


# --- helpers over the SDK's proxied property bags ------------------------------------------------
def _get(obj: Any, *path: str | int) -> Any:
    """`obj[path[0]][path[1]]...`, or None where a level is missing or of the wrong shape."""
    cur = obj
    for key in path:
        if isinstance(key, int):
            if not _is_list(cur) or key >= len(cur):
                return None
            cur = cur[key]
        else:
            if not isinstance(cur, Mapping):
                return None
            cur = cur.get(key)
        if cur is None:
            return None
    return cur


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def _as_list(value: Any) -> list[Any]:
    """A JSON/IAM "string or list" field as a list (None -> [])."""
    if value is None:
        return []
    if _is_list(value):
        return [value[i] for i in range(len(value))]
    return [value]


def _truthy(value: Any) -> bool:
    """True for True and for the strings Terraform providers sometimes store ("true")."""
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return value is True


def _kind(resource_type: str) -> str:
    return resource_type.rsplit(":", 1)[-1]


def _k8s_name(props: Mapping[str, Any], fallback: str) -> str:
    meta = _get(props, "metadata")
    name = _get(meta, "name") or fallback
    ns = _get(meta, "namespace")
    return f"{ns}/{name}" if ns else str(name)


def _json_document(value: Any) -> Mapping[str, Any] | None:
    """An IAM/S3 policy document given as a JSON string or as an object; None if it is neither."""
    if isinstance(value, Mapping):
        return value
    if isinstance(value, str):
        try:
            doc = json.loads(value)
        except json.JSONDecodeError:
            return None
        return doc if isinstance(doc, Mapping) else None
    return None


def _statements(doc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [s for s in _as_list(doc.get("Statement")) if isinstance(s, Mapping)]


def _is_production(
    props: Mapping[str, Any] | None, provider_props: Mapping[str, Any] | None, config: Mapping[str, Any]
) -> str | None:
    """Why this resource belongs to a production stack, or None (see the module docstring)."""
    raw_config = os.environ.get("PULUMI_CONFIG") or "{}"
    try:
        stack_config = json.loads(raw_config)
    except json.JSONDecodeError:
        stack_config = {}
    env = stack_config.get(f"{PROJECT}:environment") if isinstance(stack_config, Mapping) else None
    if isinstance(env, str) and env.strip().lower() in ("prod", "production"):
        return f"stack config {PROJECT}:environment is {env!r}"
    stack = os.environ.get("PULUMI_STACK", "")
    prod_stacks = [str(s) for s in _as_list(config.get("productionStacks"))] or ["prod", "production"]
    words = set(re.split(r"[-_.]", stack.lower()))
    if stack and (stack in prod_stacks or words & {"prod", "production"}):
        return f"stack {stack!r} is a production stack"
    for source, read in (
        ("tag", lambda: _get(_get(props, "tags"), ENVIRONMENT_TAG)),
        ("tag", lambda: _get(_get(props, "tagsAll"), ENVIRONMENT_TAG)),  # computed: unknown in preview
        ("provider default tag", lambda: _get(_provider_default_tags(provider_props), ENVIRONMENT_TAG)),
    ):
        try:
            value = read()
        except UnknownValueError:
            continue
        if isinstance(value, str) and value.strip().lower() in ("prod", "production"):
            return f"{source} {ENVIRONMENT_TAG}={value}"
    return None


def _provider_default_tags(provider_props: Mapping[str, Any] | None) -> Any:
    # Provider configuration reaches policies as stored by the engine: nested objects may be JSON strings.
    default_tags = _get(provider_props, "defaultTags")
    if isinstance(default_tags, str):
        try:
            default_tags = json.loads(default_tags)
        except json.JSONDecodeError:
            return None
    return _get(default_tags, "tags")


# --- S3 (stack validation: in pulumi-aws v7 the settings are separate resources) ------------------
BUCKET_TYPES = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
PUBLIC_ACCESS_BLOCK = ("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",)
VERSIONING = ("aws:s3/bucketVersioning:BucketVersioning", "aws:s3/bucketVersioningV2:BucketVersioningV2")
ENCRYPTION = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
)
BUCKET_POLICY = ("aws:s3/bucketPolicy:BucketPolicy",)
PUBLIC_ACCESS_FLAGS = (
    ("blockPublicAcls", "block_public_acls"),
    ("blockPublicPolicy", "block_public_policy"),
    ("ignorePublicAcls", "ignore_public_acls"),
    ("restrictPublicBuckets", "restrict_public_buckets"),
)
SSE_ALGORITHMS = ("AES256", "aws:kms", "aws:kms:dsse")


@dataclass
class _Bucket:
    resource: PolicyResource
    names: set[str]

    @property
    def label(self) -> str:
        return f"bucket {self.resource.name!r}" + (f" ({sorted(self.names)[0]})" if self.names else "")


def _known(props: Mapping[str, Any], key: str) -> Any:
    """`props[key]`, or None when it is missing or not known yet (preview)."""
    try:
        return props.get(key)
    except UnknownValueError:
        return None


def _known_strings(r: PolicyResource, *keys: str) -> set[str]:
    return {v for key in keys if isinstance(v := _known(r.props, key), str) and v}


def _bucket_names(r: PolicyResource) -> set[str]:
    return _known_strings(r, "bucket", "id")


def _companions(
    buckets: list[_Bucket], resources: Sequence[PolicyResource], types: tuple[str, ...]
) -> dict[str, list[PolicyResource]]:
    """Companion resources (versioning, encryption, ...) of each bucket, keyed by bucket URN.

    A companion belongs to a bucket when its `bucket` property names it; when that value is not
    known yet (preview of a new bucket), when the `bucket` property depends on exactly that bucket.
    """
    found: dict[str, list[PolicyResource]] = {b.resource.urn: [] for b in buckets}
    by_urn = {b.resource.urn: b for b in buckets}
    for r in resources:
        if r.resource_type not in types:
            continue
        target: _Bucket | None = None
        name = _known(r.props, "bucket")  # a new bucket's name may not be known during preview
        if isinstance(name, str):
            target = next((b for b in buckets if name in b.names), None)
        if target is None:
            deps = list(r.property_dependencies.get("bucket", [])) or list(r.dependencies)
            bucket_deps = [by_urn[d.urn] for d in deps if d.urn in by_urn]
            if len(bucket_deps) == 1:
                target = bucket_deps[0]
        if target is not None:
            found[target.resource.urn].append(r)
    return found


def _buckets(args: StackValidationArgs) -> list[_Bucket]:
    return [_Bucket(r, _bucket_names(r)) for r in args.resources if r.resource_type in BUCKET_TYPES]


def _one_companion(
    bucket: _Bucket, companions: list[PolicyResource], what: str, report: ReportViolation, fix: str
) -> PolicyResource | None:
    if not companions:
        report(f"{bucket.label} has no {what}. {fix}", bucket.resource.urn)
        return None
    if len(companions) > 1:
        names = ", ".join(repr(c.name) for c in companions)
        report(
            f"{bucket.label} has {len(companions)} {what} resources ({names}); S3 keeps one per bucket, so the "
            f"last one applied silently wins. Keep exactly one.",
            bucket.resource.urn,
        )
        return None
    return companions[0]


def validate_s3_public_access_block(args: StackValidationArgs, report: ReportViolation) -> None:
    buckets = _buckets(args)
    companions = _companions(buckets, args.resources, PUBLIC_ACCESS_BLOCK)
    fix = (
        "Add aws.s3.BucketPublicAccessBlock(bucket=<bucket>.id, "
        + ", ".join(f"{py}=True" for _, py in PUBLIC_ACCESS_FLAGS)
        + ")."
    )
    for bucket in buckets:
        pab = _one_companion(bucket, companions[bucket.resource.urn], "aws.s3.BucketPublicAccessBlock", report, fix)
        if pab is None:
            continue
        off = [py for camel, py in PUBLIC_ACCESS_FLAGS if not _truthy(pab.props.get(camel))]
        if off:
            report(
                f"{bucket.label}: BucketPublicAccessBlock {pab.name!r} does not turn on {', '.join(off)}. "
                f"Set {', '.join(f'{py}=True' for py in off)}.",
                pab.urn,
            )


def _sse_algorithms(rules: Any) -> list[str]:
    algorithms = []
    for rule in _as_list(rules):
        algorithm = _get(rule, "applyServerSideEncryptionByDefault", "sseAlgorithm")
        if isinstance(algorithm, str):
            algorithms.append(algorithm)
    return algorithms


def validate_s3_encryption(args: StackValidationArgs, report: ReportViolation) -> None:
    buckets = _buckets(args)
    companions = _companions(buckets, args.resources, ENCRYPTION)
    fix = (
        "Add aws.s3.BucketServerSideEncryptionConfiguration(bucket=<bucket>.id, rules=[{"
        "'apply_server_side_encryption_by_default': {'sse_algorithm': 'aws:kms'}, 'bucket_key_enabled': True}]) "
        "(or 'AES256')."
    )
    for bucket in buckets:
        inline = _sse_algorithms(_get(bucket.resource.props, "serverSideEncryptionConfiguration", "rule"))
        if any(a in SSE_ALGORITHMS for a in inline):
            continue
        sse = _one_companion(
            bucket, companions[bucket.resource.urn], "server-side encryption configuration", report, fix
        )
        if sse is None:
            continue
        algorithms = _sse_algorithms(sse.props.get("rules"))
        if not any(a in SSE_ALGORITHMS for a in algorithms):
            report(
                f"{bucket.label}: {sse.name!r} sets no default encryption (sse_algorithm {algorithms or 'missing'}). "
                "Set rules[].apply_server_side_encryption_by_default.sse_algorithm to one of "
                f"{', '.join(SSE_ALGORITHMS)}.",
                sse.urn,
            )


def validate_s3_versioning(args: StackValidationArgs, report: ReportViolation) -> None:
    buckets = _buckets(args)
    companions = _companions(buckets, args.resources, VERSIONING)
    fix = "Add aws.s3.BucketVersioning(bucket=<bucket>.id, versioning_configuration={'status': 'Enabled'})."
    for bucket in buckets:
        if _truthy(_get(bucket.resource.props, "versioning", "enabled")):
            continue
        versioning = _one_companion(bucket, companions[bucket.resource.urn], "aws.s3.BucketVersioning", report, fix)
        if versioning is None:
            continue
        status = _get(versioning.props, "versioningConfiguration", "status")
        if status != "Enabled":
            report(
                f"{bucket.label}: BucketVersioning {versioning.name!r} has status {status!r}. "
                "Set versioning_configuration={'status': 'Enabled'}.",
                versioning.urn,
            )


def _principal_is_everyone(principal: Any) -> bool:
    if principal == "*":
        return True
    return isinstance(principal, Mapping) and "*" in _as_list(principal.get("AWS"))


def _denies_insecure_transport(statement: Mapping[str, Any]) -> bool:
    if statement.get("Effect") != "Deny" or not _principal_is_everyone(statement.get("Principal")):
        return False
    if not {"s3:*", "*"} & {str(a) for a in _as_list(statement.get("Action"))}:
        return False
    condition = _get(statement, "Condition", "Bool", "aws:SecureTransport")
    return any(str(v).lower() == "false" for v in _as_list(condition))


def _covers_bucket_and_objects(statement: Mapping[str, Any], names: set[str]) -> bool:
    resources = {str(r) for r in _as_list(statement.get("Resource"))}
    if "*" in resources or "arn:aws:s3:::*" in resources:
        return True
    if names:
        return any({f"arn:aws:s3:::{n}", f"arn:aws:s3:::{n}/*"} <= resources for n in names)
    return any(f"{r}/*" in resources for r in resources)


def tls_only_statement(document: Any, names: set[str]) -> bool:
    """Whether an S3 bucket policy denies every request made without TLS, to the bucket and its objects."""
    doc = _json_document(document)
    if doc is None:
        return False
    return any(_denies_insecure_transport(s) and _covers_bucket_and_objects(s, names) for s in _statements(doc))


def validate_s3_tls_only(args: StackValidationArgs, report: ReportViolation) -> None:
    buckets = _buckets(args)
    companions = _companions(buckets, args.resources, BUCKET_POLICY)
    fix = (
        'Add aws.s3.BucketPolicy(bucket=<bucket>.id, policy=...) with a statement {"Effect": "Deny", '
        '"Principal": "*", "Action": "s3:*", "Resource": [<bucket arn>, <bucket arn>/*], '
        '"Condition": {"Bool": {"aws:SecureTransport": "false"}}}.'
    )
    for bucket in buckets:
        inline = _get(bucket.resource.props, "policy")
        if inline and tls_only_statement(inline, bucket.names):
            continue
        policy = _one_companion(bucket, companions[bucket.resource.urn], "aws.s3.BucketPolicy", report, fix)
        if policy is None:
            continue
        if not tls_only_statement(policy.props.get("policy"), bucket.names):
            report(
                f"{bucket.label}: BucketPolicy {policy.name!r} does not deny requests without TLS. {fix}", policy.urn
            )


# --- IAM --------------------------------------------------------------------------------------------
# Where policy documents live, per resource type (property names as the engine hands them over).
POLICY_DOCUMENTS: dict[str, tuple[str, ...]] = {
    "aws:iam/policy:Policy": ("policy",),
    "aws:iam/userPolicy:UserPolicy": ("policy",),
    "aws:iam/rolePolicy:RolePolicy": ("policy",),
    "aws:iam/groupPolicy:GroupPolicy": ("policy",),
    "aws:s3/bucketPolicy:BucketPolicy": ("policy",),
    "aws:s3/bucket:Bucket": ("policy",),
}
POLICY_ARN_PROPERTIES: dict[str, tuple[str, ...]] = {
    "aws:iam/userPolicyAttachment:UserPolicyAttachment": ("policyArn",),
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": ("policyArn",),
    "aws:iam/groupPolicyAttachment:GroupPolicyAttachment": ("policyArn",),
    "aws:iam/policyAttachment:PolicyAttachment": ("policyArn",),
    "aws:iam/role:Role": ("managedPolicyArns",),
    "aws:iam/userPolicyAttachmentsExclusive:UserPolicyAttachmentsExclusive": ("policyArns",),
    "aws:iam/rolePolicyAttachmentsExclusive:RolePolicyAttachmentsExclusive": ("policyArns",),
    "aws:iam/groupPolicyAttachmentsExclusive:GroupPolicyAttachmentsExclusive": ("policyArns",),
}
AWS_MANAGED_BROAD = re.compile(
    r"^arn:aws[a-z-]*:iam::aws:policy/(?:[\w+=,.@-]+/)*"
    r"(?P<name>AdministratorAccess[\w+=,.@-]*|PowerUserAccess|[\w+=,.@-]*FullAccess[\w+=,.@-]*)$"
)


def _documents(resource_type: str, props: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    for key in POLICY_DOCUMENTS.get(resource_type, ()):
        value = props.get(key)
        if value:
            yield key, value
    if resource_type == "aws:iam/role:Role":
        for i, inline in enumerate(_as_list(props.get("inlinePolicies"))):
            value = _get(inline, "policy")
            if value:
                yield f"inlinePolicies[{i}] ({_get(inline, 'name') or 'unnamed'})", value


def wildcard_admin_statements(document: Any) -> list[int]:
    """Indexes of statements that allow action `*` on resource `*`."""
    doc = _json_document(document)
    if doc is None:
        return []
    found = []
    for i, s in enumerate(_statements(doc)):
        if s.get("Effect", "Allow") != "Allow":
            continue
        actions = {str(a) for a in _as_list(s.get("Action"))}
        resources = {str(r) for r in _as_list(s.get("Resource"))}
        if actions & {"*", "*:*"} and "*" in resources:
            found.append(i)
    return found


def validate_iam_no_wildcard_admin(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for where, document in _documents(args.resource_type, args.props):
        if _json_document(document) is None:
            report(
                f"{args.name!r}: {where} is not a JSON policy document, so it cannot be checked. Pass "
                "json.dumps(...) of the document.",
                None,
            )
            continue
        for index in wildcard_admin_statements(document):
            report(
                f"{args.name!r}: {where} statement {index} allows Action '*' on Resource '*' (full admin). "
                "List the actions this principal needs (e.g. s3:GetObject) and scope Resource to the ARNs it uses.",
                None,
            )


def validate_iam_no_aws_managed_full_access(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for key in POLICY_ARN_PROPERTIES.get(args.resource_type, ()):
        for arn in _as_list(args.props.get(key)):
            match = AWS_MANAGED_BROAD.match(str(arn))
            if match:
                report(
                    f"{args.name!r} attaches the AWS-managed policy {match.group('name')} ({arn}). "
                    "Attach a customer-managed policy (aws.iam.Policy) that grants only the actions and "
                    "resources needed.",
                    None,
                )


def validate_iam_access_keys_for_stack_users(args: StackValidationArgs, report: ReportViolation) -> None:
    users = [r for r in args.resources if r.resource_type == "aws:iam/user:User"]
    user_urns = {u.urn for u in users}
    user_names = {n for u in users for n in _known_strings(u, "name", "id")}
    for key in (r for r in args.resources if r.resource_type == "aws:iam/accessKey:AccessKey"):
        user = _known(key.props, "user")  # unknown during preview: fall back to what the property depends on
        if isinstance(user, str) and user in user_names:
            continue
        deps = key.property_dependencies.get("user", [])
        if user is None and any(d.urn in user_urns for d in deps):
            continue
        report(
            f"access key {key.name!r} is for IAM user {user!r}, which this stack does not create. Create the user in "
            "this stack (aws.iam.User) and pass user=<that user>.name; keys for people or other systems' users "
            "do not belong in the platform's state.",
            key.urn,
        )


# --- RDS --------------------------------------------------------------------------------------------
RDS_STORAGE = ("aws:rds/instance:Instance", "aws:rds/cluster:Cluster")
RDS_PUBLIC = ("aws:rds/instance:Instance", "aws:rds/cluster:Cluster", "aws:rds/clusterInstance:ClusterInstance")
MIN_BACKUP_DAYS = 7


def validate_rds_storage_encrypted(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type in RDS_STORAGE and not _truthy(args.props.get("storageEncrypted")):
        report(
            f"{args.name!r} stores data unencrypted. "
            "Set storage_encrypted=True (optionally kms_key_id=<a KMS key ARN>).",
            None,
        )


def validate_rds_not_public(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type in RDS_PUBLIC and _truthy(args.props.get("publiclyAccessible")):
        report(
            f"{args.name!r} is publicly accessible. Set publicly_accessible=False and reach it from the cluster's "
            "network through a security group.",
            None,
        )


def validate_rds_backup_retention(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in RDS_STORAGE or args.props.get("replicateSourceDb"):
        return  # read replicas take their backups from the source
    minimum = float(args.get_config().get("minimumDays", MIN_BACKUP_DAYS))
    days = args.props.get("backupRetentionPeriod")
    if not isinstance(days, (int, float)) or isinstance(days, bool) or days < minimum:
        shown = (
            "unset (AWS then keeps 1 day)"
            if days is None
            else f"for {days:g} day(s)"
            if isinstance(days, (int, float))
            else repr(days)
        )
        report(f"{args.name!r} keeps backups {shown}. Set backup_retention_period to at least {minimum:g}.", None)


def validate_rds_deletion_protection(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in RDS_STORAGE:
        return
    provider_props = args.provider.props if args.provider is not None else None
    why = _is_production(args.props, provider_props, args.get_config())
    if why and not _truthy(args.props.get("deletionProtection")):
        report(
            f"{args.name!r} is a production database ({why}) without deletion protection. "
            "Set deletion_protection=True.",
            None,
        )


# --- Kubernetes -------------------------------------------------------------------------------------
WORKLOAD_POD_SPEC: dict[str, tuple[str, ...]] = {
    "apps:Deployment": ("spec", "template", "spec"),
    "apps:StatefulSet": ("spec", "template", "spec"),
    "apps:DaemonSet": ("spec", "template", "spec"),
    "apps:ReplicaSet": ("spec", "template", "spec"),
    "batch:Job": ("spec", "template", "spec"),
    "batch:CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "core:Pod": ("spec",),
    "core:ReplicationController": ("spec", "template", "spec"),
}


def _group_kind(resource_type: str) -> str | None:
    """`kubernetes:apps/v1:Deployment` -> `apps:Deployment` (None for non-Kubernetes or patch types)."""
    parts = resource_type.split(":")
    if len(parts) != 3 or parts[0] != "kubernetes" or "/" not in parts[1]:
        return None
    return f"{parts[1].split('/')[0]}:{parts[2]}"


def pod_spec(resource_type: str, props: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The pod spec inside a workload (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, Pod)."""
    path = WORKLOAD_POD_SPEC.get(_group_kind(resource_type) or "")
    if path is None:
        return None
    spec = _get(props, *path)
    return spec if isinstance(spec, Mapping) else None


@dataclass
class _Container:
    kind: str  # "container" or "initContainer"
    name: str
    spec: Mapping[str, Any]

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name!r}"


def _containers(spec: Mapping[str, Any]) -> list[_Container]:
    found = []
    for key, kind in (("initContainers", "initContainer"), ("containers", "container")):
        for i, c in enumerate(_as_list(spec.get(key))):
            if isinstance(c, Mapping):
                found.append(_Container(kind, str(c.get("name") or f"#{i}"), c))
    return found


def _workload(args: ResourceValidationArgs) -> tuple[str, Mapping[str, Any], list[_Container]] | None:
    spec = pod_spec(args.resource_type, args.props)
    if spec is None:
        return None
    return f"{_kind(args.resource_type)} {_k8s_name(args.props, args.name)}", spec, _containers(spec)


def validate_k8s_non_root(args: ResourceValidationArgs, report: ReportViolation) -> None:
    workload = _workload(args)
    if workload is None:
        return
    label, spec, containers = workload
    pod_ctx = _get(spec, "securityContext") or {}
    for c in containers:
        ctx = _get(c.spec, "securityContext") or {}
        user = ctx.get("runAsUser", pod_ctx.get("runAsUser"))
        non_root = ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot"))
        if user is not None and not isinstance(user, bool) and float(user) == 0:
            report(
                f"{label}: {c.label} runs as UID 0 (root). "
                "Set securityContext.runAsUser to a non-zero UID and runAsNonRoot: true.",
                None,
            )
        elif non_root is not True and (user is None or isinstance(user, bool)):
            report(
                f"{label}: {c.label} may run as root (neither runAsNonRoot: true nor a non-zero runAsUser). "
                "Set securityContext.runAsNonRoot: true (pod or container) and a non-zero runAsUser.",
                None,
            )


def validate_k8s_not_privileged(args: ResourceValidationArgs, report: ReportViolation) -> None:
    workload = _workload(args)
    if workload is None:
        return
    label, _, containers = workload
    for c in containers:
        if _truthy(_get(c.spec, "securityContext", "privileged")):
            report(f"{label}: {c.label} is privileged. Remove securityContext.privileged (or set it to false).", None)


def validate_k8s_no_privilege_escalation(args: ResourceValidationArgs, report: ReportViolation) -> None:
    workload = _workload(args)
    if workload is None:
        return
    label, _, containers = workload
    for c in containers:
        if _get(c.spec, "securityContext", "allowPrivilegeEscalation") is not False:
            report(
                f"{label}: {c.label} allows privilege escalation (the default when unset). "
                "Set securityContext.allowPrivilegeEscalation: false.",
                None,
            )


def validate_k8s_resources(args: ResourceValidationArgs, report: ReportViolation) -> None:
    workload = _workload(args)
    if workload is None:
        return
    label, _, containers = workload
    for c in containers:
        missing = [
            f"{section}.{resource}"
            for section in ("requests", "limits")
            for resource in ("cpu", "memory")
            if _get(c.spec, "resources", section, resource) in (None, "")
        ]
        if missing:
            report(
                f"{label}: {c.label} has no resources.{', resources.'.join(missing)}. "
                "Set CPU and memory requests and limits.",
                None,
            )


def image_tag_problem(image: Any) -> str | None:
    """Why an image reference is not pinned (no tag, or `latest`), or None if it has a tag or digest."""
    if not isinstance(image, str) or not image.strip():
        return "has no image"
    ref = image.strip()
    if "@" in ref:
        digest = ref.split("@", 1)[1]
        return None if re.fullmatch(r"[a-z0-9]+:[a-fA-F0-9]{32,}", digest) else f"has a malformed digest ({ref})"
    last = ref.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"uses {ref} without a tag (Kubernetes pulls :latest)"
    tag = last.rsplit(":", 1)[1]
    if tag.lower() == "latest" or not tag:
        return f"uses the floating tag of {ref}"
    return None


def validate_k8s_pinned_images(args: ResourceValidationArgs, report: ReportViolation) -> None:
    workload = _workload(args)
    if workload is None:
        return
    label, _, containers = workload
    for c in containers:
        problem = image_tag_problem(c.spec.get("image"))
        if problem:
            report(f"{label}: {c.label} {problem}. Pin a version tag (e.g. :3.3.2) or a digest (@sha256:...).", None)


def validate_k8s_ingress_tls(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if _group_kind(args.resource_type) != "networking.k8s.io:Ingress":
        return
    label = f"Ingress {_k8s_name(args.props, args.name)}"
    tls = [t for t in _as_list(_get(args.props, "spec", "tls")) if isinstance(t, Mapping)]
    if not tls:
        report(
            f"{label} serves plain HTTP. "
            "Add spec.tls with the hosts and a secretName (e.g. from a cert-manager Certificate).",
            None,
        )
        return
    covered = {str(h) for t in tls for h in _as_list(t.get("hosts"))}
    hosts = [str(h) for r in _as_list(_get(args.props, "spec", "rules")) if (h := _get(r, "host"))]
    uncovered = [
        h for h in hosts if h not in covered and not any(c.startswith("*.") and h.endswith(c[1:]) for c in covered)
    ]
    if uncovered:
        report(
            f"{label}: host(s) {', '.join(uncovered)} are not listed in spec.tls[].hosts. Add them to a TLS entry.",
            None,
        )


def validate_k8s_pv_retain(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if _group_kind(args.resource_type) != "core:PersistentVolume":
        return
    policy = _get(args.props, "spec", "persistentVolumeReclaimPolicy")
    if policy != "Retain":
        shown = "unset" if policy is None else repr(policy)
        report(
            f"PersistentVolume {_k8s_name(args.props, args.name)} has reclaim policy {shown}. "
            "Set spec.persistentVolumeReclaimPolicy: Retain so releasing the claim never deletes the data.",
            None,
        )


SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "passphrase",
        "pwd",
        "secret",
        "token",
        "credential",
        "credentials",
        "apikey",
        "privatekey",
        "secretkey",
        "accesskey",
        "fernetkey",
        "sessionkey",
    }
)
# A key whose last word is one of these refers to a secret rather than holding one:
# DB_PASSWORD_FILE=/run/secrets/pw, SECRET_NAME=mlflow-db, TOKEN_URL=https://..., ACCESS_KEY_ID=AKIA...
REFERENCE_SUFFIXES = frozenset(
    {
        "file",
        "path",
        "dir",
        "url",
        "uri",
        "endpoint",
        "host",
        "name",
        "ref",
        "env",
        "header",
        "id",
        "ttl",
        "expiry",
        "expiration",
        "length",
        "enabled",
        "mount",
        "type",
        "version",
        "rotation",
        "days",
    }
)
# `..._KEY` is a secret (API_KEY, FERNET_KEY, SSH_KEY) unless it names a lookup or public key.
NON_SECRET_KEY_QUALIFIERS = frozenset(
    {
        "public",
        "routing",
        "partition",
        "sort",
        "cache",
        "primary",
        "foreign",
        "sticky",
        "lookup",
        "label",
        "idempotency",
        "group",
        "hash",
        "shard",
        "index",
        "object",
        "s3",
        "metric",
        "model",
        "prefix",
        "dedup",
        "dedupe",
        "map",
        "annotation",
    }
)
PEM_PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
WEBHOOK_URL = re.compile(
    r"https://(hooks\.slack\.com/(services|workflows)/|[\w.-]+\.webhook\.office\.com/|discord(app)?\.com/api/webhooks/)"
)
URL_WITH_PASSWORD = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s:/@]+:([^\s@/]+)@", re.IGNORECASE)


def key_words(key: str) -> list[str]:
    """`MLOPS_SERVING_RELOAD_URL` -> [mlops, serving, reload, url]; `dbPassword` -> [db, password]."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", key)
    return [w.lower() for w in re.split(r"[^A-Za-z0-9]+", spaced) if w]


def secret_looking_key(key: str) -> bool:
    words = key_words(key)
    if "webhook" in words and words[-1] in ("url", "uri"):
        return True  # a webhook URL is itself the credential (Slack, Teams: the token is in the path)
    if not words or words[-1] in REFERENCE_SUFFIXES:
        return False
    joined = ["".join(words[i : i + 2]) for i in range(len(words) - 1)]
    if SECRET_WORDS & (set(words) | set(joined)):
        return True
    if words[-1] == "key":
        return len(words) == 1 or words[-2] not in NON_SECRET_KEY_QUALIFIERS
    return False


def secret_looking_value(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    if PEM_PRIVATE_KEY.search(value):
        return "a PEM private key"
    if WEBHOOK_URL.search(value):
        return "a webhook URL (the URL is the credential)"
    match = URL_WITH_PASSWORD.search(value)
    if match and not match.group(1).startswith("$"):  # `$(DB_PASSWORD)` / `${VAR}` are references
        return "a URL with an embedded password"
    return None


def validate_k8s_configmap_no_secrets(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if _group_kind(args.resource_type) != "core:ConfigMap":
        return
    label = f"ConfigMap {_k8s_name(args.props, args.name)}"
    for section in ("data", "binaryData"):
        entries = args.props.get(section)
        if not isinstance(entries, Mapping):
            continue
        for key in entries:
            if secret_looking_key(str(key)):
                report(
                    f"{label}: key {key!r} looks like a secret. Move it to a Kubernetes Secret (from a Pulumi secret) "
                    "and reference it with env[].valueFrom.secretKeyRef or a secret volume.",
                    None,
                )
                continue
            found = secret_looking_value(entries.get(key))
            if found:
                report(
                    f"{label}: the value of {key!r} contains {found}. Move the secret part to a Kubernetes Secret.",
                    None,
                )


# --- Helm ---------------------------------------------------------------------------------------------
# helm.sh/v3:Chart is a client-side component registered without inputs (its rendered objects are
# checked by the Kubernetes policies); v3 Release and the v4 Chart component carry chart and version.
HELM_TYPES = ("kubernetes:helm.sh/v3:Release", "kubernetes:helm.sh/v4:Chart")
EXACT_VERSION = re.compile(r"^v?\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")


def validate_helm_chart_version(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in HELM_TYPES:
        return
    chart = args.props.get("chart")
    if isinstance(chart, str) and chart.startswith(("./", "../", "/")):
        return  # a chart directory in this repository is pinned by the commit
    version = args.props.get("version")
    if not isinstance(version, str) or not EXACT_VERSION.match(version.strip()):
        shown = "no version" if version in (None, "") else f"version {version!r}"
        report(
            f"Helm chart {chart!r} ({_kind(args.resource_type)} {args.name!r}) has {shown}: every `pulumi up` may "
            "install whatever the repository serves then. Set version to an exact chart version (e.g. '1.2.3').",
            None,
        )


# --- the pack ---------------------------------------------------------------------------------------
def _resource(
    name: str, description: str, validate: Callable[[ResourceValidationArgs, ReportViolation], None], **kw: Any
) -> ResourceValidationPolicy:
    return ResourceValidationPolicy(
        name=name, description=description, validate=validate, enforcement_level=MANDATORY, **kw
    )


def _stack(
    name: str, description: str, validate: Callable[[StackValidationArgs, ReportViolation], None]
) -> StackValidationPolicy:
    return StackValidationPolicy(name=name, description=description, validate=validate, enforcement_level=MANDATORY)


POLICIES: list[Policy] = [
    _stack(
        "s3-public-access-blocked",
        "S3 buckets block all public access (all four BucketPublicAccessBlock settings on).",
        validate_s3_public_access_block,
    ),
    _stack(
        "s3-encryption-configured", "S3 buckets have default server-side encryption configured.", validate_s3_encryption
    ),
    _stack("s3-versioning-enabled", "S3 buckets have versioning enabled.", validate_s3_versioning),
    _stack("s3-tls-only", "S3 bucket policies deny every request made without TLS.", validate_s3_tls_only),
    _resource(
        "iam-no-wildcard-admin",
        "IAM and bucket policy documents never allow Action '*' on Resource '*'.",
        validate_iam_no_wildcard_admin,
    ),
    _resource(
        "iam-no-aws-managed-full-access",
        "No AWS-managed AdministratorAccess, PowerUserAccess or *FullAccess policy is attached.",
        validate_iam_no_aws_managed_full_access,
    ),
    _stack(
        "iam-access-keys-for-stack-users-only",
        "IAM access keys are only created for IAM users this stack creates.",
        validate_iam_access_keys_for_stack_users,
    ),
    _resource("rds-storage-encrypted", "RDS storage is encrypted.", validate_rds_storage_encrypted),
    _resource("rds-not-publicly-accessible", "RDS databases are not publicly accessible.", validate_rds_not_public),
    _resource(
        "rds-backup-retention",
        f"RDS keeps automated backups for at least {MIN_BACKUP_DAYS} days.",
        validate_rds_backup_retention,
        config_schema=PolicyConfigSchema(
            properties={"minimumDays": {"type": "integer", "minimum": 1, "default": MIN_BACKUP_DAYS}}
        ),
    ),
    _resource(
        "rds-deletion-protection-in-prod",
        "Production RDS databases have deletion protection on.",
        validate_rds_deletion_protection,
        config_schema=PolicyConfigSchema(
            properties={
                "productionStacks": {"type": "array", "items": {"type": "string"}, "default": ["prod", "production"]}
            }
        ),
    ),
    _resource("k8s-run-as-non-root", "Kubernetes containers run as a non-root user.", validate_k8s_non_root),
    _resource("k8s-not-privileged", "Kubernetes containers are not privileged.", validate_k8s_not_privileged),
    _resource(
        "k8s-no-privilege-escalation",
        "Kubernetes containers set allowPrivilegeEscalation: false.",
        validate_k8s_no_privilege_escalation,
    ),
    _resource(
        "k8s-resource-requests-and-limits",
        "Kubernetes containers declare CPU and memory requests and limits.",
        validate_k8s_resources,
    ),
    _resource(
        "k8s-pinned-image-tags",
        "Kubernetes container images use a pinned tag or digest (not `latest`, not untagged).",
        validate_k8s_pinned_images,
    ),
    _resource("k8s-ingress-tls", "Every Ingress terminates TLS for all its hosts.", validate_k8s_ingress_tls),
    _resource(
        "k8s-persistent-volume-retain", "PersistentVolumes use the Retain reclaim policy.", validate_k8s_pv_retain
    ),
    _resource(
        "k8s-configmap-no-secrets",
        "ConfigMaps carry no secrets (no secret-looking keys, private keys or passwords in URLs).",
        validate_k8s_configmap_no_secrets,
    ),
    _resource(
        "helm-chart-version-pinned", "Helm releases and charts pin an exact chart version.", validate_helm_chart_version
    ),
]


def policy_named(name: str) -> Policy:
    for p in POLICIES:
        if p.name == name:
            return p
    raise KeyError(name)


def names(policies: Iterable[Policy] = POLICIES) -> list[str]:
    return [p.name for p in policies]
