"""The PlatformApi component under mocks, for both stacks: its objects validate strictly against the
Kubernetes schemas, every reference resolves, the policy pack passes, no secret is in plaintext; prod runs two
replicas with a disruption budget; the pod is hardened and configured only through the contract's variables;
the Ingress exposes only the public API; it renders no NetworkPolicy (infra/network.py decides the flows)."""

from __future__ import annotations

import json
import re
from typing import Any

import pulumi
import pytest
from pulumi_kubernetes.core.v1 import ConfigMap, Secret
from pulumi_kubernetes.meta.v1 import ObjectMetaArgs

from components.namespaces import NamespaceRef
from components.platform_api import (
    ADMIN_TOKEN_SECRET,
    ADMIN_TOKENS_ANNOTATION,
    AIRFLOW_CREDENTIALS_SECRET,
    AIRFLOW_USER_JOB,
    AdminTokenSlots,
    PlatformApi,
    PlatformApiArgs,
    PlatformApiConfig,
)
from harness import checks
from harness.mocks import SecretValue
from harness.run import ProgramRun, read_stack_file, run_under_mocks
from policy.testing import analyze
from services.common import contract
from services.common.env_settings import file_variable
from stacks.settings import load_settings
from tests.policy.adapter import resources_from_run

DB_SECRET = "mlops-api-db"


def build(stack: str, **config: Any) -> ProgramRun:
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
                config=PlatformApiConfig(
                    image="ghcr.io/mlops-platform/api:0.1.0", replicas=2 if s.is_prod else 1, **config
                ),
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
    assert set(env) - {"HOME"} <= {v.name for v in contract.ALL_VARS} | {v.file_variable for v in contract.ALL_VARS}
    # credentials as files: each Secret mounted, `<NAME>_FILE` naming its file; no credential variable at all
    volumes = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    for var, (secret, key) in {
        contract.API_ADMIN_TOKEN: (ADMIN_TOKEN_SECRET, contract.API_ADMIN_TOKEN.name),
        contract.API_AIRFLOW_PASSWORD: (AIRFLOW_CREDENTIALS_SECRET, contract.API_AIRFLOW_PASSWORD.name),
        contract.API_DATABASE_USER: (DB_SECRET, "username"),
        contract.API_DATABASE_PASSWORD: (DB_SECRET, "password"),
    }.items():
        assert var.name not in env
        (volume,) = [n for n, s in volumes.items() if s == secret]
        assert env[var.file_variable]["value"] == f"{mounts[volume]['mountPath']}/{key}" and mounts[volume]["readOnly"]
    assert not any("valueFrom" in e for e in c["env"])
    assert c["envFrom"] == [{"configMapRef": {"name": contract.ENDPOINTS_CONFIGMAP}}]
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


def test_airflow_user_job_runs_in_the_airflow_namespace_with_secrets_as_files() -> None:
    run = run_of("prod")
    job = one(run, "Job", AIRFLOW_USER_JOB)
    assert job["metadata"]["namespace"] == "mlops-prod-airflow"
    (c,) = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in c["env"]}
    assert not any("valueFrom" in e for e in c["env"])
    # the password reaches the CLI on stdin (prompt and confirmation), the connection through Airflow's _CMD option:
    # both read from the mounted Secrets' files
    password_file = f"/var/run/secrets/mlops/{AIRFLOW_CREDENTIALS_SECRET}/{contract.API_AIRFLOW_PASSWORD.name}"
    script = c["command"][-1]
    assert "users create" in script and "reset-password" in script and "--password" not in script
    assert f'cat "{password_file}"' in script and "pw | airflow users reset-password" in script
    assert (
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD"]["value"]
        == "cat /var/run/secrets/mlops/airflow-metadata/connection"
    )
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert {"/var/run/secrets/mlops/airflow-metadata", f"/var/run/secrets/mlops/{AIRFLOW_CREDENTIALS_SECRET}"} <= mounts
    assert env["HOME"]["value"] in mounts and "/tmp" in mounts  # scratch on emptyDirs: the root is read-only
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    secrets = objects(run, "Secret", AIRFLOW_CREDENTIALS_SECRET)
    assert sorted(s["metadata"]["namespace"] for s in secrets) == ["mlops-prod-airflow", "mlops-prod-api"]


def test_config_refuses_unpinned_images_and_unreachable_databases() -> None:
    with pytest.raises(ValueError, match="pinned"):
        PlatformApiConfig(image="ghcr.io/mlops-platform/api")
    with pytest.raises(ValueError, match="replicas"):
        PlatformApiConfig(image="x:1", replicas=0)


def test_token_settings_reach_the_pod_in_seconds() -> None:
    run = build("dev", token_ttl_days=7, token_max_ttl_days=30.5, rate_limit_per_second=2.5, rate_limit_burst=9)
    (c,) = one(run, "Deployment")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env[contract.API_TOKEN_TTL.name] == str(7 * 86_400)
    assert env[contract.API_TOKEN_MAX_TTL.name] == str(int(30.5 * 86_400))
    assert (env[contract.API_RATE_LIMIT_PER_SECOND.name], env[contract.API_RATE_LIMIT_BURST.name]) == ("2.5", "9")
    with pytest.raises(ValueError, match="token_ttl_days"):
        PlatformApiConfig(image="ghcr.io/mlops-platform/api:0.1.0", token_ttl_days=91, token_max_ttl_days=90)


def test_admin_token_slots_alternate_and_replace_only_the_new_current_one() -> None:
    """Over several generations: the current slot alternates, each raise changes the keeper of exactly the slot
    that becomes current (so only that token is generated again), slot a keeps no keeper at first (an existing
    stack's admin token stays), and the previous slot is accepted only while keep_previous is set."""
    assert AdminTokenSlots(1).slots() == ("a",) and AdminTokenSlots(1).keepers("a") is None
    assert AdminTokenSlots(1, keep_previous=True).previous is None  # generation 1 has no previous token
    for generation in range(1, 8):
        before, after = AdminTokenSlots(generation, True), AdminTokenSlots(generation + 1, True)
        assert after.current != before.current and after.previous == before.current
        changed = [
            slot for slot in after.slots() if slot not in before.slots() or before.keepers(slot) != after.keepers(slot)
        ]
        assert changed == [after.current], generation
        assert AdminTokenSlots(generation + 1, keep_previous=False).previous is None
    assert AdminTokenSlots(2).keepers("a") is None and AdminTokenSlots(3).keepers("a") == {"generation": "3"}


@pytest.mark.parametrize(
    ("generation", "keep", "current", "previous"),
    [
        (1, False, "api-admin-token", None),
        (2, True, "api-admin-token-b", "api-admin-token"),
        (3, False, "api-admin-token", None),
    ],
)
def test_admin_token_rotation_renders_the_slots_the_secret_and_a_rolling_pod_template(
    generation: int, keep: bool, current: str, previous: str | None
) -> None:
    run = build("dev", admin_token_generation=generation, admin_token_keep_previous=keep)
    passwords = {r.name: r for r in run.of_type("random:index/randomPassword:RandomPassword") if "admin" in r.name}
    assert set(passwords) == ({"api-admin-token"} if generation == 1 else {"api-admin-token", "api-admin-token-b"})
    (secret,) = [
        r
        for r in run.kubernetes_objects()
        if r.manifest["kind"] == "Secret" and r.manifest["metadata"]["name"] == ADMIN_TOKEN_SECRET
    ]
    assert isinstance(secret.inputs["stringData"], SecretValue)  # both tokens are secret
    revealed = secret.manifest["stringData"]
    assert revealed[contract.API_ADMIN_TOKEN.name] == passwords[current].outputs["result"]
    expected_previous = passwords[previous].outputs["result"] if previous else ""
    assert revealed[contract.API_ADMIN_TOKEN_PREVIOUS.name] == expected_previous
    template = one(run, "Deployment")["spec"]["template"]
    digest = template["metadata"]["annotations"][ADMIN_TOKENS_ANNOTATION]
    assert re.fullmatch(r"[0-9a-f]{16}", digest), digest  # a digest, not a token
    (c,) = template["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    # the previous token is a file of the admin Secret's volume, beside the current one
    path = contract.secret_file(ADMIN_TOKEN_SECRET, contract.API_ADMIN_TOKEN_PREVIOUS.name)
    assert env[file_variable(contract.API_ADMIN_TOKEN_PREVIOUS)] == path
    volumes = {v["name"]: v for v in template["spec"]["volumes"] if "secret" in v}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert volumes[mounts[path.rsplit("/", 1)[0]]]["secret"]["secretName"] == ADMIN_TOKEN_SECRET


def test_a_rotation_changes_the_pod_template() -> None:
    """Each step of a rotation (raise with overlap, end the overlap) gives the pods a new template: they roll."""
    digests = []
    for generation, keep in ((1, False), (2, True), (2, False)):
        run = build("dev", admin_token_generation=generation, admin_token_keep_previous=keep)
        digests.append(one(run, "Deployment")["spec"]["template"]["metadata"]["annotations"][ADMIN_TOKENS_ANNOTATION])
    assert len(set(digests)) == 3
