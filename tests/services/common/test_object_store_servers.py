"""The application layer against an S3 endpoint that is not AWS, configured only through services.common.object_store
(as the program configures the pods): moto's S3 server over https with a certificate of a private CA, which no
client trusts unless given that CA.

- MLflow's server, with proxied artifacts in s3://artifacts/mlflow on that endpoint (its environment from
  `client_env`: endpoint, CA bundle, region; a key), logs a model, registers it, and a client downloads it back;
  the files are in the bucket under the prefix.
- The serving service loads that model from that MLflow and answers a prediction. Clients of MLflow get
  `proxied_client_env()`: MLflow 3.17's clients otherwise fetch artifacts straight from the store by presigned URLs
  (and, without the CA, retry for minutes).
- Airflow's remote task logs: with remote logging on and the `aws` connection from `airflow_connection` (extra:
  endpoint_url, region_name, verify = the CA path), the handler the task supervisor uploads with puts a task's log
  in s3://logs/airflow-logs/... and the reader the API server uses reads it back.

Each needs PostgreSQL, moto, MLflow, the serving process or Airflow, and fails when one cannot start.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from devstack.mlflow_server import mlflow_server
from devstack.models import RegisteredVersion, iris_rows, train_and_register
from devstack.moto import DUMMY_KEY, MotoS3, TlsFiles, moto_s3
from devstack.postgres import fresh_database
from devstack.procs import DevstackError, env_with_venv
from devstack.serving import serving_service
from services.common import contract
from services.common.object_store import airflow_connection, client_env, key_env, proxied_client_env

pytestmark = pytest.mark.servers

ARTIFACTS, LOGS = "artifacts", "logs"
MLFLOW_PREFIX, LOG_PREFIX = "mlflow", "airflow-logs"
S3_NAMES = {var.name for var in (*contract.OBJECT_STORE_VARS, *contract.S3_KEY_VARS)}


def private_ca_files(folder: Path) -> TlsFiles:
    """A CA of its own and a server certificate it signed for 127.0.0.1, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "object store test CA")])

    def builder(subject: x509.Name, public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )

    ca = (
        builder(ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server = (
        builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]), key.public_key())
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    files = TlsFiles(cert=folder / "tls.crt", key=folder / "tls.key", ca=folder / "ca.crt")
    files.ca.write_bytes(ca.public_bytes(pem))
    files.cert.write_bytes(server.public_bytes(pem))
    files.key.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return files


def without_s3_vars(env: dict[str, str]) -> dict[str, str]:
    """`env` without any S3 variable: what a consumer gets is only what the functions under test give it."""
    return {k: v for k, v in env.items() if k not in S3_NAMES and not k.startswith("AWS_")}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    folder = tmp_path_factory.mktemp("s3-compatible")
    try:
        with moto_s3([ARTIFACTS, LOGS], tls=private_ca_files(folder), log_path=folder / "moto.log") as server:
            yield server
    except DevstackError as exc:
        pytest.fail(f"moto's S3 server over https could not start: {exc}")


def test_the_endpoint_is_trusted_only_with_its_ca(store: MotoS3) -> None:
    import boto3
    from botocore.exceptions import SSLError

    assert store.endpoint_url.startswith("https://")
    untrusting = boto3.client(
        "s3", endpoint_url=store.endpoint_url, region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b"
    )
    with pytest.raises(SSLError):
        untrusting.list_buckets()
    assert {b["Name"] for b in store.client().list_buckets()["Buckets"]} >= {ARTIFACTS, LOGS}


@dataclass(frozen=True)
class Registry:
    tracking_uri: str
    model: RegisteredVersion


@pytest.fixture(scope="module")
def registry(store: MotoS3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """MLflow on PostgreSQL, its proxied artifacts in s3://artifacts/mlflow, its S3 settings from object_store;
    one iris model trained through the runner, registered with the alias champion."""
    logs = tmp_path_factory.mktemp("mlflow")
    s3_env = {**client_env(store.store()), **key_env(*DUMMY_KEY)}
    try:
        with (
            pytest.MonkeyPatch.context() as patch,
            fresh_database("object_store") as database_url,
            mlflow_server(
                database_url, f"s3://{ARTIFACTS}/{MLFLOW_PREFIX}", s3_env=s3_env, log_path=logs / "mlflow.log"
            ) as server,
        ):
            for name, value in proxied_client_env().items():  # this process is an MLflow client too, as the DAGs are
                patch.setenv(name, value)
            model = train_and_register(server.tracking_uri, f"s3c-{uuid.uuid4().hex[:8]}", alias="champion")
            yield Registry(server.tracking_uri, model)
    except DevstackError as exc:
        pytest.fail(f"MLflow with artifacts on the S3-compatible store could not start: {exc}")


def test_mlflow_keeps_the_model_in_the_store_and_gives_it_back(
    store: MotoS3, registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    for name, value in proxied_client_env().items():  # as the serving and Airflow pods get it
        monkeypatch.setenv(name, value)
    client = mlflow.MlflowClient(registry.tracking_uri)
    version = client.get_model_version_by_alias(registry.model.name, "champion")
    assert version.version == registry.model.version
    local = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{registry.model.name}@champion",
            dst_path=str(tmp_path),
            tracking_uri=registry.tracking_uri,
        )
    )
    assert (local / "MLmodel").is_file()
    listed = store.client().list_objects_v2(Bucket=ARTIFACTS, Prefix=f"{MLFLOW_PREFIX}/")
    keys = [o["Key"] for o in listed.get("Contents", [])]
    assert any(k.endswith("/MLmodel") for k in keys), keys
    stored = next(k for k in keys if k.endswith("/MLmodel"))
    body = store.client().get_object(Bucket=ARTIFACTS, Key=stored)["Body"].read()
    assert body == (local / "MLmodel").read_bytes()


def test_serving_loads_the_model_and_predicts(registry: Registry, tmp_path: Path) -> None:
    with serving_service(
        registry.tracking_uri,
        registry.model.name,
        aliases=["champion"],
        extra_env=proxied_client_env(),
        log_path=tmp_path / "serving.log",
        start_timeout=600,  # a cold model load takes minutes on a loaded machine
    ) as service:
        answer = httpx.post(f"{service.base_url}/predict", json={"rows": iris_rows(2)}, timeout=30)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["version"] == registry.model.version, body
    assert len(body["predictions"]) == 2, body


# Run in a fresh interpreter with the Airflow pod's environment: the remote log handler the task supervisor uploads
# with (airflow.sdk.log), then the reader the API server serves task logs with (airflow.logging_config).
LOG_PROBE = textwrap.dedent(
    """
    import json, pathlib, sys
    from airflow.configuration import conf
    relative = sys.argv[1]
    local = pathlib.Path(conf.get("logging", "base_log_folder")) / relative
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_text(sys.argv[2] + "\\n")
    from airflow.sdk.log import load_remote_log_handler
    load_remote_log_handler().upload(relative, None)
    from airflow.logging_config import get_remote_task_log
    sources, logs = get_remote_task_log().read(relative, None)
    print(json.dumps({"sources": list(sources), "logs": list(logs or [])}))
    """
)


def test_airflow_task_logs_go_to_the_store_and_read_back(store: MotoS3, tmp_path: Path) -> None:
    marker = f"task log line {uuid.uuid4().hex}"
    relative = f"dag_id=probe/run_id=manual__{uuid.uuid4().hex[:8]}/task_id=say/attempt=1.log"
    env = without_s3_vars(env_with_venv())
    env.update(
        {
            "AIRFLOW_HOME": str(tmp_path / "airflow"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(tmp_path / "logs"),
            "AIRFLOW__LOGGING__REMOTE_LOGGING": "True",
            "AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER": f"s3://{LOGS}/{LOG_PREFIX}",
            "AIRFLOW__LOGGING__REMOTE_LOG_CONN_ID": "aws_logs",
            "AIRFLOW_CONN_AWS_LOGS": airflow_connection(store.store(), *DUMMY_KEY),
        }
    )
    proc = subprocess.run(
        [sys.executable, "-c", LOG_PROBE, relative, marker],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    stored = store.client().get_object(Bucket=LOGS, Key=f"{LOG_PREFIX}/{relative}")["Body"].read().decode()
    assert marker in stored
    read_back = json.loads(proc.stdout.strip().splitlines()[-1])
    assert read_back["sources"] == [f"s3://{LOGS}/{LOG_PREFIX}/{relative}"]
    assert any(marker in text for text in read_back["logs"]), read_back
