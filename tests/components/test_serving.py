"""The ServingService component (one model's serving) under mocks: schema-valid (its Traefik Middleware strictly
against the CRD), secure, named after the model, resources and placement from its profile, no replica count beside
its autoscaler, reload path private; authentication from the catalog (apiKey: generated keys exported as secrets,
only their hashes in the cluster, rotated by adding and removing key names without touching the pods; oidc; none),
the per-client rate limit at the ingress, the concurrency limit and the /docs switch."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.namespaces import NamespaceRef
from components.serving import DOCS_PATHS, KEYS_MOUNT, PUBLIC_PATHS, ServingService, ServingServiceArgs
from harness import checks
from harness.mocks import SecretValue, reveal
from harness.run import ProgramRun, read_stack_file, run_under_mocks
from services.common import contract
from services.common.catalog import DEFAULT_PROFILES
from services.serving.security import key_hash, parse_key_file
from stacks.settings import load_settings

MODEL = "iris-classifier"


def build(stack: str, model: str = MODEL, traefik: bool = True, **overrides: Any) -> ProgramRun:
    """One model's ServingService with the stack file's settings; `overrides` are stack settings (objects as
    Python values). `traefik`: the ingress controller reads Traefik Middlewares."""
    cfg = read_stack_file(stack)
    cfg.config.update({f"mlops-platform:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in overrides.items()})
    s = load_settings(stack, cfg.config, set(cfg.secret_keys))

    def body() -> None:
        ServingService(
            f"model-{model}",
            ServingServiceArgs(
                namespace=NamespaceRef(s.namespace("serving")),
                model=model,
                serving=s.catalog.models[model].serving,
                profile=s.serving_profile(model),
                image=s.serving_image(model),
                poll_seconds=s.serving.poll_seconds,
                host=s.model_host(model),
                ingress_class=s.ingress_class,
                cluster_issuer="mlops-ca",
                logs_claim="serving-logs",
                rate_limit_middleware=traefik,
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
    expected = [
        (kind, "model-iris-classifier")
        for kind in (
            "Deployment",
            "HorizontalPodAutoscaler",
            "Ingress",
            "PodDisruptionBudget",
            "Service",
            "ServiceAccount",
        )
    ] + [("Middleware", "model-iris-classifier-ratelimit"), ("IngressRoute", "model-iris-classifier-grpc")]
    if stack == "prod":  # apiKey authentication (the prod default): the Secret of the key hashes
        expected.append(("Secret", "model-iris-classifier-api-keys"))
    assert objects == sorted(expected)
    assert checks.kubernetes_schema_problems(run, ["1.30", "1.37"]) == []
    assert checks.custom_resource_problems(run) == []
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
    assert c["envFrom"] == [{"configMapRef": {"name": contract.ENDPOINTS_CONFIGMAP}}]  # no Secret as env
    env = {e["name"]: e for e in c["env"]}
    assert env[contract.MODEL_NAME.name]["value"] == MODEL
    # credentials as files: the Secrets mounted, <NAME>_FILE naming the file, MLflow's file under $HOME
    assert not any("valueFrom" in e and "secretKeyRef" in e["valueFrom"] for e in c["env"])
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    for var, secret in (
        (contract.RELOAD_TOKEN, contract.RELOAD_TOKEN_SECRET),
        (contract.SLACK_WEBHOOK_URL, contract.SLACK_SECRET),
    ):
        path = env[var.file_variable]["value"]
        assert path == contract.secret_file(secret, var.name)
        (volume,) = [n for n, v in volumes.items() if v.get("secret", {}).get("secretName") == secret]
        assert path.startswith(mounts[volume]["mountPath"] + "/") and mounts[volume]["readOnly"]
        assert var.name not in env
    home = env["HOME"]["value"]
    assert mounts["mlflow-credentials"]["mountPath"] == f"{home}/.mlflow"
    assert volumes["mlflow-credentials"]["secret"]["items"] == [{"key": "credentials", "path": "credentials"}]
    assert '"mode": "canary"' in env[contract.SERVING_ROUTING.name]["value"]
    assert env[contract.SERVING_ALIASES.name]["value"] == "champion,challenger"
    assert env[contract.SERVING_LOG_DIR.name]["value"] == "/var/log/mlops-serving/$(POD_NAME)"
    names = set(env) - {"POD_NAME", "HOME"}
    assert names <= {v.name for v in contract.ALL_VARS} | {v.file_variable for v in contract.ALL_VARS}


def test_reload_path_is_not_exposed_and_only_controller_and_airflow_may_connect() -> None:
    run = build("prod")
    ingress = one(run, "Ingress")
    types = {p["path"]: p["pathType"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]}
    paths = list(types)
    # one Prefix: the model's own Open Inference Protocol paths (whole segments: not another model's)
    assert {p: t for p, t in types.items() if t != "Exact"} == {"/v2/models/iris-classifier": "Prefix"}
    assert not any("reload" in p or p.startswith("/admin") or p == "/metrics" for p in paths)
    assert set(PUBLIC_PATHS) - set(DOCS_PATHS) <= set(paths) and "/variants/challenger/predict" in paths
    # the inference protocols teams' clients already speak: a URL to change, not code
    assert {*contract.V2_SERVER_PATHS, *contract.MLFLOW_SCORING_PATHS} <= set(paths)
    assert not set(DOCS_PATHS) & set(paths), "the API document is private in prod"
    host = "iris-classifier.models.mlops.example.com"
    assert ingress["spec"]["tls"] == [{"hosts": [host], "secretName": "model-iris-classifier-tls"}]
    assert [rule["host"] for rule in ingress["spec"]["rules"]] == [host]
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "mlops-ca"


def test_objects_select_only_their_models_pods() -> None:
    run = build("prod")
    selector = one(run, "Deployment")["spec"]["selector"]["matchLabels"]
    assert selector == {"app.kubernetes.io/name": "serving", "mlops-platform/model": "iris-classifier"}
    assert one(run, "Service")["spec"]["selector"] == selector
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


# --- who may call, how often ------------------------------------------------------------------------------------
def with_serving(stack: str, **serving: Any) -> dict[str, Any]:
    """The stack file's models with the iris model's serving section extended by `serving`."""
    models = stack_models(stack)
    models[MODEL]["serving"] = {**models[MODEL]["serving"], **serving}
    return models


def env_of(run: ProgramRun) -> dict[str, dict[str, Any]]:
    (container,) = one(run, "Deployment")["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e for e in container["env"]}


def api_keys(run: ProgramRun) -> Any:
    """The component's `api_keys` output as registered (a SecretValue when secret)."""
    component = next(r for r in run.registrations if r.type == "mlops:platform:ServingService")
    assert component.registered_outputs is not None
    return component.registered_outputs.get("api_keys")


def keys_secret(run: ProgramRun) -> tuple[Any, frozenset[str]]:
    """The raw `stringData` of the keys Secret and the hashes its file holds."""
    (reg,) = [r for r in run.of_type("kubernetes:core/v1:Secret") if r.manifest["metadata"]["name"].endswith("-keys")]
    return reg.inputs["stringData"], parse_key_file(reveal(reg.inputs["stringData"])["keys"])


def test_api_keys_are_generated_exported_as_secrets_and_only_their_hashes_reach_the_cluster() -> None:
    run = build("prod")  # apiKey is the prod default
    keys = api_keys(run)
    assert isinstance(keys, SecretValue), "the generated keys are a secret output"
    (name, key), *rest = reveal(keys).items()
    assert name == "key-1" and not rest and len(key) == 40
    data, hashes = keys_secret(run)
    assert isinstance(data, SecretValue) or isinstance(data["keys"], SecretValue)
    assert hashes == {key_hash(key)}
    assert key not in str(reveal([r.inputs for r in run.registrations if r.custom]))  # nowhere in plaintext
    assert checks.plaintext_secret_problems(run) == []
    env = env_of(run)
    assert json.loads(env[contract.SERVING_AUTH.name]["value"]) == {
        "mode": "apiKey",
        "keysSecret": "model-iris-classifier-api-keys",
    }
    assert env[contract.SERVING_API_KEYS_FILE.name]["value"] == f"{KEYS_MOUNT}/keys"
    pod = one(run, "Deployment")["spec"]["template"]["spec"]
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "api-keys"]
    # the whole Secret as a directory (a subPath mount would never see an update), read-only
    assert mount == {"name": "api-keys", "mountPath": KEYS_MOUNT, "readOnly": True}
    (volume,) = [v for v in pod["volumes"] if v["name"] == "api-keys"]
    assert volume["secret"] == {"secretName": "model-iris-classifier-api-keys"}


def test_keys_rotate_by_adding_and_removing_names_without_touching_the_pods() -> None:
    """key-1 alone, then key-1 and key-2 (overlap: both accepted), then key-2 alone: the same key-2 throughout,
    and the Deployment never changes, so no pod restarts (the service re-reads the mounted file)."""
    issued = "sha256:" + key_hash("a key issued elsewhere")
    runs = [
        build("prod", models=with_serving("prod", auth={"mode": "apiKey", "keys": keys}))
        for keys in (["key-1"], ["key-1", "key-2"], ["key-2"])
    ]
    generated = [reveal(api_keys(run)) for run in runs]
    assert [sorted(g) for g in generated] == [["key-1"], ["key-1", "key-2"], ["key-2"]]
    assert generated[0]["key-1"] == generated[1]["key-1"] and generated[1]["key-2"] == generated[2]["key-2"]
    assert [keys_secret(run)[1] for run in runs] == [
        {key_hash(generated[0]["key-1"])},
        {key_hash(generated[1]["key-1"]), key_hash(generated[1]["key-2"])},
        {key_hash(generated[2]["key-2"])},
    ]
    deployments = {json.dumps(one(run, "Deployment"), sort_keys=True) for run in runs}
    assert len(deployments) == 1, "a rotation must not roll the pods"
    with_issued = build("prod", models=with_serving("prod", auth={"mode": "apiKey", "keyHashes": [issued]}))
    assert keys_secret(with_issued)[1] == {key_hash(reveal(api_keys(with_issued))["key-1"]), issued[7:]}


def test_oidc_and_anonymous_modes_render_no_keys() -> None:
    oidc = {"mode": "oidc", "issuer": "https://id.example.com/realms/ml", "audience": "iris-clients"}
    run = build("prod", models=with_serving("prod", auth=oidc))
    assert json.loads(env_of(run)[contract.SERVING_AUTH.name]["value"]) == oidc
    assert contract.SERVING_API_KEYS_FILE.name not in env_of(run)
    assert not [r for r in run.of_type("kubernetes:core/v1:Secret")] and reveal(api_keys(run)) == {}
    dev = build("dev")  # dev default: anonymous calls
    assert json.loads(env_of(dev)[contract.SERVING_AUTH.name]["value"]) == {"mode": "none"}
    pod = one(dev, "Deployment")["spec"]["template"]["spec"]
    assert "api-keys" not in {v["name"] for v in pod["volumes"]}


def test_the_rate_limit_middleware_is_named_by_the_ingress_and_valid_for_its_crd() -> None:
    run = build("prod", models=with_serving("prod", rateLimit={"average": 20, "period": 60, "burst": 5}))
    (middleware,) = [r.manifest for r in run.kubernetes_objects() if r.manifest["kind"] == "Middleware"]
    assert middleware["apiVersion"] == "traefik.io/v1alpha1"
    assert middleware["spec"] == {
        "rateLimit": {"average": 20, "period": "60s", "burst": 5, "sourceCriterion": {"ipStrategy": {"depth": 0}}}
    }
    assert checks.custom_resource_problems(run) == []
    annotations = one(run, "Ingress")["metadata"]["annotations"]
    name = f"mlops-prod-serving-{middleware['metadata']['name']}@kubernetescrd"
    assert annotations["traefik.ingress.kubernetes.io/router.middlewares"] == name
    assert middleware["metadata"]["namespace"] == one(run, "Ingress")["metadata"]["namespace"]
    by_key = build("prod", models=with_serving("prod", rateLimit={"by": "authorization"}))
    (spec,) = [r.manifest["spec"] for r in by_key.kubernetes_objects() if r.manifest["kind"] == "Middleware"]
    assert spec["rateLimit"]["sourceCriterion"] == {"requestHeaderName": "Authorization"}
    assert (spec["rateLimit"]["average"], spec["rateLimit"]["burst"]) == (100, 200)  # the defaults


def test_another_ingress_controller_gets_no_traefik_middleware() -> None:
    run = build("prod", traefik=False)
    assert not [r for r in run.kubernetes_objects() if r.manifest["kind"] == "Middleware"]
    assert "traefik.ingress.kubernetes.io/router.middlewares" not in one(run, "Ingress")["metadata"]["annotations"]


def test_concurrency_limit_and_docs_switch_reach_the_pods() -> None:
    run = build("prod", models=with_serving("prod", maxInFlight=32, publicDocs=True))
    env = env_of(run)
    assert env[contract.SERVING_MAX_IN_FLIGHT.name]["value"] == "32"
    assert env[contract.SERVING_PUBLIC_DOCS.name]["value"] == "true"
    paths = {p["path"] for rule in one(run, "Ingress")["spec"]["rules"] for p in rule["http"]["paths"]}
    assert set(DOCS_PATHS) <= paths
    default = env_of(build("prod", models=with_serving("prod", maxInFlight=None, publicDocs=None)))
    assert contract.SERVING_MAX_IN_FLIGHT.name not in default  # the service's own default
    assert default[contract.SERVING_PUBLIC_DOCS.name]["value"] == "false"  # prod default
    assert env_of(build("dev"))[contract.SERVING_PUBLIC_DOCS.name]["value"] == "true"  # dev default
