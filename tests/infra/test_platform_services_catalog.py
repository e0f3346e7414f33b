"""The model catalog in the whole program under mocks, both stacks: one serving deployment per catalog entry with the
image, resources and GPUs of its profile; the catalog reaches Airflow as a ConfigMap every Airflow pod mounts, equal
to the stack's settings, and the pods roll when it changes; the training pod the DAG submits for each model (built
from that JSON) is strictly valid Kubernetes; a GPU profile places both pods on GPU nodes; datasets in the artifact
bucket are granted to the training pods and others are not; a third model in a copy of a stack file gets its DAGs
and its serving with no other change."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from components.airflow import CATALOG_ANNOTATION, catalog_checksum
from harness import checks
from harness.mocks import reveal
from harness.run import ROOT, ProgramRun, read_stack_file, run_program
from services.common import contract
from services.common.catalog import DEFAULT_PROFILES, ModelSpec, names, parse_catalog
from services.common.training_pod import TASK_CONTAINER, training_pod
from stacks.settings import StackSettings, load_settings
from tests.dags.inspect_dags import inspect

STACKS = ["dev", "prod"]
MODELS_KEY = "mlops-platform:models"


def settings_of(stack: str, stack_file: Path | None = None) -> StackSettings:
    cfg = read_stack_file(stack, stack_file)
    return load_settings(stack, cfg.config, set(cfg.secret_keys), cfg.source)


def kubernetes_versions(stack: str) -> list[str]:
    return sorted({settings_of(stack).kubernetes.min_version, checks.LATEST_KUBERNETES})


def objects(run: ProgramRun, kind: str) -> list[dict[str, Any]]:
    return [r.manifest for r in run.kubernetes_objects() if r.manifest.get("kind") == kind]


def airflow_values(run: ProgramRun) -> dict[str, Any]:
    (release,) = [reveal(r.inputs) for r in run.helm_releases() if reveal(r.inputs)["chart"] == "airflow"]
    values: dict[str, Any] = release["values"]
    return values


def catalog_configmap(run: ProgramRun) -> dict[str, Any]:
    """Airflow's catalog ConfigMap (the platform API mounts the same catalog in its own namespace)."""
    (found,) = [
        o
        for o in objects(run, "ConfigMap")
        if o["metadata"]["name"] == contract.MODEL_CATALOG_CONFIGMAP
        and o["metadata"]["namespace"] == f"mlops-{run.stack}-airflow"
    ]
    return found


def catalog_json(run: ProgramRun) -> dict[str, Any]:
    """The catalog exactly as Airflow receives it: the JSON in the ConfigMap the program writes."""
    document: dict[str, Any] = json.loads(catalog_configmap(run)["data"][contract.MODEL_CATALOG_KEY])
    return document


def deployments(run: ProgramRun) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects(run, "Deployment")}


def with_models(stack: str, tmp_path: Path, change: Any) -> Path:
    """A copy of Pulumi.<stack>.yaml whose `models` (and `profiles`) `change(config)` edited, nothing else."""
    doc = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    change(doc["config"])
    path = tmp_path / f"Pulumi.{stack}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


# --- serving: one deployment per model --------------------------------------------------------------------------
@pytest.mark.parametrize("stack", STACKS)
def test_one_serving_deployment_per_model_with_its_profile(stack: str, stack_run: Any) -> None:
    run, s = stack_run(stack), settings_of(stack)
    found = deployments(run)
    assert {name for name in found if name.startswith("model-")} == {names(model)["k8s"] for model in s.catalog.models}
    for model in s.catalog.models:
        k8s = names(model)["k8s"]
        pod = found[k8s]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["image"] == s.serving_image(model)
        assert container["resources"] == s.serving_profile(model).k8s_resources()
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env[contract.MODEL_NAME.name] == model
        assert "replicas" not in found[k8s]["spec"]
        for kind in ("Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Ingress"):
            assert [o for o in objects(run, kind) if o["metadata"]["name"] == k8s], (kind, model)
        (hpa,) = [o for o in objects(run, "HorizontalPodAutoscaler") if o["metadata"]["name"] == k8s]
        spec = s.catalog.models[model].serving
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (spec.min_replicas, spec.max_replicas)
    image = found["model-iris-classifier"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.startswith("ghcr.io/acme/mlops-platform/serving" + ("@sha256:" if stack == "prod" else ":0.1.0"))


# --- the catalog as Airflow receives it --------------------------------------------------------------------------
@pytest.mark.parametrize("stack", STACKS)
def test_the_catalog_airflow_receives_equals_the_settings(stack: str, stack_run: Any) -> None:
    run, s = stack_run(stack), settings_of(stack)
    configmap = catalog_configmap(run)
    text = configmap["data"][contract.MODEL_CATALOG_KEY]
    document = json.loads(text)
    assert text == json.dumps(document, indent=2, sort_keys=True) + "\n"  # sorted: the same catalog, same bytes
    specs = {
        name: {k: v for k, v in entry.items() if k in ModelSpec.model_fields}
        for name, entry in document["models"].items()
    }
    assert parse_catalog(specs, document["profiles"]) == s.catalog
    exported = run.export_values()["models"]
    for model, entry in document["models"].items():
        assert entry["names"] == names(model)
        assert entry[contract.CATALOG_SERVING_URL_KEY] == exported[model]["internalUrl"]
        assert entry[contract.CATALOG_RELOAD_URL_KEY] == exported[model]["internalUrl"]
        assert exported[model]["dag"] == entry["names"]["dag_id"]


@pytest.mark.parametrize("stack", STACKS)
def test_every_airflow_pod_mounts_the_catalog_and_rolls_when_it_changes(stack: str, stack_run: Any) -> None:
    """The chart's top-level `volumes`, `volumeMounts` and `env` go into every Airflow container, the
    KubernetesExecutor's pod template included; `airflowPodAnnotations` onto every Airflow pod."""
    run = stack_run(stack)
    values = airflow_values(run)
    (volume,) = [v for v in values["volumes"] if v.get("configMap") == {"name": contract.MODEL_CATALOG_CONFIGMAP}]
    assert {"name": volume["name"], "mountPath": contract.MODEL_CATALOG_MOUNT, "readOnly": True} in values[
        "volumeMounts"
    ]
    env = {e["name"]: e["value"] for e in values["env"]}
    assert env[contract.MODEL_CATALOG.name] == f"{contract.MODEL_CATALOG_MOUNT}/{contract.MODEL_CATALOG_KEY}"
    text = catalog_configmap(run)["data"][contract.MODEL_CATALOG_KEY]
    assert values["airflowPodAnnotations"][CATALOG_ANNOTATION] == catalog_checksum(text)
    (release,) = [r for r in run.helm_releases() if reveal(r.inputs)["chart"] == "airflow"]
    (configmap,) = [
        r
        for r in run.of_type("kubernetes:core/v1:ConfigMap")
        if r.manifest["metadata"]["name"] == contract.MODEL_CATALOG_CONFIGMAP
        and r.manifest["metadata"]["namespace"] == f"mlops-{stack}-airflow"
    ]
    assert configmap.urn in release.dependencies
    assert checks.helm_values_problems(run) == []
    assert checks.reference_problems(run) == []


@pytest.mark.parametrize("stack", STACKS)
def test_the_airflow_image_comes_from_the_images_settings(stack: str, stack_run: Any) -> None:
    image = airflow_values(stack_run(stack))["images"]["airflow"]
    if stack == "prod":  # by digest (the chart prefers it over a tag)
        assert image["repository"] == "ghcr.io/acme/mlops-platform/airflow" and "tag" not in image
        assert image["digest"].startswith("sha256:")
    else:
        assert image == {
            "repository": "ghcr.io/acme/mlops-platform/airflow",
            "tag": "3.3.2-mlops-0.1.0",
            "pullPolicy": "IfNotPresent",
        }


# --- the training pod the DAG submits ----------------------------------------------------------------------------
def training_pods(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per model, the pod override its training task carries (what dags/mlops_tasks/pipelines.py builds)."""
    return {
        model: training_pod(model, entry, document["profiles"][entry["training"]["profile"]])
        for model, entry in document["models"].items()
    }


@pytest.mark.parametrize("stack", STACKS)
def test_the_training_pods_are_strictly_valid_kubernetes(stack: str, stack_run: Any) -> None:
    pods = training_pods(catalog_json(stack_run(stack)))
    assert set(pods) == {"iris-classifier", "diabetes-regression"}
    for model, pod in pods.items():
        for version in kubernetes_versions(stack):
            kubernetes_validate.validate(pod, f"{version}.0", strict=True)
        (container,) = pod["spec"]["containers"]
        assert container["name"] == TASK_CONTAINER
        small = DEFAULT_PROFILES["small"]
        assert container["resources"] == {"requests": small["requests"], "limits": small["limits"]}, model
        assert "image" not in container  # the Airflow image (the pod template's) trains


def test_an_invalid_pod_is_refused_by_the_same_validation(stack_run: Any) -> None:
    pod = training_pods(catalog_json(stack_run("dev")))["iris-classifier"]
    pod["spec"]["containers"][0]["resources"]["limit"] = {"cpu": "1"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pod, "1.30.0", strict=True)


@pytest.mark.parametrize("stack", STACKS)
def test_a_gpu_profile_places_training_and_serving_on_gpu_nodes(stack: str, tmp_path: Path) -> None:
    def gpu_for_iris(config: dict[str, Any]) -> None:
        iris = config[MODELS_KEY]["iris-classifier"]
        iris["training"]["profile"] = "gpu"
        iris["serving"]["profile"] = "gpu"

    run = run_program(stack, with_models(stack, tmp_path, gpu_for_iris))
    gpu = DEFAULT_PROFILES["gpu"]
    limits = {**gpu["limits"], "nvidia.com/gpu": "1"}
    pod = training_pods(catalog_json(run))["iris-classifier"]
    for version in kubernetes_versions(stack):
        kubernetes_validate.validate(pod, f"{version}.0", strict=True)
    serving = deployments(run)["model-iris-classifier"]["spec"]["template"]["spec"]
    for spec in (pod["spec"], serving):
        (container,) = spec["containers"]
        assert container["resources"]["limits"] == limits
        assert container["resources"]["requests"]["nvidia.com/gpu"] == "1"
        assert spec["nodeSelector"] == gpu["nodeSelector"]
        assert spec["tolerations"] == gpu["tolerations"]
    other = deployments(run)["model-diabetes-regression"]["spec"]["template"]["spec"]
    assert "nodeSelector" not in other and "nvidia.com/gpu" not in other["containers"][0]["resources"]["limits"]
    assert checks.kubernetes_schema_problems(run, kubernetes_versions(stack)) == []


# --- datasets ----------------------------------------------------------------------------------------------------
def test_a_dataset_in_the_artifact_bucket_is_granted_and_one_elsewhere_is_not(stack_run: Any, tmp_path: Path) -> None:
    bucket = reveal(stack_run("dev").exports["artifactBucket"].value)  # the mocks name the bucket the same each run

    def datasets(config: dict[str, Any]) -> None:
        config[MODELS_KEY]["iris-classifier"]["training"]["dataset"] = f"s3://{bucket}/datasets/iris.csv"
        config[MODELS_KEY]["diabetes-regression"]["training"]["dataset"] = "s3://someone-elses-bucket/diabetes/"

    run = run_program("dev", with_models("dev", tmp_path, datasets))
    policies = {r.name: json.loads(r.inputs["policy"]) for r in run.of_type("aws:iam/userPolicy:UserPolicy")}
    arn = f"arn:aws:s3:::{bucket}"
    statements = {st["Sid"]: st for st in policies["artifacts-airflow-policy"]["Statement"]}
    assert statements["ReadDatasets"]["Action"] == "s3:GetObject"
    assert statements["ReadDatasets"]["Resource"] == [f"{arn}/datasets/iris.csv*"]
    assert statements["ListDatasets"]["Condition"] == {
        "StringLike": {"s3:prefix": ["datasets/iris.csv", "datasets/iris.csv*"]}
    }
    assert "someone-elses-bucket" not in json.dumps(policies)
    assert not any(st["Sid"].endswith("Datasets") for st in policies["artifacts-mlflow-policy"]["Statement"])
    # the training pods (Airflow task pods) hold the Airflow user's key as boto's shared credentials file, mounted
    # from the Airflow consumer's Secret (never as environment variables)
    secret = next(o for o in objects(run, "Secret") if o["metadata"]["name"] == "airflow-s3-logs")
    assert contract.AWS_CREDENTIALS_KEY in secret["stringData"]
    values = airflow_values(run)
    env = {e["name"]: e["value"] for e in values["env"]}
    path = env[contract.AWS_SHARED_CREDENTIALS_FILE.name]
    volume = next(v for v in values["volumes"] if v.get("secret", {}).get("secretName") == "airflow-s3-logs")
    mount = next(m for m in values["volumeMounts"] if m["name"] == volume["name"])
    assert path == f"{mount['mountPath']}/{contract.AWS_CREDENTIALS_KEY}"
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & {e.get("envName") for e in values.get("secret", [])}
    assert checks.plaintext_secret_problems(run) == []


# --- a third model: one entry in the stack file, nothing else ----------------------------------------------------
THIRD = {
    "training": {
        "source": {"repo": "https://github.com/example/models.git", "ref": "v1.2.0", "subdir": "churn"},
        "entrypoint": ["python", "train.py"],
        "profile": "medium",
        "params": {"depth": 6},
        "schedule": "0 3 * * 1",
    },
    "gate": {"metric": "val_auc", "direction": "max", "threshold": 0.8},
    "serving": {"profile": "medium", "workers": 4, "minReplicas": 1, "maxReplicas": 3},
}


@pytest.mark.parametrize("stack", STACKS)
def test_a_third_model_gets_its_dags_and_its_serving_with_no_other_change(stack: str, tmp_path: Path) -> None:
    path = with_models(stack, tmp_path, lambda config: config[MODELS_KEY].update({"Churn.Model": THIRD}))
    run = run_program(stack, path)
    document = catalog_json(run)
    entry = document["models"]["Churn.Model"]
    assert entry["names"]["dag_id"] == "train_churn_model"
    assert entry["training"]["source"] == {**THIRD["training"]["source"], "credentials": None}  # a public repository
    k8s = entry["names"]["k8s"]
    assert k8s == "model-churn-model"
    (container,) = deployments(run)[k8s]["spec"]["template"]["spec"]["containers"]
    assert container["resources"] == {
        "requests": {"cpu": "1", "memory": "2Gi"},
        "limits": {"cpu": "2", "memory": "4Gi"},
    }
    hosts = [r["host"] for i in objects(run, "Ingress") if i["metadata"]["name"] == k8s for r in i["spec"]["rules"]]
    assert hosts == [f"churn-model.models.{settings_of(stack, path).ingress.domain}"]
    assert run.export_values()["models"]["Churn.Model"]["dag"] == "train_churn_model"
    for version in kubernetes_versions(stack):
        kubernetes_validate.validate(training_pods(document)["Churn.Model"], f"{version}.0", strict=True)
    assert checks.kubernetes_schema_problems(run, kubernetes_versions(stack)) == []
    # the two examples are untouched
    assert {n for n in deployments(run) if n.startswith("model-")} == {
        "model-iris-classifier",
        "model-diabetes-regression",
        k8s,
    }
    if stack == "dev":  # the DAG file itself, loaded by Airflow with that JSON (one stack is enough: same file)
        text = catalog_configmap(run)["data"][contract.MODEL_CATALOG_KEY]
        report = inspect(tmp_path, text)
        assert report["import_errors"] == {}
        assert {"train_churn_model", "rollback_churn_model"} <= set(report["dags"])
        assert set(report["dags"]) == {
            dag for e in document["models"].values() for dag in (e["names"]["dag_id"], e["names"]["rollback_dag_id"])
        }
