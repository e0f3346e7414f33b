"""`S3CompatibleStore` (components/artifact_store.py), an existing S3-compatible store: under mocks it creates no AWS
resource, only per consumer the Secret with the key of its slot in use (every value secret, in the consumer's format:
the Airflow connection carries the endpoint, region, CA and addressing) and the client ConfigMap (the CA, the AWS
config file); the rotation annotation changes with the key in use (slot, id, secret), reveals none of it, and waits
for the Secret; the endpoint helpers give each client its own variables (contract names)."""

from __future__ import annotations

import json

import pulumi
import pytest

from components.artifact_store import (
    Consumer,
    S3CompatibleStore,
    S3CompatibleStoreArgs,
    S3Endpoint,
    StoreCredentials,
    airflow_s3_connection,
    aws_config_file,
)
from components.namespaces import NamespaceRef
from harness.mocks import SecretValue, reveal
from harness.run import ProgramRun, run_under_mocks
from services.common import contract

URL = "https://minio.corp.example.com:9000"
CA = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUY2E=\n-----END CERTIFICATE-----\n"
CONSUMERS = {
    "mlflow": Consumer("mlflow/", NamespaceRef("ns-mlflow"), "mlflow-s3-credentials", "aws-env"),
    "airflow": Consumer("airflow-logs/", NamespaceRef("ns-airflow"), "airflow-s3-logs", "airflow-connection", "logs"),
}


def _keys(slot: str = "a", secret: str = "s3cr3t-a") -> dict[str, StoreCredentials]:
    return {
        c: StoreCredentials(slot, pulumi.Output.secret(f"{c}-{slot}"), pulumi.Output.secret(f"{c}-{secret}"))
        for c in CONSUMERS
    }


def _run(slot: str = "a", secret: str = "s3cr3t-a", ca: str | None = CA, path_style: bool = True) -> ProgramRun:
    def body() -> None:
        S3CompatibleStore(
            "artifacts",
            S3CompatibleStoreArgs(
                bucket="mlops-artifacts",
                endpoint=URL,
                region="us-east-1",
                path_style=path_style,
                consumers=CONSUMERS,
                credentials=_keys(slot, secret),
                ca_certificate=ca,
            ),
        )

    return run_under_mocks("dev", body)


def _object(run: ProgramRun, kind: str, namespace: str) -> dict[str, object]:
    (found,) = [
        r
        for r in run.kubernetes_objects()
        if r.manifest["kind"] == kind and r.manifest["metadata"]["namespace"] == namespace
    ]
    return found.inputs


def _all_secret(data: object) -> bool:
    """Secret as a whole, or every value secret."""
    return isinstance(data, SecretValue) or all(isinstance(v, SecretValue) for v in dict(data).values())  # type: ignore[call-overload]


def test_only_kubernetes_objects_no_aws_resource() -> None:
    run = _run()
    types = sorted({r.type for r in run.registrations})
    assert types == [
        "kubernetes:core/v1:ConfigMap",
        "kubernetes:core/v1:Secret",
        "mlops:platform:S3CompatibleStore",
    ]
    store = run.named("artifacts")
    assert reveal(store.registered_outputs)["bucket_name"] == "mlops-artifacts"
    assert all(isinstance(v, SecretValue) for v in store.registered_outputs["active_key_ids"].values())


def test_each_consumers_secret_holds_its_key_in_use_every_value_secret() -> None:
    run = _run()
    mlflow = _object(run, "Secret", "ns-mlflow")
    assert mlflow["metadata"]["name"] == "mlflow-s3-credentials"
    data = mlflow["stringData"]
    assert _all_secret(data)
    assert reveal(data) == {
        "AWS_ACCESS_KEY_ID": "mlflow-a",
        "AWS_SECRET_ACCESS_KEY": "mlflow-s3cr3t-a",
        contract.AWS_CREDENTIALS_KEY: contract.aws_credentials_ini("mlflow-a", "mlflow-s3cr3t-a"),
    }
    airflow = _object(run, "Secret", "ns-airflow")["stringData"]
    assert _all_secret(airflow)
    conn = json.loads(reveal(airflow)["AIRFLOW_CONN_LOGS"])
    assert conn == {
        "conn_type": "aws",
        "login": "airflow-a",
        "password": "airflow-s3cr3t-a",
        "extra": {
            "region_name": "us-east-1",
            "endpoint_url": URL,
            "verify": f"{contract.S3_CLIENT_MOUNT}/{contract.S3_CA_KEY}",
            "config_kwargs": {"s3": {"addressing_style": "path"}},
        },
    }


def test_the_client_configmap_carries_the_ca_and_the_addressing_and_nothing_secret() -> None:
    run = _run()
    data = _object(run, "ConfigMap", "ns-airflow")["data"]
    assert data[contract.S3_CA_KEY] == CA
    assert data[contract.S3_AWS_CONFIG_KEY] == aws_config_file("us-east-1", "path")
    assert "s3cr3t" not in json.dumps(reveal(data))
    no_ca = _object(_run(ca=None, path_style=False), "ConfigMap", "ns-mlflow")["data"]
    assert set(no_ca) == {contract.S3_AWS_CONFIG_KEY} and "addressing_style = virtual" in no_ca["aws-config"]


def _annotations(run: ProgramRun) -> dict[str, object]:
    return reveal(run.named("artifacts").registered_outputs)["rotation_annotations"]


def test_the_rotation_annotation_follows_the_key_in_use_and_reveals_none_of_it() -> None:
    first = _annotations(_run())
    assert not any(isinstance(v, SecretValue) for v in first.values())
    assert all(len(str(v)) == 16 and "s3cr3t" not in str(v) and "-a" not in str(v) for v in first.values())
    assert _annotations(_run()) == first  # stable while nothing changes
    switched = _annotations(_run(slot="b"))
    resecret = _annotations(_run(secret="s3cr3t-new"))
    for consumer in CONSUMERS:
        assert len({first[consumer], switched[consumer], resecret[consumer]}) == 3


def test_the_secret_waits_for_the_configmap_its_pods_mount() -> None:
    run = _run()
    secret = next(r for r in run.of_type("kubernetes:core/v1:Secret") if r.name == "artifacts-mlflow-credentials")
    configmap = run.named("artifacts-mlflow-client-config")
    assert configmap.urn in secret.dependencies


def test_a_consumer_without_credentials_is_refused() -> None:
    def body() -> None:
        S3CompatibleStore(
            "artifacts",
            S3CompatibleStoreArgs("b", URL, "us-east-1", True, CONSUMERS, {"mlflow": _keys()["mlflow"]}),
        )

    with pytest.raises(Exception, match="no credentials for airflow"):
        run_under_mocks("dev", body)


def test_each_client_gets_its_own_variables() -> None:
    endpoint = S3Endpoint(URL, "us-east-1", path_style=True, has_ca=True)
    ca = f"{contract.S3_CLIENT_MOUNT}/{contract.S3_CA_KEY}"
    assert endpoint.host == "minio.corp.example.com:9000"
    assert endpoint.mlflow_env() == {
        contract.MLFLOW_S3_ENDPOINT_URL.name: URL,
        contract.MLFLOW_S3_ADDRESSING_STYLE.name: "path",
        contract.AWS_CA_BUNDLE.name: ca,
    }
    assert endpoint.boto_env() == {
        contract.AWS_ENDPOINT_URL_S3.name: URL,
        contract.AWS_CA_BUNDLE.name: ca,
        contract.AWS_CONFIG_FILE.name: f"{contract.S3_CLIENT_MOUNT}/{contract.S3_AWS_CONFIG_KEY}",
    }
    assert contract.AWS_CA_BUNDLE.name not in S3Endpoint(URL, "r", path_style=False, has_ca=False).boto_env()
    conn = json.loads(airflow_s3_connection("k", "s", S3Endpoint(URL, "r", path_style=False, has_ca=False)))
    assert "verify" not in conn["extra"] and conn["extra"]["config_kwargs"] == {"s3": {"addressing_style": "virtual"}}
