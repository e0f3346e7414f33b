"""The S3 endpoint settings of every consumer, offline: an ObjectStore rejects endpoints, regions and CA paths no
client could use; `client_env` gives MLflow's and boto3's own variables (nothing but the region on AWS), and a real
boto3 client built from exactly that environment addresses the custom endpoint path-style; the Airflow connection
is read by the Amazon provider's own parser into that endpoint, region and CA path. (The same functions against a
real S3-compatible server with its own CA: test_object_store_servers.py.)"""

from __future__ import annotations

import json

import pytest

from services.common import contract
from services.common.object_store import (
    ObjectStore,
    ObjectStoreError,
    airflow_connection,
    airflow_connection_extra,
    client_env,
    key_env,
)

MINIO = ObjectStore(endpoint_url="https://minio.example.internal:9000/", region="eu-1", ca_bundle="/etc/s3-ca/ca.crt")


def test_aws_needs_the_region_only() -> None:
    assert client_env(ObjectStore(region="eu-west-1")) == {"AWS_DEFAULT_REGION": "eu-west-1"}
    assert airflow_connection_extra(ObjectStore(region="eu-west-1")) == {"region_name": "eu-west-1"}
    assert ObjectStore().is_aws and not MINIO.is_aws


def test_an_s3_compatible_store_gives_endpoint_ca_and_region_in_the_consumers_names() -> None:
    assert client_env(MINIO) == {
        "MLFLOW_S3_ENDPOINT_URL": "https://minio.example.internal:9000",
        "AWS_ENDPOINT_URL_S3": "https://minio.example.internal:9000",
        "AWS_CA_BUNDLE": "/etc/s3-ca/ca.crt",
        "AWS_DEFAULT_REGION": "eu-1",
    }
    assert set(client_env(MINIO)) == {var.name for var in contract.OBJECT_STORE_VARS}
    assert not any(var.secret for var in contract.OBJECT_STORE_VARS), "these go into ConfigMaps"
    assert key_env("AK", "SK") == {"AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK"}
    assert [var.secret for var in contract.S3_KEY_VARS] == [False, True]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"endpoint_url": "minio:9000"}, "http\\(s\\) URL with a host"),
        ({"endpoint_url": "ftp://minio:9000"}, "http\\(s\\) URL with a host"),
        ({"endpoint_url": "https://"}, "http\\(s\\) URL with a host"),
        ({"endpoint_url": "https://minio:9000/bucket"}, "bucket is not part of it"),
        ({"endpoint_url": "https://minio:9000?x=1"}, "root URL"),
        ({"region": ""}, "region"),
        ({"region": "eu west"}, "region"),
        ({"endpoint_url": "https://minio:9000", "ca_bundle": "ca.crt"}, "absolute path"),
        ({"endpoint_url": "http://minio:9000", "ca_bundle": "/ca.crt"}, "only used with an https endpoint"),
        ({"ca_bundle": "/ca.crt"}, "only used with an https endpoint"),
    ],
)
def test_unusable_settings_are_rejected(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ObjectStoreError, match=message):
        ObjectStore(**kwargs)  # type: ignore[arg-type]


def test_boto3_built_from_the_environment_alone_uses_the_endpoint_path_style(monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    for var in contract.ALL_VARS:
        monkeypatch.delenv(var.name, raising=False)
    store = ObjectStore(endpoint_url="http://minio.example.internal:9000", region="eu-1")
    for name, value in {**client_env(store), **key_env("AK", "SK")}.items():
        monkeypatch.setenv(name, value)
    client = boto3.session.Session().client("s3")
    assert client.meta.endpoint_url == "http://minio.example.internal:9000"
    assert client.meta.region_name == "eu-1"
    url = client.generate_presigned_url("get_object", Params={"Bucket": "artifacts", "Key": "a/b.txt"})
    assert url.startswith("http://minio.example.internal:9000/artifacts/a/b.txt?"), url  # path-style, not bucket.host


def test_the_airflow_connection_is_what_the_amazon_provider_reads() -> None:
    from airflow.models.connection import Connection
    from airflow.providers.amazon.aws.utils.connection_wrapper import AwsConnectionWrapper

    value = airflow_connection(MINIO, "AK/+", "S3cr:t@")
    assert json.loads(value)["conn_type"] == "aws"
    wrapper = AwsConnectionWrapper(conn=Connection.from_json(value, conn_id="aws_logs"))
    assert (wrapper.endpoint_url, wrapper.region_name, wrapper.verify) == (
        "https://minio.example.internal:9000",
        "eu-1",
        "/etc/s3-ca/ca.crt",
    )
    assert (wrapper.aws_access_key_id, wrapper.aws_secret_access_key) == ("AK/+", "S3cr:t@")
