"""`artifacts.mode: s3Compatible` through the whole program (Pulumi.onprem.yaml under mocks): no AWS resource and no
AWS provider at all; every harness check passes and the policy pack passes it as a production stack; the Secrets each
consumer reads hold the configured key of its slot in use, secret everywhere and never in plaintext in an input,
output or export; the endpoint, region, addressing and CA reach every client of the store (MLflow's proxied
artifacts, Airflow's remote logs and its task pods, Loki); only MLflow, Airflow and monitoring get out to the store's
range on its port; switching a consumer's slot hands it the other key and rolls its pods."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import checks
from harness.mocks import SecretValue, reveal
from harness.run import ROOT, ProgramRun, run_program
from infra.data_layer import AIRFLOW_LOGS_CONN_ID, AIRFLOW_LOGS_SECRET, LOKI_S3_SECRET, MLFLOW_S3_SECRET
from policy.testing import analyze
from services.common import contract
from tests.infra.test_network_policies import Workload, allowed, rendered_pods, tcp
from tests.policy.adapter import resources_from_run

URL = "https://minio.corp.example.com:9000"
CA_PATH = f"{contract.S3_CLIENT_MOUNT}/{contract.S3_CA_KEY}"
CONFIG_PATH = f"{contract.S3_CLIENT_MOUNT}/{contract.S3_AWS_CONFIG_KEY}"
SECRET_OF = "harness-secret-value-for-mlops-platform:artifacts.credentials.{}.{}.secretAccessKey"


@pytest.fixture(scope="module")
def onprem(stack_run: Any) -> ProgramRun:
    run: ProgramRun = stack_run("onprem")
    return run


def _release(run: ProgramRun, chart: str) -> dict[str, Any]:
    return next(reveal(r.inputs)["values"] for r in run.helm_releases() if reveal(r.inputs)["chart"] == chart)


def _object(run: ProgramRun, kind: str, name: str, namespace: str) -> Any:
    (found,) = [
        r
        for r in run.kubernetes_objects()
        if r.manifest["kind"] == kind
        and r.manifest["metadata"]["name"] == name
        and r.manifest["metadata"]["namespace"] == namespace
    ]
    return found


def test_the_policy_pack_passes_it_as_a_production_stack(onprem: ProgramRun, monkeypatch: pytest.MonkeyPatch) -> None:
    """As `pulumi preview --policy-pack policy` runs it: the stack name and its config (environment prod)."""
    monkeypatch.setenv("PULUMI_STACK", "onprem")
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({"mlops-platform:environment": "prod"}))
    found = analyze(resources_from_run(onprem))
    assert found == []  # every image pinned by digest, as in prod


def test_nothing_on_aws_and_every_harness_check_passes(onprem: ProgramRun) -> None:
    aws = [f"{r.type} {r.name}" for r in onprem.registrations if r.type.startswith(("aws:", "pulumi:providers:aws"))]
    assert aws == []
    assert len(onprem.registrations) > 100  # the platform is there, on Kubernetes only
    assert {k: v for k, v in checks.all_problems(onprem, "1.30").items() if v} == {}
    assert onprem.exports["artifactBucket"].value == "mlops-onprem-artifacts"
    assert not onprem.exports["artifactBucket"].secret


@pytest.mark.parametrize(
    ("consumer", "secret", "namespace"),
    [
        ("mlflow", MLFLOW_S3_SECRET, "mlops-onprem-mlflow"),
        ("airflow", AIRFLOW_LOGS_SECRET, "mlops-onprem-airflow"),
        ("loki", LOKI_S3_SECRET, "mlops-onprem-monitoring"),
    ],
)
def test_each_consumers_secret_holds_its_configured_key_as_a_secret(
    onprem: ProgramRun, consumer: str, secret: str, namespace: str
) -> None:
    data = _object(onprem, "Secret", secret, namespace).inputs["stringData"]
    assert isinstance(data, SecretValue) or all(isinstance(v, SecretValue) for v in data.values())
    plain = reveal(data)
    assert plain["AWS_ACCESS_KEY_ID"] == f"mlops-onprem-{consumer}-a"
    assert plain["AWS_SECRET_ACCESS_KEY"] == SECRET_OF.format(consumer, "a")
    store = next(r for r in onprem.registrations if r.type == "mlops:platform:S3CompatibleStore")
    assert isinstance(store.registered_outputs["active_key_ids"][consumer], SecretValue)


def test_no_store_key_is_in_plaintext_anywhere(onprem: ProgramRun) -> None:
    assert checks.plaintext_secret_problems(onprem) == []
    plain = json.dumps([list(checks._plain_strings(r.inputs)) for r in onprem.registrations])
    assert "harness-secret-value-for-mlops-platform:artifacts" not in plain
    assert "harness-secret-value" not in json.dumps(
        {k: reveal(e.value) for k, e in onprem.exports.items() if not e.secret}
    )


def test_mlflow_reaches_the_store_through_its_endpoint_with_the_ca(onprem: ProgramRun) -> None:
    values = _release(onprem, "mlflow")
    env = values["extraEnvVars"]
    assert env[contract.MLFLOW_S3_ENDPOINT_URL.name] == URL
    assert env[contract.MLFLOW_S3_ADDRESSING_STYLE.name] == "path"
    assert env[contract.AWS_CA_BUNDLE.name] == CA_PATH and env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert values["artifactRoot"]["defaultArtifactsDestination"] == "s3://mlops-onprem-artifacts/mlflow"
    assert values["artifactRoot"]["proxiedArtifactStorage"] is True  # serving and training go through MLflow
    assert values["artifactRoot"]["s3"]["existingSecret"]["name"] == MLFLOW_S3_SECRET
    assert values["extraVolumes"] == [{"name": "s3-client", "configMap": {"name": contract.S3_CLIENT_CONFIGMAP}}]
    assert values["extraVolumeMounts"] == [
        {"name": "s3-client", "mountPath": contract.S3_CLIENT_MOUNT, "readOnly": True}
    ]


def test_airflow_logs_and_task_pods_reach_the_store(onprem: ProgramRun) -> None:
    values = _release(onprem, "airflow")
    env = {e["name"]: e["value"] for e in values["env"]}
    assert env[contract.AWS_ENDPOINT_URL_S3.name] == URL
    assert env[contract.AWS_CA_BUNDLE.name] == CA_PATH and env[contract.AWS_CONFIG_FILE.name] == CONFIG_PATH
    assert {"name": "s3-client", "configMap": {"name": contract.S3_CLIENT_CONFIGMAP}} in values["volumes"]
    assert {"name": "s3-client", "mountPath": contract.S3_CLIENT_MOUNT, "readOnly": True} in values["volumeMounts"]
    assert values["config"]["logging"]["remote_base_log_folder"] == "s3://mlops-onprem-artifacts/airflow-logs"
    conn_var = f"AIRFLOW_CONN_{AIRFLOW_LOGS_CONN_ID.upper()}"
    secret = reveal(_object(onprem, "Secret", AIRFLOW_LOGS_SECRET, "mlops-onprem-airflow").inputs["stringData"])
    extra = json.loads(secret[conn_var])["extra"]
    assert extra == {
        "endpoint_url": URL,
        "region_name": "us-east-1",
        "verify": CA_PATH,
        "config_kwargs": {"s3": {"addressing_style": "path"}},
    }


def test_loki_reaches_the_store_over_tls_with_the_ca(onprem: ProgramRun) -> None:
    values = _release(onprem, "loki")
    s3 = values["loki"]["storage"]["object_store"]["s3"]
    assert s3 == {
        "endpoint": "minio.corp.example.com:9000",
        "region": "us-east-1",
        "insecure": False,
        "bucket_lookup_type": "path",
        "http": {"tls_ca_path": CA_PATH},
    }
    assert values["loki"]["storage"]["bucketNames"] == {
        "chunks": "mlops-onprem-artifacts",
        "ruler": "mlops-onprem-artifacts",
    }
    # the key as boto's shared credentials file from the Loki consumer's Secret, the store's CA beside it
    single = values["singleBinary"]
    assert "extraEnvFrom" not in single
    (credentials,) = [v for v in single["extraVolumes"] if v.get("secret", {}).get("secretName") == LOKI_S3_SECRET]
    (mount,) = [m for m in single["extraVolumeMounts"] if m["name"] == credentials["name"]]
    env = {e["name"]: e["value"] for e in single["extraEnv"]}
    assert env[contract.AWS_SHARED_CREDENTIALS_FILE.name] == f"{mount['mountPath']}/{contract.AWS_CREDENTIALS_KEY}"
    assert contract.S3_CLIENT_MOUNT in {m["mountPath"] for m in single["extraVolumeMounts"]}


@pytest.mark.parametrize("namespace", ["mlops-onprem-mlflow", "mlops-onprem-airflow", "mlops-onprem-monitoring"])
def test_every_consumer_namespace_gets_the_ca(onprem: ProgramRun, namespace: str) -> None:
    data = _object(onprem, "ConfigMap", contract.S3_CLIENT_CONFIGMAP, namespace).manifest["data"]
    stack_file = yaml.safe_load((ROOT / "Pulumi.onprem.yaml").read_text())["config"]
    assert data[contract.S3_CA_KEY] == stack_file["mlops-platform:artifacts.caCertificate"]
    assert "addressing_style = path" in data[contract.S3_AWS_CONFIG_KEY]


def test_only_the_stores_clients_get_out_to_its_range_on_its_port(onprem: ProgramRun) -> None:
    policies = [r.manifest for r in onprem.kubernetes_objects() if r.manifest["kind"] == "NetworkPolicy"]
    pods = {name: Workload(name, ns, labels, ports, "10.244.0.10") for name, ns, labels, ports in rendered_pods(onprem)}
    mlflow = Workload("mlflow", "mlops-onprem-mlflow", {"app.kubernetes.io/name": "mlflow"}, tcp(5000), "10.244.1.10")
    task = Workload("task", "mlops-onprem-airflow", {"component": "worker"}, (), "10.244.1.11")
    loki = Workload("loki", "mlops-onprem-monitoring", {"app.kubernetes.io/name": "loki"}, (), "10.244.1.12")
    store = Workload("minio", None, {}, tcp(9000), "10.60.20.5")
    elsewhere = Workload("elsewhere", None, {}, tcp(9000), "10.61.0.5")
    for client in (mlflow, task, loki):
        assert allowed(policies, client, store, (9000, "TCP")), client.name
    for client in (mlflow, task):
        assert not allowed(policies, client, elsewhere, (9000, "TCP")), client.name
        assert not allowed(policies, client, store, (9001, "TCP")), client.name
    serving = next(w for w in pods.values() if w.namespace.endswith("-serving"))
    assert not allowed(policies, serving, store, (9000, "TCP"))
    assert not allowed(policies, pods["platform-api"], store, (9000, "TCP"))


def test_switching_a_slot_hands_over_the_other_key_and_rolls_the_pods(onprem: ProgramRun, tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.onprem.yaml"
    path.write_text(
        (ROOT / "Pulumi.onprem.yaml")
        .read_text()
        .replace(
            "  mlops-platform:artifacts.credentials.mlflow.active: a\n",
            "  mlops-platform:artifacts.credentials.mlflow.active: b\n"
            "  mlops-platform:artifacts.credentials.mlflow.b.accessKeyId: mlops-onprem-mlflow-b\n"
            "  mlops-platform:artifacts.credentials.mlflow.b.secretAccessKey:\n    secure: v1:AAAA:BBBB\n",
        )
    )
    rotated = run_program("onprem", path)
    data = reveal(_object(rotated, "Secret", MLFLOW_S3_SECRET, "mlops-onprem-mlflow").inputs["stringData"])
    assert data == {
        "AWS_ACCESS_KEY_ID": "mlops-onprem-mlflow-b",
        "AWS_SECRET_ACCESS_KEY": SECRET_OF.format("mlflow", "b"),
        contract.AWS_CREDENTIALS_KEY: contract.aws_credentials_ini(
            "mlops-onprem-mlflow-b", SECRET_OF.format("mlflow", "b")
        ),
    }

    def annotations(run: ProgramRun, chart: str) -> dict[str, Any]:
        values = _release(run, chart)
        return values.get("podAnnotations") or values.get("airflowPodAnnotations") or {}

    assert annotations(rotated, "mlflow") != annotations(onprem, "mlflow")
    assert annotations(rotated, "airflow") == annotations(onprem, "airflow")  # Airflow's key did not change
