"""The ServingService component under mocks: schema-valid, secure, reload path private."""

from __future__ import annotations

from typing import Any

import pytest

from components.serving import PUBLIC_PATHS, ServingService, ServingServiceArgs
from harness import checks
from harness.run import ProgramRun, read_stack_file, run_under_mocks
from services.common import contract
from stacks.settings import load_settings


def build(stack: str, **overrides: Any) -> ProgramRun:
    cfg = read_stack_file(stack)
    cfg.config.update({f"mlops-platform:{k}": v for k, v in overrides.items()})
    s = load_settings(stack, cfg.config, set(cfg.secret_keys))

    def body() -> None:
        ServingService(
            "serving",
            ServingServiceArgs(
                namespace=s.namespace("serving"),
                settings=s.serving,
                host=s.host("serving"),
                ingress_class=s.ingress_class,
                cluster_issuer="mlops-ca",
                controller_namespace=s.ingress_namespace,
                airflow_namespace=s.namespace("airflow"),
                logs_claim="serving-logs",
            ),
        )

    return run_under_mocks(stack, body, overrides={k: v for k, v in overrides.items()})


def one(run: ProgramRun, kind: str) -> dict[str, Any]:
    found = [r.manifest for r in run.kubernetes_objects() if r.manifest["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind}"
    return found[0]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_objects_are_schema_valid_and_under_the_component(stack: str) -> None:
    run = build(stack)
    kinds = sorted(r.manifest["kind"] for r in run.kubernetes_objects())
    assert kinds == [
        "Deployment",
        "HorizontalPodAutoscaler",
        "Ingress",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
    ]
    assert checks.kubernetes_schema_problems(run, ["1.30", "1.37"]) == []
    assert checks.structure_problems(run) == []
    component = next(r for r in run.registrations if r.type == "mlops:platform:ServingService")
    assert component.registered_outputs and set(component.registered_outputs) >= {"url", "reload_url", "external_url"}
    assert component.registered_outputs["url"] == f"http://serving.mlops-{stack}-serving.svc.cluster.local:8000"


def test_pod_is_hardened_with_probes_and_resources() -> None:
    pod = one(build("prod"), "Deployment")["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
    assert sc["capabilities"]["drop"] == ["ALL"] and not sc["privileged"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert set(c["resources"]["requests"]) == {"cpu", "memory"} and set(c["resources"]["limits"]) >= {"cpu", "memory"}
    assert not c["image"].endswith(":latest") and ":" in c["image"]
    assert pod["automountServiceAccountToken"] is False
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in pod["volumes"]}[
        "logs"
    ] == "serving-logs"
    assert mounts["logs"] == "/var/log/mlops-serving"


def test_environment_comes_from_the_contract() -> None:
    deployment = one(build("prod"), "Deployment")
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    assert c["envFrom"] == [
        {"configMapRef": {"name": contract.ENDPOINTS_CONFIGMAP}},
        {"secretRef": {"name": contract.MLFLOW_CREDENTIALS_SECRET}},
    ]
    env = {e["name"]: e for e in c["env"]}
    assert env[contract.RELOAD_TOKEN.name]["valueFrom"]["secretKeyRef"]["name"] == contract.RELOAD_TOKEN_SECRET
    slack = env[contract.SLACK_WEBHOOK_URL.name]["valueFrom"]["secretKeyRef"]
    assert slack["name"] == contract.SLACK_SECRET and slack["optional"] is True
    assert '"mode": "canary"' in env[contract.SERVING_ROUTING.name]["value"]
    assert env[contract.SERVING_ALIASES.name]["value"] == "champion,challenger"
    assert env[contract.SERVING_LOG_DIR.name]["value"] == "/var/log/mlops-serving/$(POD_NAME)"
    names = set(env) - {"POD_NAME", "HOME"}
    assert names <= {v.name for v in contract.ALL_VARS}


def test_reload_path_is_not_exposed_and_only_controller_and_airflow_may_connect() -> None:
    run = build("prod")
    ingress = one(run, "Ingress")
    paths = [p["path"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    assert all(p["pathType"] == "Exact" for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"])
    assert not any("reload" in p or p.startswith("/admin") or p == "/metrics" for p in paths)
    assert set(PUBLIC_PATHS) <= set(paths) and "/variants/challenger/predict" in paths
    assert ingress["spec"]["tls"] == [{"hosts": ["serving.mlops.example.com"], "secretName": "serving-tls"}]
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "mlops-ca"
    policy = one(run, "NetworkPolicy")["spec"]
    peers = [p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for p in policy["ingress"][0]["from"]]
    assert peers == ["mlops-prod-ingress", "mlops-prod-airflow"]
    assert policy["policyTypes"] == ["Ingress"]


def test_gpu_profile_sets_limits_node_selector_and_tolerations() -> None:
    pod = one(build("prod", **{"serving.profile": "gpu"}), "Deployment")["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert "nodeSelector" not in one(build("prod"), "Deployment")["spec"]["template"]["spec"]


@pytest.mark.parametrize(("stack", "expected"), [("dev", {"maxUnavailable": 1}), ("prod", {"minAvailable": 1})])
def test_disruption_budget_and_autoscaler(stack: str, expected: dict[str, int]) -> None:
    run = build(stack)
    pdb = one(run, "PodDisruptionBudget")["spec"]
    assert {k: v for k, v in pdb.items() if k in ("minAvailable", "maxUnavailable")} == expected
    hpa = one(run, "HorizontalPodAutoscaler")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == ((1, 2) if stack == "dev" else (2, 10))
    strategy = one(run, "Deployment")["spec"]["strategy"]["rollingUpdate"]
    assert strategy == {"maxUnavailable": 0, "maxSurge": 1}
