"""The ServingService component (one model's serving) under mocks: schema-valid, secure, named after the model,
resources and placement from its profile, no replica count beside its autoscaler, reload path private."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.serving import PUBLIC_PATHS, ServingService, ServingServiceArgs
from harness import checks
from harness.run import ProgramRun, read_stack_file, run_under_mocks
from services.common import contract
from services.common.catalog import DEFAULT_PROFILES
from stacks.settings import load_settings

MODEL = "iris-classifier"


def build(stack: str, model: str = MODEL, **overrides: Any) -> ProgramRun:
    """One model's ServingService with the stack file's settings; `overrides` are stack settings (objects as
    Python values)."""
    cfg = read_stack_file(stack)
    cfg.config.update({f"mlops-platform:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in overrides.items()})
    s = load_settings(stack, cfg.config, set(cfg.secret_keys))

    def body() -> None:
        ServingService(
            f"model-{model}",
            ServingServiceArgs(
                namespace=s.namespace("serving"),
                model=model,
                serving=s.catalog.models[model].serving,
                profile=s.serving_profile(model),
                image=s.serving_image(model),
                poll_seconds=s.serving.poll_seconds,
                host=s.model_host(model),
                ingress_class=s.ingress_class,
                cluster_issuer="mlops-ca",
                controller_namespace=s.ingress_namespace,
                airflow_namespace=s.namespace("airflow"),
                logs_claim="serving-logs",
            ),
        )

    return run_under_mocks(stack, body, overrides=overrides)


def one(run: ProgramRun, kind: str) -> dict[str, Any]:
    found = [r.manifest for r in run.kubernetes_objects() if r.manifest["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind}"
    return found[0]


def stack_models(stack: str) -> dict[str, Any]:
    return json.loads(read_stack_file(stack).config["mlops-platform:models"])


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_objects_are_schema_valid_named_after_the_model_and_under_the_component(stack: str) -> None:
    run = build(stack)
    objects = sorted((r.manifest["kind"], r.manifest["metadata"]["name"]) for r in run.kubernetes_objects())
    assert objects == [
        (kind, "model-iris-classifier")
        for kind in (
            "Deployment",
            "HorizontalPodAutoscaler",
            "Ingress",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Service",
            "ServiceAccount",
        )
    ]
    assert checks.kubernetes_schema_problems(run, ["1.30", "1.37"]) == []
    assert checks.structure_problems(run) == []
    component = next(r for r in run.registrations if r.type == "mlops:platform:ServingService")
    assert component.registered_outputs and set(component.registered_outputs) >= {"url", "reload_url", "external_url"}
    url = f"http://model-iris-classifier.mlops-{stack}-serving.svc.cluster.local:8000"
    assert component.registered_outputs["url"] == url


def test_the_deployment_leaves_the_replica_count_to_its_autoscaler() -> None:
    """Every `pulumi up` that touched a Deployment with `replicas` would scale a busy model back to the minimum."""
    run = build("prod")
    deployment, hpa = one(run, "Deployment"), one(run, "HorizontalPodAutoscaler")
    assert "replicas" not in deployment["spec"]
    target = hpa["spec"]["scaleTargetRef"]
    assert target == {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment["metadata"]["name"]}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)


def test_pod_is_hardened_with_probes_and_resources_of_its_profile() -> None:
    pod = one(build("prod"), "Deployment")["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
    assert sc["capabilities"]["drop"] == ["ALL"] and not sc["privileged"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    small = DEFAULT_PROFILES["small"]
    assert c["resources"] == {"requests": small["requests"], "limits": small["limits"]}
    assert c["image"].startswith("ghcr.io/acme/mlops-platform/serving@sha256:")  # images.serving, pinned in prod
    assert pod["automountServiceAccountToken"] is False
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in pod["volumes"]}[
        "logs"
    ] == "serving-logs"
    assert mounts["logs"] == "/var/log/mlops-serving"


def test_environment_comes_from_the_contract_and_names_the_model() -> None:
    deployment = one(build("prod"), "Deployment")
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    assert c["envFrom"] == [
        {"configMapRef": {"name": contract.ENDPOINTS_CONFIGMAP}},
        {"secretRef": {"name": contract.MLFLOW_CREDENTIALS_SECRET}},
    ]
    env = {e["name"]: e for e in c["env"]}
    assert env[contract.MODEL_NAME.name]["value"] == MODEL
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
    host = "iris-classifier.models.mlops.example.com"
    assert ingress["spec"]["tls"] == [{"hosts": [host], "secretName": "model-iris-classifier-tls"}]
    assert [rule["host"] for rule in ingress["spec"]["rules"]] == [host]
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "mlops-ca"
    policy = one(run, "NetworkPolicy")["spec"]
    peers = [p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for p in policy["ingress"][0]["from"]]
    assert peers == ["mlops-prod-ingress", "mlops-prod-airflow"]
    assert policy["policyTypes"] == ["Ingress"]


def test_objects_select_only_their_models_pods() -> None:
    run = build("prod")
    selector = one(run, "Deployment")["spec"]["selector"]["matchLabels"]
    assert selector == {"app.kubernetes.io/name": "serving", "mlops-platform/model": "iris-classifier"}
    assert one(run, "Service")["spec"]["selector"] == selector
    assert one(run, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"] == selector
    assert one(run, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == selector
    labels = one(run, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()


def test_gpu_profile_sets_limits_node_selector_tolerations_and_priority_class() -> None:
    models = stack_models("prod")
    models[MODEL]["serving"]["profile"] = "gpu-critical"
    gpu = {**DEFAULT_PROFILES["gpu"], "priorityClassName": "ml-serving-high"}
    pod = one(build("prod", models=models, profiles={"gpu-critical": gpu}), "Deployment")["spec"]["template"]["spec"]
    resources = pod["containers"][0]["resources"]
    assert resources["limits"] == {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"}
    assert resources["requests"] == {"cpu": "2", "memory": "8Gi", "nvidia.com/gpu": "1"}
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["priorityClassName"] == "ml-serving-high"
    plain = one(build("prod"), "Deployment")["spec"]["template"]["spec"]
    assert not {"nodeSelector", "tolerations", "priorityClassName"} & set(plain)


def test_a_profile_image_replaces_the_platform_serving_image() -> None:
    models = stack_models("dev")
    models[MODEL]["serving"]["profile"] = "custom"
    custom = {**DEFAULT_PROFILES["medium"], "images": {"serving": "quay.io/acme/serving-xgboost:1.4"}}
    run = build("dev", models=models, profiles={"custom": custom})
    (container,) = one(run, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "quay.io/acme/serving-xgboost:1.4"
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "4Gi"}


@pytest.mark.parametrize(("stack", "expected"), [("dev", {"maxUnavailable": 1}), ("prod", {"minAvailable": 1})])
def test_disruption_budget_and_autoscaler(stack: str, expected: dict[str, int]) -> None:
    run = build(stack)
    pdb = one(run, "PodDisruptionBudget")["spec"]
    assert {k: v for k, v in pdb.items() if k in ("minAvailable", "maxUnavailable")} == expected
    hpa = one(run, "HorizontalPodAutoscaler")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == ((1, 2) if stack == "dev" else (2, 10))
    strategy = one(run, "Deployment")["spec"]["strategy"]["rollingUpdate"]
    assert strategy == {"maxUnavailable": 0, "maxSurge": 1}
