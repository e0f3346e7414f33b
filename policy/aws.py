"""AWS policies: S3 (CIS 2.1, AWS Foundational Security Best Practices S3.1-S3.8), IAM (CIS 1.16, FSBP IAM.1,
IAM.21), security groups (CIS 5.2/5.3, FSBP EC2.18/EC2.19), RDS (FSBP RDS.2/RDS.3/RDS.7/RDS.11).

Production: `rds-deletion-protection-in-prod` applies when any of these says "prod" (fail closed):
  1. the stack's config `mlops-platform:environment` (the CLI hands stack config to policy packs in
     `PULUMI_CONFIG`),
  2. the stack name (`PULUMI_STACK`): one of the policy's `productionStacks` (default `prod`,
     `production`) or containing `prod`/`production` as a `-`/`_`/`.`-separated word (`eu-prod`),
  3. the resource's tags, or its AWS provider's `defaultTags`: `mlops-platform/environment=prod`
     (the program tags every AWS resource so through the provider).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pulumi_policy import PolicyResource, ReportViolation, ResourceValidationArgs, StackValidationArgs

from policy.common import (
    UnknownValueError,
    as_list,
    get,
    is_secret,
    json_document,
    known,
    show_number,
    statements,
    truthy,
)

PROJECT = "mlops-platform"
ENVIRONMENT_TAG = "mlops-platform/environment"


# The words that name a production stack, environment or tag (the default of `productionStacks`).
PRODUCTION_WORDS = ("prod", "production")


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
    if isinstance(env, str) and env.strip().lower() in PRODUCTION_WORDS:
        return f"stack config {PROJECT}:environment is {env!r}"
    stack = os.environ.get("PULUMI_STACK", "")
    prod_stacks = [str(s) for s in as_list(config.get("productionStacks"))] or list(PRODUCTION_WORDS)
    words = set(re.split(r"[-_.]", stack.lower()))
    if stack and (stack in prod_stacks or words & set(PRODUCTION_WORDS)):
        return f"stack {stack!r} is a production stack"
    for source, read in (
        ("tag", lambda: get(get(props, "tags"), ENVIRONMENT_TAG)),
        ("tag", lambda: get(get(props, "tagsAll"), ENVIRONMENT_TAG)),  # computed: unknown in preview
        ("provider default tag", lambda: get(_provider_default_tags(provider_props), ENVIRONMENT_TAG)),
    ):
        try:
            value = read()
        except UnknownValueError:
            continue
        if isinstance(value, str) and value.strip().lower() in PRODUCTION_WORDS:
            return f"{source} {ENVIRONMENT_TAG}={value}"
    return None


def _provider_default_tags(provider_props: Mapping[str, Any] | None) -> Any:
    # Provider configuration reaches policies as stored by the engine: nested objects may be JSON strings.
    default_tags = get(provider_props, "defaultTags")
    if isinstance(default_tags, str):
        try:
            default_tags = json.loads(default_tags)
        except json.JSONDecodeError:
            return None
    return get(default_tags, "tags")


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


def _known_strings(r: PolicyResource, *keys: str) -> set[str]:
    return {v for key in keys if isinstance(v := known(r.props, key), str) and v}


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
        name = known(r.props, "bucket")  # a new bucket's name may not be known during preview
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
        off = [py for camel, py in PUBLIC_ACCESS_FLAGS if not truthy(pab.props.get(camel))]
        if off:
            report(
                f"{bucket.label}: BucketPublicAccessBlock {pab.name!r} does not turn on {', '.join(off)}. "
                f"Set {', '.join(f'{py}=True' for py in off)}.",
                pab.urn,
            )


def _sse_algorithms(rules: Any) -> list[str]:
    algorithms = []
    for rule in as_list(rules):
        algorithm = get(rule, "applyServerSideEncryptionByDefault", "sseAlgorithm")
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
        inline = _sse_algorithms(get(bucket.resource.props, "serverSideEncryptionConfiguration", "rule"))
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
        if truthy(get(bucket.resource.props, "versioning", "enabled")):
            continue
        versioning = _one_companion(bucket, companions[bucket.resource.urn], "aws.s3.BucketVersioning", report, fix)
        if versioning is None:
            continue
        status = get(versioning.props, "versioningConfiguration", "status")
        if status != "Enabled":
            report(
                f"{bucket.label}: BucketVersioning {versioning.name!r} has status {status!r}. "
                "Set versioning_configuration={'status': 'Enabled'}.",
                versioning.urn,
            )


def _principal_is_everyone(principal: Any) -> bool:
    if principal == "*":
        return True
    return isinstance(principal, Mapping) and "*" in as_list(principal.get("AWS"))


def _denies_insecure_transport(statement: Mapping[str, Any]) -> bool:
    if statement.get("Effect") != "Deny" or not _principal_is_everyone(statement.get("Principal")):
        return False
    if not {"s3:*", "*"} & {str(a) for a in as_list(statement.get("Action"))}:
        return False
    condition = get(statement, "Condition", "Bool", "aws:SecureTransport")
    return any(str(v).lower() == "false" for v in as_list(condition))


def _covers_bucket_and_objects(statement: Mapping[str, Any], names: set[str]) -> bool:
    resources = {str(r) for r in as_list(statement.get("Resource"))}
    if "*" in resources or "arn:aws:s3:::*" in resources:
        return True
    if names:
        return any({f"arn:aws:s3:::{n}", f"arn:aws:s3:::{n}/*"} <= resources for n in names)
    return any(f"{r}/*" in resources for r in resources)


def tls_only_statement(document: Any, names: set[str]) -> bool:
    """Whether an S3 bucket policy denies every request made without TLS, to the bucket and its objects."""
    doc = json_document(document)
    if doc is None:
        return False
    return any(_denies_insecure_transport(s) and _covers_bucket_and_objects(s, names) for s in statements(doc))


def validate_s3_tls_only(args: StackValidationArgs, report: ReportViolation) -> None:
    buckets = _buckets(args)
    companions = _companions(buckets, args.resources, BUCKET_POLICY)
    fix = (
        'Add aws.s3.BucketPolicy(bucket=<bucket>.id, policy=...) with a statement {"Effect": "Deny", '
        '"Principal": "*", "Action": "s3:*", "Resource": [<bucket arn>, <bucket arn>/*], '
        '"Condition": {"Bool": {"aws:SecureTransport": "false"}}}.'
    )
    for bucket in buckets:
        inline = get(bucket.resource.props, "policy")
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
        for i, inline in enumerate(as_list(props.get("inlinePolicies"))):
            value = get(inline, "policy")
            if value:
                yield f"inlinePolicies[{i}] ({get(inline, 'name') or 'unnamed'})", value


def _allows(statement: Mapping[str, Any]) -> bool:
    return statement.get("Effect", "Allow") == "Allow"


def _all_resources(statement: Mapping[str, Any], service: str | None = None) -> bool:
    """Whether the statement applies to every resource (of `service`, when given): `*`, `arn:aws:s3:::*`,
    `arn:*:iam::*:*`, or NotResource (everything but some)."""
    if statement.get("NotResource") is not None:
        return True
    for resource in as_list(statement.get("Resource")):
        text = str(resource)
        if text == "*":
            return True
        parts = text.split(":", 5)
        if len(parts) == 6 and parts[0] == "arn" and (service is None or parts[2] in (service, "*")):
            if parts[3] in ("", "*") and parts[4] in ("", "*") and set(parts[5]) <= {"*"} and parts[5]:
                return True
    return False


SERVICE_WILDCARD = re.compile(r"^(?:\*+(?::\*+)?|(?P<service>[a-z0-9-]+):\*+)$", re.IGNORECASE)


def wildcard_statements(document: Any) -> list[tuple[int, str]]:
    """(index, what) of the statements that allow every action (of a service, or all) on every resource."""
    doc = json_document(document)
    if doc is None:
        return []
    found = []
    for i, s in enumerate(statements(doc)):
        if not _allows(s):
            continue
        not_actions = as_list(s.get("NotAction"))
        if not_actions and _all_resources(s):
            found.append((i, f"allows every action except {', '.join(map(str, not_actions))} (NotAction)"))
            continue
        for action in as_list(s.get("Action")):
            match = SERVICE_WILDCARD.match(str(action).strip())
            if match is None:
                continue
            service = match.group("service")
            if _all_resources(s, service.lower() if service else None):
                what = f"every {service} action" if service else "every action of every service"
                found.append((i, f"allows {what} ({action}) on every resource"))
                break
    return found


def validate_iam_no_wildcard_actions(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for where, document in _documents(args.resource_type, args.props):
        if json_document(document) is None:
            report(
                f"{args.name!r}: {where} is not a JSON policy document, so it cannot be checked. Pass "
                "json.dumps(...) of the document.",
                None,
            )
            continue
        for index, what in wildcard_statements(document):
            report(
                f"{args.name!r}: {where} statement {index} {what}. "
                "List the actions this principal needs (e.g. s3:GetObject) and scope Resource to the ARNs it uses.",
                None,
            )


# IAM actions that let a principal give itself (or a principal it controls) more permissions
# (Rhino Security Labs' privilege-escalation methods; permission boundaries; role trust).
ESCALATION_ACTIONS = (
    "iam:CreatePolicyVersion",
    "iam:SetDefaultPolicyVersion",
    "iam:CreateAccessKey",
    "iam:CreateLoginProfile",
    "iam:UpdateLoginProfile",
    "iam:AttachUserPolicy",
    "iam:AttachGroupPolicy",
    "iam:AttachRolePolicy",
    "iam:PutUserPolicy",
    "iam:PutGroupPolicy",
    "iam:PutRolePolicy",
    "iam:AddUserToGroup",
    "iam:UpdateAssumeRolePolicy",
    "iam:PutUserPermissionsBoundary",
    "iam:PutRolePermissionsBoundary",
    "iam:DeleteUserPermissionsBoundary",
    "iam:DeleteRolePermissionsBoundary",
    "iam:PassRole",
    "sts:AssumeRole",
    "lambda:UpdateFunctionCode",
    "glue:UpdateDevEndpoint",
)
# Harmless when scoped: a role passed or assumed by exact ARN, the caller's own access keys and password.
SCOPED_OK = {
    "iam:passrole": "exact",
    "sts:assumerole": "exact",
    "iam:createaccesskey": "self",
    "iam:createloginprofile": "self",
    "iam:updateloginprofile": "self",
}


def _granted(pattern: str) -> list[str]:
    """The escalation actions an IAM action pattern (`iam:Put*`, `iam:*`, `*`) grants."""
    lowered = pattern.strip().lower()
    return [a for a in ESCALATION_ACTIONS if fnmatch.fnmatchcase(a.lower(), lowered)]


def _scoped(statement: Mapping[str, Any], how: str) -> bool:
    resources = [str(r) for r in as_list(statement.get("Resource"))]
    if not resources or statement.get("NotResource") is not None:
        return False
    if how == "self":
        return all("${aws:username}" in r for r in resources)
    return all("*" not in r and "?" not in r for r in resources)


def escalation_statements(document: Any) -> list[tuple[int, list[str]]]:
    doc = json_document(document)
    if doc is None:
        return []
    found = []
    for i, s in enumerate(statements(doc)):
        if not _allows(s) or s.get("NotAction") is not None:
            continue  # NotAction is reported by iam-no-wildcard-actions
        granted: list[str] = []
        for action in as_list(s.get("Action")):
            for escalation in _granted(str(action)):
                how = SCOPED_OK.get(escalation.lower())
                if escalation not in granted and not (how and _scoped(s, how)):
                    granted.append(escalation)
        if granted:
            found.append((i, granted))
    return found


def validate_iam_no_privilege_escalation(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type == "aws:s3/bucketPolicy:BucketPolicy" or args.resource_type in BUCKET_TYPES:
        return  # a bucket policy cannot grant IAM actions
    for where, document in _documents(args.resource_type, args.props):
        for index, granted in escalation_statements(document):
            shown = ", ".join(granted[:6]) + (f" and {len(granted) - 6} more" if len(granted) > 6 else "")
            report(
                f"{args.name!r}: {where} statement {index} allows {shown}, which let a principal raise its own "
                "permissions. Remove them (the platform's identities never manage IAM); scope iam:PassRole and "
                "sts:AssumeRole to exact role ARNs, and self-service key actions to "
                "arn:aws:iam::*:user/${aws:username}.",
                None,
            )


def validate_iam_no_aws_managed_full_access(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for key in POLICY_ARN_PROPERTIES.get(args.resource_type, ()):
        for arn in as_list(args.props.get(key)):
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
        user = known(key.props, "user")  # unknown during preview: fall back to what the property depends on
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
    if args.resource_type in RDS_STORAGE and not truthy(args.props.get("storageEncrypted")):
        report(
            f"{args.name!r} stores data unencrypted. "
            "Set storage_encrypted=True (optionally kms_key_id=<a KMS key ARN>).",
            None,
        )


KMS_KEY = "aws:kms/key:Key"


def validate_kms_key_rotation(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != KMS_KEY or args.props.get("keySpec") not in (None, "SYMMETRIC_DEFAULT"):
        return  # AWS rotates symmetric encryption keys only
    if not truthy(args.props.get("enableKeyRotation")):
        report(
            f"KMS key {args.name!r} does not rotate its key material. Set enable_key_rotation=True "
            "(optionally rotation_period_in_days).",
            None,
        )


def validate_rds_not_public(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type in RDS_PUBLIC and truthy(args.props.get("publiclyAccessible")):
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
    if why and not truthy(args.props.get("deletionProtection")):
        report(
            f"{args.name!r} is a production database ({why}) without deletion protection. "
            "Set deletion_protection=True.",
            None,
        )


def validate_rds_credentials_secret(args: ResourceValidationArgs, report: ReportViolation) -> None:
    fields = RDS_PASSWORDS.get(args.resource_type)
    if fields is None:
        return
    if truthy(known(args.props, "manageMasterUserPassword")):
        return  # RDS keeps the password in Secrets Manager
    for fld in fields:
        value = known(args.props, fld)
        if isinstance(value, str) and value and not is_secret(value):
            report(
                f"{args.name!r}: {fld} is not a Pulumi secret, so the database password is stored in plaintext in the "
                "state and shown in previews. Pass it as a secret (config.require_secret(...), a RandomPassword's "
                "result or pulumi.Output.secret(...)), or set manage_master_user_password=True.",
                None,
            )


RDS_PASSWORDS: dict[str, tuple[str, ...]] = {
    "aws:rds/instance:Instance": ("password", "passwordWo"),
    "aws:rds/cluster:Cluster": ("masterPassword", "masterPasswordWo"),
}


# --- S3: public by ACL or by bucket policy -----------------------------------------------------------------
ACL_TYPES = (
    "aws:s3/bucketAcl:BucketAcl",
    "aws:s3/bucketAclV2:BucketAclV2",
    *BUCKET_TYPES,
    "aws:s3/bucketObject:BucketObject",
    "aws:s3/bucketObjectv2:BucketObjectv2",
    "aws:s3/objectCopy:ObjectCopy",
)
PUBLIC_CANNED_ACLS = ("public-read", "public-read-write", "authenticated-read")
PUBLIC_GROUPS = (
    "http://acs.amazonaws.com/groups/global/AllUsers",
    "http://acs.amazonaws.com/groups/global/AuthenticatedUsers",
)


def _public_grants(props: Mapping[str, Any]) -> Iterator[str]:
    grants = as_list(get(props, "accessControlPolicy", "grants")) + as_list(props.get("grants"))
    for grant in grants:
        uri = get(grant, "grantee", "uri") or get(grant, "uri")
        if isinstance(uri, str) and uri.rstrip("/") in PUBLIC_GROUPS:
            permissions = as_list(get(grant, "permission")) + as_list(get(grant, "permissions"))
            yield f"{uri.rsplit('/', 1)[-1]} ({', '.join(map(str, permissions)) or 'no permission'})"


def validate_s3_no_public_acl(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in ACL_TYPES:
        return
    acl = args.props.get("acl")
    if acl in PUBLIC_CANNED_ACLS:
        report(
            f"{args.name!r} sets the canned ACL {acl!r}, which makes it readable by anyone"
            f"{' with an AWS account' if acl == 'authenticated-read' else ''}. Remove acl (keep ACLs disabled with "
            "BucketOwnershipControls object_ownership='BucketOwnerEnforced') or set it to 'private'.",
            None,
        )
    for grantee in _public_grants(args.props):
        report(
            f"{args.name!r} grants {grantee} in its ACL. Remove that grant (and keep ACLs disabled with "
            "BucketOwnershipControls object_ownership='BucketOwnerEnforced').",
            None,
        )


# Condition keys that, with a fixed value, keep a statement for `*` from being public (what S3 itself
# counts as non-public: https://docs.aws.amazon.com/AmazonS3/latest/userguide/access-control-block-public-access.html).
RESTRICTING_KEYS = frozenset(
    {
        "aws:sourceip",
        "aws:sourcearn",
        "aws:sourcevpc",
        "aws:sourcevpce",
        "aws:sourceowner",
        "aws:sourceaccount",
        "aws:sourceorgid",
        "aws:sourceorgpaths",
        "aws:principalaccount",
        "aws:principalarn",
        "aws:principalorgid",
        "aws:principalorgpaths",
        "aws:userid",
        "s3:x-amz-server-side-encryption-aws-kms-key-id",
        "s3:dataaccesspointarn",
        "s3:dataaccesspointaccount",
    }
)
# Operators that pin a key to given values (negations, IfExists and ForAllValues do not).
RESTRICTING_OPERATORS = frozenset(
    {"stringequals", "stringequalsignorecase", "stringlike", "arnequals", "arnlike", "ipaddress"}
)


def _everyone(principal: Any) -> bool:
    if principal == "*":
        return True
    if isinstance(principal, Mapping):
        return any("*" in str(p) for p in as_list(principal.get("AWS")))
    return False


def _fixed_value(key: str, values: list[Any]) -> bool:
    if not values:
        return False
    for value in map(str, values):
        if "*" in value or "?" in value:
            return False
        if key == "aws:sourceip":
            try:
                if ipaddress.ip_network(value, strict=False).prefixlen == 0:
                    return False
            except ValueError:
                return False
        if key == "aws:userid" and value.endswith(":*"):
            return False
    return True


def _pinning_conditions(statement: Mapping[str, Any]) -> Iterator[tuple[str, list[Any]]]:
    """(condition key in lower case, values) of the conditions that pin a key to given values: positive
    string, ARN and IP operators (`ForAnyValue:` allowed), not negations, `...IfExists` or `ForAllValues:`."""
    condition = statement.get("Condition")
    if not isinstance(condition, Mapping):
        return
    for operator in condition:
        op = str(operator).lower()
        if op.startswith("forallvalues:") or op.endswith("ifexists"):
            continue
        block = condition.get(operator)
        if op.removeprefix("foranyvalue:") not in RESTRICTING_OPERATORS or not isinstance(block, Mapping):
            continue
        for key in block:
            yield str(key).lower(), as_list(block.get(key))


def _restricted_by_condition(statement: Mapping[str, Any]) -> bool:
    return any(key in RESTRICTING_KEYS and _fixed_value(key, values) for key, values in _pinning_conditions(statement))


def public_statements(document: Any) -> list[int]:
    """Indexes of the statements that allow anyone (Principal `*`, or NotPrincipal) without a restricting condition."""
    doc = json_document(document)
    if doc is None:
        return []
    return [
        i
        for i, s in enumerate(statements(doc))
        if _allows(s)
        and (_everyone(s.get("Principal")) or s.get("NotPrincipal") is not None)
        and not _restricted_by_condition(s)
    ]


def validate_s3_no_public_policy(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in (*BUCKET_POLICY, *BUCKET_TYPES):
        return
    document = args.props.get("policy")
    if not document:
        return
    for index in public_statements(document):
        report(
            f"{args.name!r}: policy statement {index} allows anyone (Principal '*') with no condition that pins the "
            "caller (aws:SourceVpce, aws:SourceVpc, aws:SourceIp, aws:PrincipalOrgID, aws:SourceArn...). Set Principal "
            "to the account, role or service that needs access, or add such a condition.",
            None,
        )


# --- EC2 security groups -------------------------------------------------------------------------------------
OPEN_TO_THE_WORLD_OK = ((("tcp", "6"), 80), (("tcp", "6"), 443), (("udp", "17"), 443))


def _world(cidrs: list[Any]) -> list[str]:
    world = []
    for cidr in cidrs:
        try:
            if ipaddress.ip_network(str(cidr), strict=False).prefixlen == 0:
                world.append(str(cidr))
        except ValueError:
            continue
    return world


def _web_only(protocol: Any, from_port: Any, to_port: Any) -> bool:
    proto = str(protocol).lower()
    return any(proto in protocols and from_port == port and to_port == port for protocols, port in OPEN_TO_THE_WORLD_OK)


def _ingress_rules(resource_type: str, props: Mapping[str, Any]) -> Iterator[tuple[str, Any, Any, Any, list[str]]]:
    """(where, protocol, from, to, world CIDRs) of each ingress rule open to the world."""
    if resource_type == "aws:ec2/securityGroup:SecurityGroup":
        for i, rule in enumerate(as_list(props.get("ingress"))):
            world = _world(as_list(get(rule, "cidrBlocks")) + as_list(get(rule, "ipv6CidrBlocks")))
            if world:
                yield f"ingress[{i}]", get(rule, "protocol"), get(rule, "fromPort"), get(rule, "toPort"), world
    elif resource_type == "aws:ec2/securityGroupRule:SecurityGroupRule":
        if props.get("type") == "ingress":
            world = _world(as_list(props.get("cidrBlocks")) + as_list(props.get("ipv6CidrBlocks")))
            if world:
                yield "rule", props.get("protocol"), props.get("fromPort"), props.get("toPort"), world
    elif resource_type == "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule":
        world = _world([c for c in (props.get("cidrIpv4"), props.get("cidrIpv6")) if c])
        if world:
            yield "rule", props.get("ipProtocol"), props.get("fromPort"), props.get("toPort"), world


def validate_no_world_open_ingress(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for where, protocol, from_port, to_port, world in _ingress_rules(args.resource_type, args.props):
        if _web_only(protocol, from_port, to_port):
            continue
        ports = (
            "all ports" if str(protocol) in ("-1", "all") else f"ports {show_number(from_port)}-{show_number(to_port)}"
        )
        report(
            f"{args.name!r}: {where} opens {protocol} {ports} to {', '.join(world)}. Restrict the CIDRs to the "
            "networks that need it (a VPC CIDR, a VPN range) or a security group; only TCP 80 and 443 may be open "
            "to the world.",
            None,
        )


# --- IAM role trust ------------------------------------------------------------------------------------------
GITHUB_OIDC = "token.actions.githubusercontent.com"


def _federated(statement: Mapping[str, Any]) -> list[str]:
    principal = statement.get("Principal")
    return [str(p) for p in as_list(get(principal, "Federated"))] if isinstance(principal, Mapping) else []


def _pins_github_subject(statement: Mapping[str, Any]) -> bool:
    """Whether the statement restricts the GitHub OIDC token's `sub` (repository, branch, environment)."""
    for key, values in _pinning_conditions(statement):
        subjects = [str(v) for v in values]
        if key == f"{GITHUB_OIDC}:sub" and subjects and not any(v.strip("*") in ("", "repo:") for v in subjects):
            return True
    return False


def validate_iam_no_public_trust(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != "aws:iam/role:Role":
        return
    document = args.props.get("assumeRolePolicy")
    if not document:
        return
    for index in public_statements(document):
        report(
            f"{args.name!r}: assume_role_policy statement {index} lets any AWS principal assume the role (Principal "
            "'*' with no condition that pins the caller). Set Principal to the account, role or service that "
            "assumes it, or add an aws:PrincipalOrgID / aws:PrincipalArn condition.",
            None,
        )
    doc = json_document(document)
    for index, statement in enumerate(statements(doc) if doc is not None else []):
        if _allows(statement) and any(GITHUB_OIDC in f for f in _federated(statement)):
            if not _pins_github_subject(statement):
                report(
                    f"{args.name!r}: assume_role_policy statement {index} trusts GitHub's OIDC provider without "
                    f"pinning {GITHUB_OIDC}:sub, so a workflow of any repository can assume the role. Add a "
                    f'StringEquals/StringLike condition on it (e.g. "repo:<owner>/<repo>:environment:production").',
                    None,
                )
