"""The model catalog as stack settings (`models`, `profiles`): parsed once into the typed catalog, every mistake
reported as `<stack file>: mlops-platform:<key path> <message>` (model names, Kubernetes names, profiles, gate
metric, GPU placement, cron, sizing, hosts, datasets, images, images built from a Dockerfile and the reference
recorded for them), the single-model keys refused naming the key that replaced them; each model's serving
accepts exactly the aliases, routings and workers the serving service accepts; the shipped stack files carry
both examples and the references of the gpu profile's images."""

from __future__ import annotations

import json
from typing import Any

import pytest

from harness.run import ROOT, read_stack_file
from services.common import contract
from services.common.catalog import DEFAULT_PROFILES, MODEL_NAME_PATTERN
from services.common.serving_rules import DEFAULT_WORKERS, CanaryRouting, FixedRouting
from services.serving.settings import Settings
from services.serving.settings import SettingsError as ServiceSettingsError
from stacks.settings import PROJECT, RETIRED_KEYS, ImageRef, SettingsError, StackSettings, load_settings
from tests.stacks.test_settings import IRIS, MINIMAL, PROD_NETWORK

P = f"{PROJECT}:"
DIGEST = "sha256:" + "0123456789abcdef" * 4


def with_models(models: dict[str, Any], profiles: dict[str, Any] | None = None, **extra: str) -> dict[str, str]:
    config = {**MINIMAL, f"{P}models": json.dumps(models), **{f"{P}{k}": v for k, v in extra.items()}}
    if profiles is not None:
        config[f"{P}profiles"] = json.dumps(profiles)
    return config


def entry(**changes: Any) -> dict[str, Any]:
    """IRIS with some sections replaced or extended (`serving={...}` adds a serving section)."""
    model = json.loads(json.dumps(IRIS))
    for section, values in changes.items():
        model[section] = {**model.get(section, {}), **values}
    return model


def problems_of(config: dict[str, str], stack: str = "dev") -> list[str]:
    with pytest.raises(SettingsError) as info:
        load_settings(stack, config)
    return info.value.problems


def load(config: dict[str, str], stack: str = "dev") -> StackSettings:
    return load_settings(stack, config)


# --- parsed once, typed ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_stack_files_carry_both_examples(stack: str) -> None:
    cfg = read_stack_file(stack)
    s = load_settings(stack, cfg.config, set(cfg.secret_keys), cfg.source)
    assert set(s.catalog.models) == {"iris-classifier", "diabetes-regression"}
    dev = json.loads(read_stack_file("dev").config[f"{P}models"])
    for name, spec in s.catalog.models.items():
        # both stacks train the same examples (the local runs take the dev stack's catalog)
        assert (ROOT / spec.training.source.subdir).is_dir(), name
        raw = spec.model_dump(mode="json", by_alias=True, exclude_unset=True)
        assert {k: raw[k] for k in ("training", "gate")} == {k: dev[name][k] for k in ("training", "gate")}, name
    assert set(s.catalog.profiles) == set(DEFAULT_PROFILES)
    iris = s.catalog.models["iris-classifier"].serving
    expected = (
        FixedRouting(alias="champion")
        if stack == "dev"
        else CanaryRouting(primary="champion", challenger="challenger", percent=10)
    )
    assert iris.routing == expected
    assert (iris.min_replicas, iris.max_replicas) == ((1, 2) if stack == "dev" else (2, 10))


def test_profiles_add_to_the_shipped_ones() -> None:
    tiny = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}}
    s = load(with_models({"iris": entry(training={"profile": "tiny"})}, {"tiny": tiny}))
    assert set(s.catalog.profiles) == {"small", "medium", "gpu", "tiny"}
    assert s.catalog.models["iris"].training.profile == "tiny"
    assert load(MINIMAL).catalog.profiles["small"].requests.memory == "1Gi"


def test_hosts_and_images_per_model() -> None:
    s = load(
        with_models(
            {"Iris.Classifier": IRIS, "b": entry(serving={"host": "b.ml.dev.example.internal", "profile": "custom"})},
            {"custom": {**DEFAULT_PROFILES["small"], "images": {"serving": "serving-extra:1.0"}}},
        )
    )
    assert s.model_host("Iris.Classifier") == "iris-classifier.models.dev.example.internal"
    assert s.model_host("b") == "b.ml.dev.example.internal"
    assert s.serving_image("Iris.Classifier") == "ghcr.io/acme/mlops-platform/serving:0.1.0"  # images.serving (dev)
    # a profile image without a registry path is under images.registry, like the platform's own
    assert s.serving_image("b") == "ghcr.io/acme/mlops-platform/serving-extra:1.0"
    assert s.catalog.profiles["custom"].images.serving == "ghcr.io/acme/mlops-platform/serving-extra:1.0"


# --- every mistake names the stack file and the key path -----------------------------------------------------
def _gpu_without_placement() -> dict[str, Any]:
    return {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}, "gpus": 1}


@pytest.mark.parametrize(
    ("models", "profiles", "expected"),
    [
        pytest.param(
            {"iris model!": IRIS},
            None,
            f"mlops-platform:models.iris model! is not a valid registered-model name ({MODEL_NAME_PATTERN})",
            id="registered-model-name",
        ),
        pytest.param(
            {"1st-model": IRIS},
            None,
            "mlops-platform:models.1st-model yields the Kubernetes name '1st-model', which must start with a letter",
            id="kubernetes-name",
        ),
        pytest.param(
            {"Iris.Model": IRIS, "iris-model": IRIS},
            None,
            "mlops-platform:models.iris-model yields the same Kubernetes name 'iris-model' as models.Iris.Model",
            id="kubernetes-name-collision",
        ),
        pytest.param(
            {"iris": entry(serving={"profile": "huge"})},
            None,
            "mlops-platform:models.iris.serving.profile unknown profile 'huge'; profiles: gpu, medium, small",
            id="unknown-profile",
        ),
        pytest.param(
            {"iris": {"training": IRIS["training"], "gate": {"direction": "max"}}},
            None,
            "mlops-platform:models.iris.gate.metric Field required",
            id="missing-gate-metric",
        ),
        pytest.param(
            {"iris": IRIS},
            {"gpu2": _gpu_without_placement()},
            "mlops-platform:profiles.gpu2 a GPU profile needs GPU node selection: set nodeSelector "
            "(e.g. nvidia.com/gpu.present: 'true') or tolerations for the GPU nodes' taint",
            id="gpu-without-placement",
        ),
        pytest.param(
            {"iris": entry(training={"schedule": "every monday"})},
            None,
            "mlops-platform:models.iris.training.schedule must be a cron expression with 5 fields "
            "(minute hour day month weekday) or @daily etc.; got 'every monday'",
            id="schedule-not-cron",
        ),
        pytest.param(
            {"iris": entry(training={"schedule": "0 25 * * *"})},
            None,
            "mlops-platform:models.iris.training.schedule is not a valid cron expression: hour field '25' has '25' "
            "outside 0-23",
            id="schedule-out-of-range",
        ),
        pytest.param(
            {"iris": entry(serving={"workers": 4})},
            None,
            "mlops-platform:models.iris.serving.workers is 4: that many workers need a memory limit of at least "
            "1280Mi but profile 'small' has 1Gi; lower serving.workers or raise profiles.small.limits.memory",
            id="workers-beyond-memory",
        ),
        pytest.param(
            {"iris": entry(serving={"routing": {"mode": "fixed", "alias": "blue"}})},
            None,
            "mlops-platform:models.iris.serving routing uses aliases ['blue'] that aliases does not load",
            id="routing-alias-not-loaded",
        ),
        pytest.param(
            {"iris": entry(serving={"routing": {"mode": "random"}})},
            None,
            "mlops-platform:models.iris.serving.routing Input tag 'random' found using 'mode' does not match any "
            "of the expected tags: 'fixed', 'ab', 'canary', 'blue-green', 'shadow'",
            id="routing-mode",
        ),
        pytest.param(
            {"iris": entry(serving={"minReplicas": 3, "maxReplicas": 2})},
            None,
            "mlops-platform:models.iris.serving minReplicas must be <= maxReplicas",
            id="replica-bounds",
        ),
    ],
)
def test_each_catalog_mistake_names_its_key_path(
    models: dict[str, Any], profiles: dict[str, Any] | None, expected: str
) -> None:
    assert problems_of(with_models(models, profiles)) == [f"Pulumi.dev.yaml: {expected}"]


@pytest.mark.parametrize(
    ("serving", "expected"),
    [
        (
            {"host": "iris.example.com"},
            'serving.host must be a DNS name under ingress.domain (dev.example.internal); got "iris.example.com"',
        ),
        (
            {"host": "Not A Host.dev.example.internal"},
            "serving.host must be a DNS name under ingress.domain (dev.example.internal); "
            'got "Not A Host.dev.example.internal"',
        ),
        (
            {"host": "mlflow.dev.example.internal"},
            "serving.host mlflow.dev.example.internal is already the mlflow host",
        ),
    ],
)
def test_a_model_host_must_be_its_own_under_the_domain(serving: dict[str, Any], expected: str) -> None:
    assert problems_of(with_models({"iris": entry(serving=serving)})) == [
        f"Pulumi.dev.yaml: mlops-platform:models.iris.{expected}"
    ]


def test_two_models_cannot_share_a_host() -> None:
    same = {"host": "shared.dev.example.internal"}
    assert problems_of(with_models({"a": entry(serving=same), "b": entry(serving=same)})) == [
        "Pulumi.dev.yaml: mlops-platform:models.b.serving.host shared.dev.example.internal is already the host of "
        "models.a"
    ]
    # the default host of one model taken explicitly by another
    taken = {"host": "a.models.dev.example.internal"}
    assert problems_of(with_models({"a": IRIS, "b": entry(serving=taken)})) == [
        "Pulumi.dev.yaml: mlops-platform:models.b.serving.host a.models.dev.example.internal is already the host of "
        "models.a"
    ]


def test_a_dataset_names_an_object_or_prefix_not_a_whole_bucket() -> None:
    assert problems_of(with_models({"iris": entry(training={"dataset": "s3://some-bucket/"})})) == [
        "Pulumi.dev.yaml: mlops-platform:models.iris.training.dataset must name an object or a prefix inside its "
        'bucket, not a whole bucket; got "s3://some-bucket/"'
    ]
    # inside or outside the artifact bucket, any object or prefix is accepted (only the bucket's are granted)
    for dataset in ("s3://other-bucket/iris.csv", "s3://mlops-dev-artifacts-x/datasets/", "https://example.com/d.csv"):
        assert load(with_models({"iris": entry(training={"dataset": dataset})})).catalog.models["iris"]


def test_profile_images_are_references_and_pinned_in_prod() -> None:
    profile = {**DEFAULT_PROFILES["small"], "images": {"training": "trainer:latest"}}
    assert problems_of(with_models({"iris": IRIS}, {"t": profile})) == [
        "Pulumi.dev.yaml: mlops-platform:profiles.t.images.training must be a pinned tag or a digest, not 'latest'; "
        'got "trainer:latest"'
    ]
    tagged = {**DEFAULT_PROFILES["small"], "images": {"serving": "quay.io/acme/gpu-serving:2.0"}}
    prod = {**with_models({"iris": IRIS}, {"t": tagged}), **PROD_NETWORK}
    assert problems_of(prod, "prod") == [
        "Pulumi.prod.yaml: mlops-platform:profiles.t.images.serving must be pinned by digest in prod "
        '(<repository>@sha256:<64 hex>); got "quay.io/acme/gpu-serving:2.0"'
    ]
    pinned = {**DEFAULT_PROFILES["small"], "images": {"serving": f"quay.io/acme/gpu-serving@{DIGEST}"}}
    assert load({**with_models({"iris": IRIS}, {"t": pinned}), **PROD_NETWORK}, "prod").catalog.profiles["t"]


def test_a_profile_image_built_from_a_dockerfile_runs_the_reference_recorded_for_it() -> None:
    team = {
        **DEFAULT_PROFILES["medium"],
        "images": {"training": {"dockerfile": "teams/vision/Dockerfile", "target": "train"}},
    }
    models = {"iris": entry(training={"profile": "vision"}), "other": IRIS}
    # no reference recorded: refused, naming the key, the Dockerfile, the models that run it and the command
    assert problems_of(with_models(models, {"vision": team})) == [
        "Pulumi.dev.yaml: mlops-platform:profiles.vision.images.training is built from teams/vision/Dockerfile but "
        "mlops-platform:images.profiles has no vision-training (the pods of iris run it): build it and record its "
        "reference with `make images STACK=dev`"
    ]
    recorded = json.dumps({"vision-training": "vision-training:1.4"})
    s = load(with_models(models, {"vision": team}, **{"images.profiles": recorded}))
    assert s.catalog.profiles["vision"].images.training == "ghcr.io/acme/mlops-platform/vision-training:1.4"
    build = s.profile_builds["vision-training"]
    assert (build.build.dockerfile, build.build.target, build.uses) == (
        "teams/vision/Dockerfile",
        "train",
        (("vision", "training"),),
    )
    assert build.used_by == ("iris",)
    # the shipped gpu profile is built the same way; no model runs it here, so nothing needs recording
    assert {n: b.used_by for n, b in s.profile_builds.items() if n.startswith("gpu")} == {
        "gpu-training": (),
        "gpu-serving": (),
    }
    assert s.catalog.profiles["gpu"].images.serving is None


def test_profiles_that_name_the_same_built_image_share_it_and_one_name_is_one_build() -> None:
    # a copy of the shipped gpu profile (another priority class) runs the gpu profile's own images
    critical = {**DEFAULT_PROFILES["gpu"], "priorityClassName": "ml-high"}
    models = {"iris": entry(serving={"profile": "gpu-critical"}), "b": entry(training={"profile": "gpu"})}
    recorded = json.dumps({"gpu-serving": "gpu-serving:2.0", "gpu-training": "gpu-training:2.0"})
    s = load(with_models(models, {"gpu-critical": critical}, **{"images.profiles": recorded}))
    assert s.serving_image("iris") == "ghcr.io/acme/mlops-platform/gpu-serving:2.0"
    serving = s.profile_builds["gpu-serving"]
    assert serving.uses == (("gpu", "serving"), ("gpu-critical", "serving")) and serving.used_by == ("iris",)
    assert s.profile_builds["gpu-training"].used_by == ("b",)
    # the same name built from another Dockerfile would push two images to one repository
    other = {**DEFAULT_PROFILES["small"], "images": {"serving": {"dockerfile": "x/Dockerfile", "image": "gpu-serving"}}}
    assert problems_of(with_models({"iris": IRIS}, {"x": other})) == [
        "Pulumi.dev.yaml: mlops-platform:profiles.x.images.serving builds the image gpu-serving from x/Dockerfile "
        "(None), but profiles.gpu.images.serving builds it from profiles/gpu/Dockerfile (serving): one image name, "
        "one build"
    ]


def test_a_built_profile_image_has_an_image_name_and_is_written_in_the_build_form() -> None:
    upper = {**DEFAULT_PROFILES["small"], "images": {"serving": {"dockerfile": "x/Dockerfile"}}}
    assert problems_of(with_models({"iris": IRIS}, {"Team_X": upper})) == [
        "Pulumi.dev.yaml: mlops-platform:profiles.Team_X.images.serving is built from x/Dockerfile as the image "
        "'Team_X-serving', which is not an image name: name it with `image` (lowercase letters, digits and - . _)"
    ]
    named = {**DEFAULT_PROFILES["small"], "images": {"serving": {"dockerfile": "x/Dockerfile", "image": "team-x"}}}
    assert set(load(with_models({"iris": IRIS}, {"Team_X": named})).profile_builds) == {
        "gpu-serving",
        "gpu-training",
        "team-x",
    }
    outside = {**DEFAULT_PROFILES["small"], "images": {"serving": {"dockerfile": "../elsewhere/Dockerfile"}}}
    assert problems_of(with_models({"iris": IRIS}, {"t": outside})) == [
        "Pulumi.dev.yaml: mlops-platform:profiles.t.images.serving.dockerfile must be a relative path inside the "
        "repository; got '../elsewhere/Dockerfile'"
    ]
    typo = {**DEFAULT_PROFILES["small"], "images": {"serving": {"dockerFile": "x/Dockerfile"}}}
    assert problems_of(with_models({"iris": IRIS}, {"t": typo})) == [
        "Pulumi.dev.yaml: mlops-platform:profiles.t.images.serving.dockerfile Field required",
        "Pulumi.dev.yaml: mlops-platform:profiles.t.images.serving.dockerFile Extra inputs are not permitted",
    ]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_stack_files_record_the_gpu_profiles_images_so_a_model_can_move_to_it(stack: str) -> None:
    cfg = read_stack_file(stack)
    models = json.loads(cfg.config[f"{P}models"])
    for spec in models.values():
        spec["training"]["profile"] = spec["serving"]["profile"] = "gpu"
    s = load_settings(stack, {**cfg.config, f"{P}models": json.dumps(models)}, set(cfg.secret_keys), cfg.source)
    registry = s.images.registry
    gpu = s.catalog.profiles["gpu"].images
    assert (gpu.training, gpu.serving) == (
        ImageRef.parse(s.images.profiles["gpu-training"], registry).reference,
        ImageRef.parse(s.images.profiles["gpu-serving"], registry).reference,
    )
    assert all(b.used_by == tuple(sorted(models)) for b in s.profile_builds.values())
    assert {s.serving_image(m) for m in models} == {gpu.serving}


@pytest.mark.parametrize("key", sorted(RETIRED_KEYS))
def test_the_single_model_keys_are_refused_pointing_to_models(key: str) -> None:
    (problem,) = problems_of({**MINIMAL, f"{P}{key}": "1"})
    assert problem == f"Pulumi.dev.yaml: {P}{key} is no longer a setting: set {P}{RETIRED_KEYS[key]}"
    assert f"{P}models" in problem or f"{P}profiles" in problem


def test_all_catalog_mistakes_are_reported_at_once_with_other_settings() -> None:
    config = with_models({"iris": entry(serving={"profile": "huge"}), "b": {"training": IRIS["training"]}})
    problems = problems_of({**config, f"{P}database.mode": "rdss"})
    assert problems == [
        'Pulumi.dev.yaml: mlops-platform:database.mode must be one of rds, in-cluster, external; got "rdss"',
        "Pulumi.dev.yaml: mlops-platform:models.b.gate Field required",
        "Pulumi.dev.yaml: mlops-platform:models.iris.serving.profile unknown profile 'huge'; profiles: gpu, medium, "
        "small",
    ]


# --- each model's serving and the serving service apply the same rules -------------------------------------------
ALIASES = [
    ("champion", True),
    ("Champion-2", True),
    ("1st", True),
    ("_private", True),
    ("-dash", True),
    ("a" * 64, True),
    ("a" * 65, False),
    ("bad alias", False),
    ("é", False),
    ("a.b", False),
    ("a/b", False),
]


def service_settings(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Settings:
    """The serving service's settings from exactly `env` (plus its two required variables)."""
    for var in contract.ALL_VARS:
        monkeypatch.delenv(var.name, raising=False)
    required = {contract.MLFLOW_TRACKING_URI.name: "http://127.0.0.1:1", contract.MODEL_NAME.name: "m"}
    for name, value in {**required, **env}.items():
        monkeypatch.setenv(name, value)
    return Settings.from_env()


def service_accepts(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> bool:
    try:
        service_settings(monkeypatch, env)
    except ServiceSettingsError:
        return False
    return True


def stack_accepts(serving: dict[str, Any]) -> bool:
    try:
        load(with_models({"iris": entry(serving=serving)}))
    except SettingsError:
        return False
    return True


@pytest.mark.parametrize(("alias", "valid"), ALIASES)
def test_stack_and_service_accept_the_same_aliases(monkeypatch: pytest.MonkeyPatch, alias: str, valid: bool) -> None:
    listed = {"aliases": ["champion", alias]}
    assert stack_accepts(listed) is valid
    assert service_accepts(monkeypatch, {contract.SERVING_ALIASES.name: f"champion,{alias}"}) is valid
    routing = {"mode": "canary", "primary": "champion", "challenger": alias, "percent": 5}
    assert stack_accepts({**listed, "routing": routing}) is (valid and alias != "champion")
    env = {contract.SERVING_ROUTING.name: json.dumps(routing)}
    assert service_accepts(monkeypatch, env) is (valid and alias != "champion")


def test_a_models_routing_is_the_typed_object_its_pods_read(monkeypatch: pytest.MonkeyPatch) -> None:
    canary = {"mode": "canary", "primary": "champion", "challenger": "challenger", "percent": 10}
    s = load(with_models({"a": IRIS, "b": entry(serving={"routing": canary})}))
    assert s.catalog.models["a"].serving.routing == FixedRouting(alias="champion")
    assert s.catalog.models["b"].serving.routing == CanaryRouting(
        primary="champion", challenger="challenger", percent=10
    )
    for spec in s.catalog.models.values():
        env = {contract.SERVING_ROUTING.name: spec.serving.routing.env_value()}
        assert service_settings(monkeypatch, env).routing == spec.serving.routing


def test_workers_default_is_the_services(monkeypatch: pytest.MonkeyPatch) -> None:
    service = service_settings(monkeypatch, {})
    assert load(MINIMAL).catalog.models["iris"].serving.workers == service.workers == DEFAULT_WORKERS
