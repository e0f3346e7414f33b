"""The artifact store: on AWS, one hardened bucket, least-privilege IAM users and rotating access keys
(`ArtifactStore`); or an existing bucket of an S3-compatible store with the configured keys (`S3CompatibleStore`)."""

from __future__ import annotations

import functools
import hashlib
import json
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pulumi
from pulumi_aws import iam, s3
from pulumi_kubernetes.core.v1 import ConfigMap, Secret
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs

from components.namespaces import NamespaceRef
from components.naming import labels, stack_name
from services.common import contract
from services.common.contract import AWS_CREDENTIALS_KEY, aws_credentials_ini

MLFLOW_PREFIX = "mlflow/"
AIRFLOW_LOG_PREFIX = "airflow-logs/"
# Rotation periods are counted from this instant (a fixed epoch keeps them stable across runs).
ROTATION_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


# --- policies (pure functions: the moto test loads exactly these documents) -------------------------
def prefix_policy(bucket_arn: str, prefix: str, read_paths: Sequence[str] = ()) -> dict[str, Any]:
    """Read/write on `prefix` of one bucket, list only under it; read-only on each of `read_paths` (an object key or
    a key prefix of the same bucket, e.g. a training dataset); nothing else."""
    prefix = prefix.rstrip("/") + "/"
    reads: list[dict[str, Any]] = []
    if read_paths:
        reads = [
            {
                "Sid": "ReadDatasets",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": [f"{bucket_arn}/{path}*" for path in read_paths],
            },
            {
                "Sid": "ListDatasets",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": bucket_arn,
                "Condition": {"StringLike": {"s3:prefix": [p for path in read_paths for p in (path, f"{path}*")]}},
            },
        ]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ObjectsUnderPrefix",
                "Effect": "Allow",
                "Action": [
                    "s3:GetObject",
                    "s3:PutObject",
                    "s3:DeleteObject",
                    "s3:AbortMultipartUpload",
                    "s3:ListMultipartUploadParts",
                ],
                "Resource": f"{bucket_arn}/{prefix}*",
            },
            {
                "Sid": "ListUnderPrefix",
                "Effect": "Allow",
                "Action": ["s3:ListBucket", "s3:ListBucketMultipartUploads"],
                "Resource": bucket_arn,
                "Condition": {"StringLike": {"s3:prefix": [prefix, f"{prefix}*"]}},
            },
            {"Sid": "Locate", "Effect": "Allow", "Action": "s3:GetBucketLocation", "Resource": bucket_arn},
            *reads,
        ],
    }


def paths_in_bucket(bucket: str, uris: Sequence[str]) -> tuple[str, ...]:
    """The keys (or key prefixes) of the `s3://` URIs that point into `bucket`, sorted and unique; URIs of other
    buckets or schemes are not this bucket's to grant."""
    paths = set()
    for uri in uris:
        parsed = urllib.parse.urlparse(uri)
        if parsed.scheme == "s3" and parsed.netloc == bucket and parsed.path.strip("/"):
            paths.add(parsed.path.lstrip("/"))
    return tuple(sorted(paths))


def tls_only_bucket_policy(bucket_arn: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [bucket_arn, f"{bucket_arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }


# --- rotation ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KeySlot:
    slot: int  # 0 or 1
    generation: int  # the rotation period in which this slot's key was issued


@dataclass(frozen=True)
class RotationPlan:
    """Two key slots per user. Slot k holds the key issued in the latest period whose index is
    congruent to k (mod 2): the key of the current period is active, the other slot holds the
    previous period's key, still valid for one more period so running pods keep working until they
    roll. When a period starts, only the slot that held the key from two periods ago is replaced
    (delete before create: never more than two keys per user).

    The plan is a pure function of the clock, so `pulumi up` must run at least once per period
    (a scheduled deployment does): after a gap of two or more periods both slots are replaced in
    one update, including the key running pods use until they roll onto the new one."""

    period: int
    slots: tuple[KeySlot, KeySlot]

    @property
    def active(self) -> KeySlot:
        return self.slots[self.period % 2]

    @property
    def previous(self) -> KeySlot:
        return self.slots[(self.period + 1) % 2]


def rotation_plan(now: datetime, period_days: int) -> RotationPlan:
    if now.tzinfo is None:
        raise ValueError("the rotation clock must be timezone-aware")
    if period_days < 1:
        raise ValueError("the rotation period must be at least one day")
    period = (now - ROTATION_EPOCH) // timedelta(days=period_days)
    slots = tuple(KeySlot(k, period - ((period - k) % 2)) for k in (0, 1))
    return RotationPlan(period=period, slots=(slots[0], slots[1]))


def _policy_json(bucket_arn: str, prefix: str, datasets: Sequence[str] = ()) -> str:
    bucket = bucket_arn.rpartition(":")[2]
    return json.dumps(prefix_policy(bucket_arn, prefix, paths_in_bucket(bucket, datasets)))


def _rotation_marker(key_id: str, marker: str) -> str:
    return hashlib.sha256(f"{marker}/{key_id}".encode()).hexdigest()[:16]


def _active_key_marker(parts: list[Any], marker: str) -> str:
    """`parts` = [active key id, id of the Secret holding it] (the Secret only orders the rollout)."""
    return _rotation_marker(str(parts[0]), marker)


def airflow_aws_connection(key_id: str, secret: str, region: str) -> str:
    """An Airflow `aws` connection URI (AIRFLOW_CONN_<ID>) with the credentials URL-encoded."""
    quote = urllib.parse.quote
    return f"aws://{quote(key_id, safe='')}:{quote(secret, safe='')}@/?region_name={quote(region)}"


@dataclass(frozen=True)
class Consumer:
    """One workload that needs the bucket: its prefix, the namespace and name of the Secret that
    gets its active key, and that Secret's format ("aws-env", or "airflow-connection", which holds the
    AWS variables too, for code that reads them). `datasets`: `s3://` URIs it may read besides its
    prefix (only those inside this bucket are granted)."""

    prefix: str
    namespace: NamespaceRef
    secret_name: str
    secret_format: str
    connection_id: str = ""
    datasets: tuple[str, ...] = ()


@dataclass(frozen=True)
class ArtifactStoreArgs:
    stack: str
    region: str
    now: datetime
    key_rotation_days: int
    noncurrent_version_days: int
    abort_multipart_days: int
    consumers: Mapping[str, Consumer]
    kms_key_arn: str | None = None
    protect: bool = True
    expire_prefixes: Mapping[str, int] = field(default_factory=dict)
    """Key prefix -> days after which its objects expire (e.g. Airflow's task logs); their noncurrent versions
    go one day later."""


class ArtifactStore(pulumi.ComponentResource):
    """Builds one bucket per stack with versioning, server-side encryption (SSE-S3, or SSE-KMS with
    a key), all four public-access blocks, bucket-owner-enforced ownership, a policy denying any
    request without TLS, and lifecycle rules expiring noncurrent versions, aborting incomplete
    multipart uploads and expiring the objects of each prefix of `expire_prefixes` after its days;
    per consumer an IAM user whose inline policy allows read/write under its own
    prefix only (and reading the consumer's datasets in the bucket), two rotating access-key slots
    (see `RotationPlan`), and a Kubernetes Secret in the consumer's namespace holding the active key.
    The bucket and its configuration are protected.

    Exports the attributes below; `rotation` (the `RotationPlan` in force) is not an output.
    """

    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]
    prefixes: dict[str, str]
    """Consumer -> its key prefix."""
    rotation_annotations: dict[str, pulumi.Output[str]]
    """Consumer -> a value that changes with its active key, for pod templates (no secret in it)."""
    rotation_period: int
    """The rotation period in force (see `RotationPlan`)."""
    active_key_ids: dict[str, pulumi.Output[str]]
    """Consumer -> its active access key id (secret)."""

    def __init__(self, name: str, args: ArtifactStoreArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:platform:ArtifactStore", name, None, opts)
        bucket = self._bucket(name, args)
        self._access_controls(name, args, bucket)
        self._encryption(name, args, bucket)
        self._lifecycle(name, args, bucket)
        self.rotation: RotationPlan = rotation_plan(args.now, args.key_rotation_days)
        self.rotation_period = self.rotation.period
        self.rotation_annotations = {}
        self.active_key_ids = {}
        for consumer, spec in args.consumers.items():
            user = self._user(name, args, consumer, spec, bucket)
            keys = self._key_slots(name, consumer, user)
            active = keys[self.rotation.active.slot]
            self.active_key_ids[consumer] = pulumi.Output.secret(active.id)
            credentials = self._credentials(name, args, consumer, spec, active, keys)
            self.rotation_annotations[consumer] = self._rotation_annotation(consumer, credentials)
        self.bucket_name = bucket.bucket
        self.bucket_arn = bucket.arn
        self.prefixes = {consumer: spec.prefix for consumer, spec in args.consumers.items()}
        self.register_outputs(
            {
                "bucket_name": self.bucket_name,
                "bucket_arn": self.bucket_arn,
                "prefixes": self.prefixes,
                "rotation_annotations": self.rotation_annotations,
                "rotation_period": self.rotation_period,
                "active_key_ids": self.active_key_ids,
            }
        )

    def _bucket(self, name: str, args: ArtifactStoreArgs) -> s3.Bucket:
        return s3.Bucket(
            f"{name}-bucket",
            bucket_prefix=stack_name(args.stack, "artifacts", ""),
            force_destroy=False,
            tags={"mlops-platform/purpose": "artifacts"},
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )

    def _after(self, args: ArtifactStoreArgs, bucket: s3.Bucket) -> pulumi.ResourceOptions:
        """Options of the bucket's configuration: protected like the bucket, created after it."""
        return pulumi.ResourceOptions(parent=self, protect=args.protect, depends_on=[bucket])

    def _access_controls(self, name: str, args: ArtifactStoreArgs, bucket: s3.Bucket) -> None:
        """No public access, bucket-owner-enforced ownership, versioning, TLS-only bucket policy."""
        s3.BucketPublicAccessBlock(
            f"{name}-public-access-block",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=self._after(args, bucket),
        )
        s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=bucket.id,
            rule=s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
            opts=self._after(args, bucket),
        )
        s3.BucketVersioning(
            f"{name}-versioning",
            bucket=bucket.id,
            versioning_configuration=s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"),
            opts=self._after(args, bucket),
        )
        s3.BucketPolicy(
            f"{name}-tls-only",
            bucket=bucket.id,
            policy=bucket.arn.apply(lambda arn: json.dumps(tls_only_bucket_policy(arn))),
            opts=self._after(args, bucket),
        )

    def _encryption(self, name: str, args: ArtifactStoreArgs, bucket: s3.Bucket) -> None:
        """SSE-KMS with the configured key (and an S3 bucket key), else SSE-S3."""
        sse = (
            s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                sse_algorithm="aws:kms", kms_master_key_id=args.kms_key_arn
            )
            if args.kms_key_arn
            else s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                sse_algorithm="AES256"
            )
        )
        s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=bucket.id,
            rules=[
                s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=sse, bucket_key_enabled=bool(args.kms_key_arn)
                )
            ],
            opts=self._after(args, bucket),
        )

    def _lifecycle(self, name: str, args: ArtifactStoreArgs, bucket: s3.Bucket) -> None:
        """Noncurrent versions expire; incomplete multipart uploads are aborted; the objects of each prefix of
        `expire_prefixes` expire after its days (the versions they leave behind one day later)."""
        expiring = [
            s3.BucketLifecycleConfigurationRuleArgs(
                id=f"expire-{prefix.strip('/')}",
                status="Enabled",
                filter=s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=prefix),
                expiration=s3.BucketLifecycleConfigurationRuleExpirationArgs(days=days),
                noncurrent_version_expiration=s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                    noncurrent_days=1
                ),
            )
            for prefix, days in sorted(args.expire_prefixes.items())
        ]
        s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=bucket.id,
            rules=[
                s3.BucketLifecycleConfigurationRuleArgs(
                    id="expire-noncurrent-versions",
                    status="Enabled",
                    filter=s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                    noncurrent_version_expiration=s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                        noncurrent_days=args.noncurrent_version_days
                    ),
                ),
                s3.BucketLifecycleConfigurationRuleArgs(
                    id="abort-incomplete-multipart-uploads",
                    status="Enabled",
                    filter=s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                    abort_incomplete_multipart_upload=s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                        days_after_initiation=args.abort_multipart_days
                    ),
                ),
                *expiring,
            ],
            opts=self._after(args, bucket),
        )

    def _user(self, name: str, args: ArtifactStoreArgs, consumer: str, spec: Consumer, bucket: s3.Bucket) -> iam.User:
        """The consumer's IAM user, allowed read/write under its own prefix only (and to read its datasets)."""
        child = pulumi.ResourceOptions(parent=self)
        user = iam.User(
            f"{name}-{consumer}-user",
            name=stack_name(args.stack, consumer),
            path="/mlops-platform/",
            tags={"mlops-platform/consumer": consumer},
            opts=child,
        )
        iam.UserPolicy(
            f"{name}-{consumer}-policy",
            user=user.name,
            policy=bucket.arn.apply(functools.partial(_policy_json, prefix=spec.prefix, datasets=spec.datasets)),
            opts=child,
        )
        return user

    def _key_slots(self, name: str, consumer: str, user: iam.User) -> list[iam.AccessKey]:
        """The user's two access-key slots; a slot's key is replaced when its generation changes."""
        return [
            iam.AccessKey(
                f"{name}-{consumer}-key-slot{slot.slot}",
                user=user.name,
                opts=pulumi.ResourceOptions(
                    parent=self,
                    # a new key when this slot's generation changes; the expired key goes first
                    replacement_trigger=str(slot.generation),
                    delete_before_replace=True,
                    additional_secret_outputs=["secret", "sesSmtpPasswordV4"],
                ),
            )
            for slot in self.rotation.slots
        ]

    def _credentials(
        self,
        name: str,
        args: ArtifactStoreArgs,
        consumer: str,
        spec: Consumer,
        active: iam.AccessKey,
        keys: list[iam.AccessKey],
    ) -> Secret:
        """The Secret in the consumer's namespace holding the active key, in the consumer's format."""
        key_id: pulumi.Output[str] = pulumi.Output.secret(active.id)
        secret: pulumi.Output[str] = pulumi.Output.secret(active.secret)
        # boto's shared credentials file (AWS_SHARED_CREDENTIALS_FILE) for pods that mount the Secret as files
        shared_file: pulumi.Output[str] = pulumi.Output.secret(
            pulumi.Output.all(key_id, secret).apply(lambda v: aws_credentials_ini(str(v[0]), str(v[1])))
        )
        if spec.secret_format == "aws-env":
            string_data: dict[str, pulumi.Input[str]] = {
                contract.AWS_ACCESS_KEY_ID.name: key_id,
                contract.AWS_SECRET_ACCESS_KEY.name: secret,
                AWS_CREDENTIALS_KEY: shared_file,
            }
        elif spec.secret_format == "airflow-connection":
            env = f"AIRFLOW_CONN_{spec.connection_id.upper()}"
            string_data = {
                env: pulumi.Output.all(key_id, secret).apply(lambda v: airflow_aws_connection(v[0], v[1], args.region)),
                # the same key for code that reads AWS's own variables (training code reading s3:// datasets)
                contract.AWS_ACCESS_KEY_ID.name: key_id,
                contract.AWS_SECRET_ACCESS_KEY.name: secret,
                AWS_CREDENTIALS_KEY: shared_file,
            }
        else:
            raise ValueError(f"unknown secret format {spec.secret_format!r}")
        return Secret(
            f"{name}-{consumer}-credentials",
            metadata=ObjectMetaArgs(
                name=spec.secret_name, namespace=spec.namespace.output, labels=labels(rotation="s3-key")
            ),
            type="Opaque",
            string_data=string_data,
            opts=pulumi.ResourceOptions(parent=self, depends_on=keys),
        )

    def _rotation_annotation(self, consumer: str, credentials: Secret) -> pulumi.Output[str]:
        """Changes whenever the active key changes (slot + generation + key id), reveals nothing.
        It is derived from the Secret too, so a workload carrying it rolls only once the Secret
        holds the new key (pods that started earlier would keep the outgoing key a period late)."""
        active = self.rotation.active
        marker = f"{consumer}/slot{active.slot}/gen{active.generation}"
        key_id = self.active_key_ids[consumer]
        return pulumi.Output.unsecret(
            pulumi.Output.all(key_id, credentials.id).apply(functools.partial(_active_key_marker, marker=marker))
        )


# --- an existing S3-compatible store (artifacts.mode s3Compatible) ---------------------------------------------------
@dataclass(frozen=True)
class StoreCredentials:
    """One consumer's key at an S3-compatible store: the slot in use (a or b), its access key id and secret key
    (both secret Outputs: the program never shows them)."""

    slot: str
    access_key_id: pulumi.Input[str]
    secret_access_key: pulumi.Input[str]


@dataclass(frozen=True)
class S3Endpoint:
    """How the consumers reach an S3-compatible store: its URL, region, addressing, and the ConfigMap (same name in
    each consumer's namespace) holding the store's CA (`ca.crt`, when there is one) and an AWS config file
    (`aws-config`, the addressing style), mounted at `mount` (contract.S3_CLIENT_MOUNT)."""

    url: str
    region: str
    path_style: bool
    has_ca: bool
    configmap: str = contract.S3_CLIENT_CONFIGMAP
    mount: str = contract.S3_CLIENT_MOUNT

    @property
    def host(self) -> str:
        """host[:port] of the URL (what Loki's S3 client takes as its endpoint)."""
        return urllib.parse.urlsplit(self.url).netloc

    @property
    def ca_path(self) -> str | None:
        return f"{self.mount}/{contract.S3_CA_KEY}" if self.has_ca else None

    @property
    def aws_config_path(self) -> str:
        return f"{self.mount}/{contract.S3_AWS_CONFIG_KEY}"

    @property
    def addressing_style(self) -> str:
        return "path" if self.path_style else "virtual"

    def boto_env(self) -> dict[str, str]:
        """boto3's own variables (the AWS SDKs' too): the endpoint, the CA bundle, the config file's addressing."""
        env = {contract.AWS_ENDPOINT_URL_S3.name: self.url, contract.AWS_CONFIG_FILE.name: self.aws_config_path}
        if self.ca_path is not None:
            env[contract.AWS_CA_BUNDLE.name] = self.ca_path
        return env

    def mlflow_env(self) -> dict[str, str]:
        """MLflow's server: its own endpoint and addressing variables, and boto3's CA bundle."""
        env = {
            contract.MLFLOW_S3_ENDPOINT_URL.name: self.url,
            contract.MLFLOW_S3_ADDRESSING_STYLE.name: self.addressing_style,
        }
        if self.ca_path is not None:
            env[contract.AWS_CA_BUNDLE.name] = self.ca_path
        return env

    def volume(self, name: str = "s3-client") -> dict[str, Any]:
        """The ConfigMap as a pod volume (Kubernetes' JSON form, for chart values)."""
        return {"name": name, "configMap": {"name": self.configmap}}

    def volume_mount(self, name: str = "s3-client") -> dict[str, Any]:
        return {"name": name, "mountPath": self.mount, "readOnly": True}


def aws_config_file(region: str, addressing_style: str) -> str:
    """The AWS config file of the store's clients: its region and S3 addressing style (boto3 reads the addressing
    style from a config file only)."""
    return f"[default]\nregion = {region}\ns3 =\n    addressing_style = {addressing_style}\n"


def airflow_s3_connection(key_id: str, secret: str, endpoint: S3Endpoint) -> str:
    """An Airflow `aws` connection (AIRFLOW_CONN_<ID>, Airflow's JSON form) to an S3-compatible store: the key, the
    endpoint, the region, the CA bundle to verify it with and the addressing style."""
    extra: dict[str, Any] = {
        "region_name": endpoint.region,
        "endpoint_url": endpoint.url,
        "config_kwargs": {"s3": {"addressing_style": endpoint.addressing_style}},
    }
    if endpoint.ca_path is not None:
        extra["verify"] = endpoint.ca_path
    return json.dumps({"conn_type": "aws", "login": key_id, "password": secret, "extra": extra}, sort_keys=True)


@dataclass(frozen=True)
class S3CompatibleStoreArgs:
    """`bucket`: the existing bucket; `credentials`: consumer -> its key in use (every consumer of `consumers` has
    one); `ca_certificate`: PEM of the store's CA, or None for the images' public CAs."""

    bucket: str
    endpoint: str
    region: str
    path_style: bool
    consumers: Mapping[str, Consumer]
    credentials: Mapping[str, StoreCredentials]
    ca_certificate: str | None = None


class S3CompatibleStore(pulumi.ComponentResource):
    """An existing bucket of an S3-compatible store (MinIO, Ceph RGW, ...), which the program does not create:
    nothing on AWS. Per consumer, the Secret in its namespace holding the key of its slot in use, in the
    consumer's format (like `ArtifactStore`'s, with the endpoint in the Airflow connection), and the ConfigMap
    `mlops-s3-client` with the store's CA and an AWS config file (the addressing style) for its pods to mount.
    The keys themselves are the store's business: two slots per consumer let a rotation overlap (fill the idle
    slot, switch, revoke the old key once the pods have rolled).

    Exports the attributes below (those of `ArtifactStore` but `bucket_arn`: there is no ARN); `endpoint` (how the
    consumers reach the store, an `S3Endpoint`) is not an output."""

    bucket_name: pulumi.Output[str]
    prefixes: dict[str, str]
    """Consumer -> its key prefix."""
    rotation_annotations: dict[str, pulumi.Output[str]]
    """Consumer -> a value that changes with its key in use, for pod templates (no secret in it)."""
    rotation_period: int
    """Always 0: the keys rotate at the store, by switching slots."""
    active_key_ids: dict[str, pulumi.Output[str]]
    """Consumer -> the access key id in use (secret)."""

    def __init__(self, name: str, args: S3CompatibleStoreArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlops:platform:S3CompatibleStore", name, None, opts)
        missing = sorted(set(args.consumers) - set(args.credentials))
        if missing:
            raise ValueError(f"S3-compatible store: no credentials for {', '.join(missing)}")
        self.endpoint: S3Endpoint = S3Endpoint(
            args.endpoint, args.region, args.path_style, args.ca_certificate is not None
        )
        self.rotation_period = 0
        self.rotation_annotations = {}
        self.active_key_ids = {}
        for consumer, spec in args.consumers.items():
            creds = args.credentials[consumer]
            client_config = self._client_config(name, args, consumer, spec)
            self.active_key_ids[consumer] = pulumi.Output.secret(creds.access_key_id)
            secret = self._credentials(name, consumer, spec, creds, client_config)
            self.rotation_annotations[consumer] = self._rotation_annotation(consumer, creds, secret)
        self.bucket_name = pulumi.Output.from_input(args.bucket)
        self.prefixes = {consumer: spec.prefix for consumer, spec in args.consumers.items()}
        self.register_outputs(
            {
                "bucket_name": self.bucket_name,
                "prefixes": self.prefixes,
                "rotation_annotations": self.rotation_annotations,
                "rotation_period": self.rotation_period,
                "active_key_ids": self.active_key_ids,
            }
        )

    def _client_config(self, name: str, args: S3CompatibleStoreArgs, consumer: str, spec: Consumer) -> ConfigMap:
        """The consumer's namespace's ConfigMap with the store's CA and the AWS config file (nothing secret)."""
        data = {contract.S3_AWS_CONFIG_KEY: aws_config_file(args.region, self.endpoint.addressing_style)}
        if args.ca_certificate is not None:
            data[contract.S3_CA_KEY] = args.ca_certificate
        return ConfigMap(
            f"{name}-{consumer}-client-config",
            metadata=ObjectMetaArgs(
                name=self.endpoint.configmap, namespace=spec.namespace.output, labels=labels(component="s3-client")
            ),
            data=data,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _credentials(
        self, name: str, consumer: str, spec: Consumer, creds: StoreCredentials, client_config: ConfigMap
    ) -> Secret:
        """The Secret in the consumer's namespace holding the key in use, in the consumer's format."""
        key_id: pulumi.Output[str] = pulumi.Output.secret(creds.access_key_id)
        secret: pulumi.Output[str] = pulumi.Output.secret(creds.secret_access_key)
        string_data: dict[str, pulumi.Input[str]] = {
            contract.AWS_ACCESS_KEY_ID.name: key_id,
            contract.AWS_SECRET_ACCESS_KEY.name: secret,
            # boto's shared credentials file (AWS_SHARED_CREDENTIALS_FILE) for pods that mount the Secret as files
            AWS_CREDENTIALS_KEY: pulumi.Output.secret(
                pulumi.Output.all(key_id, secret).apply(lambda v: aws_credentials_ini(str(v[0]), str(v[1])))
            ),
        }
        if spec.secret_format == "airflow-connection":
            env = f"AIRFLOW_CONN_{spec.connection_id.upper()}"
            endpoint = self.endpoint
            string_data[env] = pulumi.Output.secret(
                pulumi.Output.all(key_id, secret).apply(lambda v: airflow_s3_connection(v[0], v[1], endpoint))
            )
        elif spec.secret_format != "aws-env":
            raise ValueError(f"unknown secret format {spec.secret_format!r}")
        return Secret(
            f"{name}-{consumer}-credentials",
            metadata=ObjectMetaArgs(
                name=spec.secret_name, namespace=spec.namespace.output, labels=labels(rotation="s3-key")
            ),
            type="Opaque",
            string_data=string_data,
            # the pods that read the Secret mount the ConfigMap too: both exist before the pods roll
            opts=pulumi.ResourceOptions(parent=self, depends_on=[client_config]),
        )

    def _rotation_annotation(self, consumer: str, creds: StoreCredentials, credentials: Secret) -> pulumi.Output[str]:
        """Changes whenever the key in use changes (its slot, id or secret), reveals nothing; derived from the
        Secret too, so a workload carrying it rolls only once the Secret holds the new key."""
        marker = f"{consumer}/slot-{creds.slot}"
        parts = pulumi.Output.all(creds.access_key_id, creds.secret_access_key, credentials.id)
        return pulumi.Output.unsecret(
            parts.apply(lambda v: _rotation_marker(f"{v[0]}/{hashlib.sha256(str(v[1]).encode()).hexdigest()}", marker))
        )
