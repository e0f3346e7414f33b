"""The PlatformApi component under mocks, for both stacks: its objects validate strictly against the
Kubernetes schemas, every reference resolves, the policy pack passes, no secret is in plaintext; prod runs two
replicas with a disruption budget; the pod is hardened and configured only through the contract's variables;
the Ingress exposes only the public API; it renders no NetworkPolicy (infra/network.py decides the flows)."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest
from pulumi_kubernetes.core.v1 import ConfigMap, Secret
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs

from components.namespaces import NamespaceRef
from components.platform_api import (
    ADMIN_TOKEN_SECRET,
    AIRFLOW_CREDENTIALS_SECRET,
    AIRFLOW_USER_JOB,
    PlatformApi,
    PlatformApiArgs,
    PlatformApiConfig,
)
from harness import checks
from harness.mocks import SecretValue
from harness.run import ProgramRun, read_stack_file, run_under_mocks
from policy.testing import analyze
from services.common import contract
from stacks.settings import load_settings
from tests.policy.adapter import resources_from_run

DB_SECRET = "mlops-api-db"


def build(stack: str) -> ProgramRun:
    cfg = read_stack_file(stack)
    s = load_settings(stack, cfg.config, set(cfg.secret_keys))
    api_ns = s.namespace("api")

    def body() -> None:
        # what the rest of the program provides (the endpoints contract, the bootstrap's connection Secret,
        # Airflow's metadata Secret), so that references can be checked
        others = pulumi.ComponentResource("test:platform:StandIns", "stand-ins")
        child = pulumi.ResourceOptions(parent=others)
        ConfigMap(
            "endpoints",
            metadata=ObjectMetaArgs(name=contract.ENDPOINTS_CONFIGMAP, namespace=api_ns),
            data={v.name: "x" for v in contract.CONFIGMAP_VARS},
            opts=child,
        )
        stand_ins: list[tuple[str, str, dict[str, pulumi.Input[str]]]] = [
            ("mlflow-credentials", api_ns, {}),
            ("db", api_ns, {"username": "api", "password": pulumi.Output.secret("p" * 32)}),
            ("metadata", s.namespace("airflow"), {"connection": pulumi.Output.secret("postgresql://a:b@h/airflow")}),
        ]
        for name, ns, data in stand_ins:
            secret_name = {"mlflow-credentials": contract.MLFLOW_CREDENTIALS_SECRET, "db": DB_SECRET}.get(
                name, "airflow-metadata"
            )
            Secret(
                name,
                metadata=ObjectMetaArgs(name=secret_name, namespace=ns),
                type="Opaque",
                string_data=data,
                opts=child,
            )
        others.register_outputs({"names": [contract.ENDPOINTS_CONFIGMAP, DB_SECRET]})
        PlatformApi(
            "api",
            PlatformApiArgs(
                namespace=NamespaceRef(api_ns),
                config=PlatformApiConfig(image="ghcr.io/mlops-platform/api:0.1.0", replicas=2 if s.is_prod else 1),
                host=s.host("api"),
                ingress_class=s.ingress_class,
                cluster_issuer="mlops-ca",
                catalog_json=json.dumps({"version": 1, "models": {}, "profiles": {}}),
                database_secret=DB_SECRET,
                database_name="platform_api",
                database_sslmode="require" if s.is_prod else "disable",
                airflow_namespace=NamespaceRef(s.namespace("airflow")),
                airflow_url=f"http://airflow-api-server.{s.namespace('airflow')}.svc.cluster.local:8080",
                airflow_image="ghcr.io/mlops-platform/airflow:3.3.2-mlops-0.1.0",
                airflow_metadata_secret="airflow-metadata",
            ),
        )

    return run_under_mocks(stack, body)


_RUNS: dict[str, ProgramRun] = {}


def run_of(stack: str) -> ProgramRun:
    if stack not in _RUNS:
        _RUNS[stack] = build(stack)
    return _RUNS[stack]


def objects(run: ProgramRun, kind: str, name: str | None = None) -> list[dict[str, Any]]:
    found = [r.manifest for r in run.kubernetes_objects() if r.manifest["kind"] == kind]
    return [o for o in found if name is None or o["metadata"]["name"] == name]


def one(run: ProgramRun, kind: str, name: str | None = "platform-api") -> dict[str, Any]:
    (found,) = objects(run, kind, name)
    return found


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_objects_validate_resolve_pass_the_policies_and_hold_no_plaintext_secret(
    stack: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = run_of(stack)
    component = next(r for r in run.registrations if r.type == "mlops:platform:PlatformApi")
    children = sorted(r.manifest["kind"] for r in run.children(component) if r.is_kubernetes_object)
    assert children == [
        "ConfigMap",
        "Deployment",
        "Ingress",
        "Job",
        "PodDisruptionBudget",
        "Secret",
        "Secret",
        "Secret",
        "Service",
        "ServiceAccount",
    ]
    assert checks.kubernetes_schema_problems(run, ["1.30", "1.37"]) == []
    assert checks.structure_problems(run) == []
    assert checks.reference_problems(run) == []
    assert checks.plaintext_secret_problems(run) == []
    monkeypatch.setenv("PULUMI_STACK", stack)
    # every policy holds but the digest rule: the component alone runs the platform's images by tag under a
    # registry of its own; pinning is the stack's business (tests/policy/test_policies_stacks.py)
    violations = [
        v for v in analyze(resources_from_run(run)) if v.policy != "third-party-images-pinned-by-digest-in-prod"
    ]
    assert not violations, "\n".join(f"[{v.policy}] {v.urn}: {v.message}" for v in violations)
    outputs = component.registered_outputs or {}
    assert outputs["url"] == f"http://platform-api.mlops-{stack}-api.svc.cluster.local:{contract.API_PORT}"
    assert isinstance(outputs["admin_token"], SecretValue)  # the admin token leaves the component only as a secret


@pytest.mark.parametrize(
    ("stack", "replicas", "budget"), [("dev", 1, {"maxUnavailable": 1}), ("prod", 2, {"minAvailable": 1})]
)
def test_replicas_and_disruption_budget(stack: str, replicas: int, budget: dict[str, int]) -> None:
    run = run_of(stack)
    deployment = one(run, "Deployment")["spec"]
    assert deployment["replicas"] == replicas
    assert deployment["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    pdb = one(run, "PodDisruptionBudget")["spec"]
    assert {k: v for k, v in pdb.items() if k in ("minAvailable", "maxUnavailable")} == budget


def test_pod_is_hardened_and_configured_through_the_contract() -> None:
    pod = one(run_of("prod"), "Deployment")["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
    assert sc["capabilities"]["drop"] == ["ALL"] and pod["automountServiceAccountToken"] is False
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz" and c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["command"] == ["python", "-m", "services.api"]
    env = {e["name"]: e for e in c["env"]}
    assert set(env) - {"HOME"} <= {v.name for v in contract.ALL_VARS}
    for var, (secret, key) in {
        contract.API_ADMIN_TOKEN: (ADMIN_TOKEN_SECRET, contract.API_ADMIN_TOKEN.name),
        contract.API_AIRFLOW_PASSWORD: (AIRFLOW_CREDENTIALS_SECRET, contract.API_AIRFLOW_PASSWORD.name),
        contract.API_DATABASE_PASSWORD: (DB_SECRET, "password"),
    }.items():
        assert env[var.name]["valueFrom"]["secretKeyRef"] == {"name": secret, "key": key}
        assert "value" not in env[var.name]
    assert env[contract.API_DATABASE_SSLMODE.name]["value"] == "require"
    assert env[contract.MODEL_CATALOG.name]["value"] == f"{contract.MODEL_CATALOG_MOUNT}/{contract.MODEL_CATALOG_KEY}"
    assert {"configMapRef": {"name": contract.ENDPOINTS_CONFIGMAP}} in c["envFrom"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts["catalog"] == contract.MODEL_CATALOG_MOUNT


def test_ingress_exposes_only_the_public_api() -> None:
    ingress = one(run_of("prod"), "Ingress")
    paths = {p["path"]: p["pathType"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]}
    assert paths == {"/v1": "Prefix", "/docs": "Exact", "/openapi.json": "Exact", "/healthz": "Exact"}
    assert ingress["spec"]["tls"][0]["hosts"] == ["api.mlops.example.com"]
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "mlops-ca"


def test_airflow_user_job_runs_in_the_airflow_namespace_with_secrets_by_reference() -> None:
    run = run_of("prod")
    job = one(run, "Job", AIRFLOW_USER_JOB)
    assert job["metadata"]["namespace"] == "mlops-prod-airflow"
    (c,) = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in c["env"]}
    assert env["API_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == AIRFLOW_CREDENTIALS_SECRET
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]["valueFrom"]["secretKeyRef"]["name"] == "airflow-metadata"
    assert "users create" in c["command"][-1] and "reset-password" in c["command"][-1]
    secrets = objects(run, "Secret", AIRFLOW_CREDENTIALS_SECRET)
    assert sorted(s["metadata"]["namespace"] for s in secrets) == ["mlops-prod-airflow", "mlops-prod-api"]


def test_config_refuses_unpinned_images_and_unreachable_databases() -> None:
    with pytest.raises(ValueError, match="pinned"):
        PlatformApiConfig(image="ghcr.io/mlops-platform/api")
    with pytest.raises(ValueError, match="replicas"):
        PlatformApiConfig(image="x:1", replicas=0)
