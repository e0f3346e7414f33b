"""`artifacts.mode: s3Compatible` settings (an existing S3-compatible store such as MinIO): Pulumi.onprem.yaml loads
with its endpoint, bucket and each consumer's key in use (the secret keys as `Secret`s); each violating configuration
is refused with the exact message naming the stack file and the key (a missing or non-https endpoint, a bad CA, a
secret key in plaintext, an incomplete or empty active slot, keys of one mode set in the other); the AWS provider is
needed only by stacks that create something on AWS."""

from __future__ import annotations

import pytest

from harness.run import read_stack_file
from stacks.settings import Secret, SettingsError, StackSettings, load_settings

P = "mlops-platform:"
SRC = "Pulumi.onprem.yaml: "


def _load(changes: dict[str, str | None], secret: tuple[str, ...] = ()) -> StackSettings:
    cfg = read_stack_file("onprem")
    config = dict(cfg.config)
    for key, value in changes.items():
        if value is None:
            config.pop(P + key, None)
        else:
            config[P + key] = value
    return load_settings("onprem", config, {*cfg.secret_keys, *(P + k for k in secret)}, cfg.source)


def _problems(changes: dict[str, str | None], secret: tuple[str, ...] = ()) -> list[str]:
    with pytest.raises(SettingsError) as err:
        _load(changes, secret)
    return err.value.problems


def test_the_onprem_stack_reads_the_store_and_each_consumers_key_in_use() -> None:
    s = _load({})
    a = s.artifacts
    assert (a.mode, a.endpoint, a.bucket, a.region, a.path_style) == (
        "s3Compatible",
        "https://minio.corp.example.com:9000",
        "mlops-onprem-artifacts",
        "us-east-1",
        True,
    )
    assert a.endpoint_port == 9000 and a.cidr == "10.60.20.0/24"
    assert a.ca_certificate is not None and a.ca_certificate.startswith("-----BEGIN CERTIFICATE-----")
    for consumer in ("mlflow", "airflow", "loki"):
        key = a.active_key(consumer)
        assert key.slot == "a" and key.access_key_id == f"mlops-onprem-{consumer}-a"
        assert isinstance(key.secret_access_key, Secret) and "harness" not in repr(key.secret_access_key)
        assert a.slot_key(consumer, "b") is None
    assert not s.uses_aws


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"artifacts.endpoint": None}, "artifacts.endpoint is required when artifacts.mode is s3Compatible"),
        ({"artifacts.bucket": None}, "artifacts.bucket is required when artifacts.mode is s3Compatible"),
        ({"artifacts.cidr": None}, "artifacts.cidr is required when artifacts.mode is s3Compatible"),
        (
            {"artifacts.endpoint": "http://minio:9000"},
            "artifacts.endpoint must be an https:// URL such as https://minio.example.com:9000 (TLS is required); "
            'got "http://minio:9000"',
        ),
        (
            {"artifacts.endpoint": "https://minio.example.com/bucket"},
            "artifacts.endpoint must be the store's base URL, without a path (the bucket is artifacts.bucket); "
            'got "https://minio.example.com/bucket"',
        ),
        (
            {"artifacts.endpoint": "https://minio.example.com:99999"},
            'artifacts.endpoint must have a valid port (1-65535); got "https://minio.example.com:99999"',
        ),
        (
            {"artifacts.endpoint": "https://user:pw@minio.example.com"},
            "artifacts.endpoint must name a host (and port), without credentials: https://<host>[:<port>]",
        ),
        (
            {"artifacts.caCertificate": "not a certificate"},
            "artifacts.caCertificate must be PEM certificate(s) (-----BEGIN CERTIFICATE-----)",
        ),
        ({"artifacts.bucket": "Artifacts"}, "artifacts.bucket must match"),
        ({"artifacts.cidr": "0.0.0.0/0"}, "artifacts.cidr must be a CIDR block such as 10.20.0.0/24"),
        (
            {"artifacts.credentials.mlflow.active": "c"},
            'artifacts.credentials.mlflow.active must be one of a, b; got "c"',
        ),
        (
            {"artifacts.credentials.airflow.active": "b"},
            "artifacts.credentials.airflow.b.accessKeyId is required when artifacts.credentials.airflow.active is b "
            "(artifacts.mode is s3Compatible)",
        ),
        (
            {"artifacts.credentials.loki.a.accessKeyId": None},
            "artifacts.credentials.loki.a.accessKeyId is required: artifacts.credentials.loki.a.secretAccessKey is "
            "set (a slot holds both or neither)",
        ),
        (
            {"artifacts.kmsKeyArn": "arn:aws:kms:eu-west-1:123456789012:key/abc"},
            "artifacts.kmsKeyArn is an AWS setting: unset it when artifacts.mode is s3Compatible",
        ),
        (
            {"artifacts.mode": "s3"},
            "artifacts.endpoint is only read when artifacts.mode is s3Compatible (it is s3)",
        ),
    ],
)
def test_each_store_problem_names_the_stack_file_and_the_key(changes: dict[str, str | None], expected: str) -> None:
    problems = _problems(changes)
    assert any(p.startswith(SRC + P + expected) for p in problems), problems


def test_an_active_slot_left_empty_names_both_its_keys() -> None:
    problems = _problems({"artifacts.credentials.mlflow.a.accessKeyId": None}, ())
    # slot a still has its secret: it is incomplete; switching to an empty b names both of b's keys
    assert any("artifacts.credentials.mlflow.a.accessKeyId is required: " in p for p in problems)
    problems = _problems({"artifacts.credentials.mlflow.active": "b"})
    assert [p.removeprefix(SRC + P).split(" is required")[0] for p in problems] == [
        "artifacts.credentials.mlflow.b.accessKeyId",
        "artifacts.credentials.mlflow.b.secretAccessKey",
    ]


def test_a_secret_key_in_plaintext_is_refused_without_showing_it() -> None:
    cfg = read_stack_file("onprem")
    key = P + "artifacts.credentials.mlflow.a.secretAccessKey"
    config = {**cfg.config, key: "minio-secret-123"}
    with pytest.raises(SettingsError) as err:
        load_settings("onprem", config, set(cfg.secret_keys) - {key}, cfg.source)
    assert err.value.problems == [
        f"{SRC}{key} is a secret; store it with `pulumi config set --secret "
        "artifacts.credentials.mlflow.a.secretAccessKey ...` (it is in plaintext now)"
    ]
    assert "minio-secret-123" not in str(err.value)


def test_both_slots_filled_is_a_rotation_in_progress_and_loki_needs_no_key_without_observability() -> None:
    b = {
        "artifacts.credentials.mlflow.b.accessKeyId": "mlops-onprem-mlflow-b",
        "artifacts.credentials.mlflow.b.secretAccessKey": "b-secret",
        "artifacts.credentials.mlflow.active": "b",
    }
    s = _load(b, secret=("artifacts.credentials.mlflow.b.secretAccessKey",))
    assert s.artifacts.active_key("mlflow").access_key_id == "mlops-onprem-mlflow-b"
    assert s.artifacts.active_key("mlflow").secret_access_key == Secret("b-secret")
    assert s.artifacts.slot_key("mlflow", "a") is not None  # the outgoing key, still valid at the store
    no_loki = {
        "observability.enabled": "false",
        "artifacts.credentials.loki.a.accessKeyId": None,
        "artifacts.credentials.loki.a.secretAccessKey": None,
    }
    assert _load(no_loki).artifacts.slot_key("loki", "a") is None


def test_store_keys_are_refused_on_aws_and_only_aws_stacks_need_the_aws_provider() -> None:
    cfg = read_stack_file("dev")
    config = {**cfg.config, P + "artifacts.bucket": "mine", P + "artifacts.credentials.mlflow.a.accessKeyId": "key-1"}
    with pytest.raises(SettingsError) as err:
        load_settings("dev", config, set(cfg.secret_keys))
    assert err.value.problems == [
        "Pulumi.dev.yaml: mlops-platform:artifacts.bucket is only read when artifacts.mode is s3Compatible (it is s3)",
        "Pulumi.dev.yaml: mlops-platform:artifacts.credentials.mlflow.a.accessKeyId is only read when artifacts.mode "
        "is s3Compatible (it is s3)",
    ]
    dev = load_settings("dev", cfg.config, set(cfg.secret_keys))
    assert dev.uses_aws  # the bucket
    assert _load(
        {
            "database.mode": "rds",
            "database.vpcId": "vpc-0a1b",
            "database.subnetIds": "subnet-1,subnet-2",
            "database.allowedCidrs": "10.0.0.0/16",
        }
    ).uses_aws  # RDS with an on-premises store still needs AWS
