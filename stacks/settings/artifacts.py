"""Settings group `artifacts.*`: the S3 artifact store."""

from __future__ import annotations

from dataclasses import dataclass

from stacks.settings.engine import by_env, setting


@dataclass(frozen=True)
class ArtifactSettings:
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
