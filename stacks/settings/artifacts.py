"""Settings group `artifacts.*`: the artifact store, an S3 bucket the program creates on AWS (`s3`) or a bucket of an
existing S3-compatible store such as MinIO or Ceph RGW (`s3Compatible`), with two credential slots per consumer."""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any, Literal

from stacks.settings.engine import DNS_NAME, Secret, by_env, check_cidrs, check_pem, setting

# The workloads that read and write the store, each with its own credentials: MLflow (proxied artifacts: the serving
# loader and the training code reach artifacts through it), Airflow (remote task logs, and the training task pods
# reading s3:// datasets) and Loki (central logs, with observability.enabled).
CONSUMERS = ("mlflow", "airflow", "loki")
SLOTS = ("a", "b")
CREDENTIALS_PREFIX = "artifacts.credentials."


def credential_key(consumer: str, part: str, slot: str | None = None) -> str:
    """`artifacts.credentials.<consumer>.active`, or `artifacts.credentials.<consumer>.<slot>.<part>`."""
    return f"{CREDENTIALS_PREFIX}{consumer}.{part}" if slot is None else f"{CREDENTIALS_PREFIX}{consumer}.{slot}.{part}"


def _check_endpoint(value: str) -> str | None:
    """An https URL of a host (and port), nothing else: the S3 API's base URL."""
    parsed = urllib.parse.urlsplit(value)
    if parsed.scheme != "https":
        return "must be an https:// URL such as https://minio.example.com:9000 (TLS is required)"
    try:
        port = parsed.port
    except ValueError:
        return "must have a valid port (1-65535)"
    host = parsed.hostname or ""
    if not host or (port is not None and port == 0) or parsed.username or parsed.password:
        return "must name a host (and port), without credentials: https://<host>[:<port>]"
    if parsed.path.strip("/") or parsed.query or parsed.fragment:
        return "must be the store's base URL, without a path (the bucket is artifacts.bucket)"
    if not re.match(DNS_NAME, host) and not _is_ip(host):
        return "must name a DNS name or an IP address"
    return None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _active(consumer: str) -> Any:
    return setting(
        credential_key(consumer, "active"),
        f"s3Compatible: the credential slot ({' or '.join(SLOTS)}) whose key {consumer} uses; rotate by filling the "
        "other slot and switching (docs/on-premises.md)",
        default="a",
        choices=SLOTS,
    )


def _key_id(consumer: str, slot: str) -> Any:
    return setting(
        credential_key(consumer, "accessKeyId", slot),
        f"s3Compatible: access key id of {consumer}'s slot {slot}",
        pattern=r"^[A-Za-z0-9._~+=/-]{3,128}$",
    )


def _secret_key(consumer: str, slot: str) -> Any:
    return setting(
        credential_key(consumer, "secretAccessKey", slot),
        f"s3Compatible: secret access key of {consumer}'s slot {slot} (secret)",
        secret=True,
    )


@dataclass(frozen=True)
class StoreKey:
    """One credential slot's access key of an S3-compatible store."""

    slot: str
    access_key_id: str
    secret_access_key: Secret


@dataclass(frozen=True)
class ArtifactSettings:
    mode: Literal["s3", "s3Compatible"] = setting(
        "artifacts.mode",
        "s3 = a bucket the program creates on AWS, with IAM users and rotating keys; s3Compatible = a bucket of an "
        "existing S3-compatible store (MinIO, Ceph RGW, ...) at artifacts.endpoint, with the configured keys (no "
        "AWS resource)",
        default="s3",
        choices=("s3", "s3Compatible"),
    )
    endpoint: str | None = setting(
        "artifacts.endpoint",
        "s3Compatible: the store's S3 API base URL, https://<host>[:<port>]",
        check=_check_endpoint,
    )
    ca_certificate: str | None = setting(
        "artifacts.caCertificate",
        "s3Compatible: PEM CA certificate(s) the store's certificate is checked against; unset = the images' "
        "public CAs",
        check=check_pem,
    )
    bucket: str | None = setting(
        "artifacts.bucket",
        "s3Compatible: the existing bucket (MLflow, Airflow logs and Loki each under their own prefix)",
        pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
    )
    region: str = setting(
        "artifacts.region",
        "s3Compatible: the region the store signs requests for (MinIO: its MINIO_SITE_REGION, default us-east-1)",
        default="us-east-1",
        pattern=r"^[a-z0-9][a-z0-9-]{0,62}$",
    )
    path_style: bool = setting(
        "artifacts.pathStyle",
        "s3Compatible: path-style requests (https://host/bucket/key), as MinIO expects unless it serves "
        "virtual-host buckets (MINIO_DOMAIN)",
        default=True,
    )
    cidr: str | None = setting(
        "artifacts.cidr",
        "s3Compatible: the store's address range, the only egress MLflow, Airflow and Loki get on the endpoint's port",
        check=lambda v: "must be a CIDR block such as 10.20.0.0/24" if check_cidrs([v]) else None,
    )
    mlflow_active: str = _active("mlflow")
    mlflow_a_access_key_id: str | None = _key_id("mlflow", "a")
    mlflow_a_secret_access_key: Secret | None = _secret_key("mlflow", "a")
    mlflow_b_access_key_id: str | None = _key_id("mlflow", "b")
    mlflow_b_secret_access_key: Secret | None = _secret_key("mlflow", "b")
    airflow_active: str = _active("airflow")
    airflow_a_access_key_id: str | None = _key_id("airflow", "a")
    airflow_a_secret_access_key: Secret | None = _secret_key("airflow", "a")
    airflow_b_access_key_id: str | None = _key_id("airflow", "b")
    airflow_b_secret_access_key: Secret | None = _secret_key("airflow", "b")
    loki_active: str = _active("loki")
    loki_a_access_key_id: str | None = _key_id("loki", "a")
    loki_a_secret_access_key: Secret | None = _secret_key("loki", "a")
    loki_b_access_key_id: str | None = _key_id("loki", "b")
    loki_b_secret_access_key: Secret | None = _secret_key("loki", "b")
    kms_key_arn: str | None = setting(
        "artifacts.kmsKeyArn",
        "SSE-KMS key for the bucket; unset = SSE-S3 (AES256)",
        pattern=r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:(key|alias)/.+$",
    )
    noncurrent_version_days: int = setting(
        "artifacts.noncurrentVersionDays",
        "days after which noncurrent object versions expire",
        default_fn=by_env(30, 90),
        minimum=1,
        maximum=3650,
    )
    abort_multipart_days: int = setting(
        "artifacts.abortMultipartDays",
        "days after which incomplete multipart uploads are aborted",
        default=7,
        minimum=1,
        maximum=365,
    )
    key_rotation_days: int = setting(
        "artifacts.keyRotationDays",
        "the stack's credential rotation period: IAM access keys and database passwords (each app's two login "
        "roles alternate); the previous key or password stays valid one more period",
        default_fn=by_env(30, 30),
        minimum=1,
        maximum=365,
    )

    @property
    def s3_compatible(self) -> bool:
        return self.mode == "s3Compatible"

    def active_slot(self, consumer: str) -> str:
        """The slot (a or b) whose key `consumer` (one of CONSUMERS) uses."""
        return str(getattr(self, f"{consumer}_active"))

    def slot_key(self, consumer: str, slot: str) -> StoreKey | None:
        """The key of one slot of `consumer`; None unless both its id and its secret are set."""
        key_id = getattr(self, f"{consumer}_{slot}_access_key_id")
        secret = getattr(self, f"{consumer}_{slot}_secret_access_key")
        return StoreKey(slot, key_id, secret) if key_id is not None and secret is not None else None

    def active_key(self, consumer: str) -> StoreKey:
        """The key `consumer` uses (load_settings refuses a stack whose active slot is incomplete)."""
        key = self.slot_key(consumer, self.active_slot(consumer))
        if key is None:
            raise ValueError(f"{credential_key(consumer, 'accessKeyId', self.active_slot(consumer))} is not set")
        return key

    @property
    def endpoint_port(self) -> int:
        """The port of artifacts.endpoint (443 unless it names one)."""
        return urllib.parse.urlsplit(self.endpoint or "").port or 443
