"""The images settings group: one registry setting whose default is this repository's own registry path, image
references by tag or digest resolved under it, the profile images' references by image name (`images.profiles`),
and prod refusing an image that is not pinned by digest, naming the stack file and the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.run import read_stack_file
from stacks.settings import (
    DEFAULT_REGISTRY,
    IMAGE_NAMES,
    PROJECT,
    ImageRef,
    SettingsError,
    declared,
    load_settings,
)
from tests.stacks.test_settings import MINIMAL, PROD_NETWORK

ROOT = Path(__file__).resolve().parents[2]
P = f"{PROJECT}:"
DIGEST = "sha256:" + "0123456789abcdef" * 4
BASE = MINIMAL
PROD = {**MINIMAL, **PROD_NETWORK}


def problems_of(stack: str, config: dict[str, str]) -> list[str]:
    with pytest.raises(SettingsError) as info:
        load_settings(stack, config)
    return info.value.problems


def test_the_default_registry_is_this_repositorys_own_path() -> None:
    # The repository the stacks deploy their DAGs from is this one: its GitHub container registry path.
    repo = read_stack_file("dev").config[f"{P}airflow.gitRepo"]
    owner_name = re.fullmatch(r"https://github\.com/([\w.-]+/[\w.-]+?)(\.git)?", repo)
    assert owner_name is not None
    assert f"ghcr.io/{owner_name.group(1).lower()}" == DEFAULT_REGISTRY
    assert load_settings("dev", BASE).images.registry == DEFAULT_REGISTRY


def test_dev_defaults_are_images_under_the_registry_and_one_setting_moves_them_all() -> None:
    dev = load_settings("dev", BASE).images
    assert dev.serving_image == ImageRef(f"{DEFAULT_REGISTRY}/serving", "0.1.0")
    assert dev.airflow_image == ImageRef(f"{DEFAULT_REGISTRY}/airflow", "3.3.2-mlops-0.1.0")
    assert dev.image("api") == ImageRef(f"{DEFAULT_REGISTRY}/api", "0.1.0")
    moved = load_settings("dev", {**BASE, f"{P}images.registry": "registry.example.com:5000/team/ml"}).images
    assert [moved.image(n).reference for n in IMAGE_NAMES] == [  # type: ignore[union-attr]
        "registry.example.com:5000/team/ml/serving:0.1.0",
        "registry.example.com:5000/team/ml/airflow:3.3.2-mlops-0.1.0",
        "registry.example.com:5000/team/ml/api:0.1.0",
    ]
    # a full reference is taken as it is
    full = load_settings("dev", {**BASE, f"{P}images.serving": f"quay.io/acme/serving@{DIGEST}"}).images
    assert full.serving_image == ImageRef("quay.io/acme/serving", None, DIGEST)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("serving:latest", "must be a pinned tag or a digest, not 'latest'"),
        ("serving", "needs a tag or a digest (without one Kubernetes pulls :latest)"),
        ("serving@sha256:abc", "has a malformed digest 'sha256:abc': expected sha256: and 64 lowercase hex digits"),
        ("Serving:1.0", "must be an image reference: <repository>:<tag> or <repository>@sha256:<64 hex digits>"),
    ],
)
def test_malformed_references_are_refused_naming_file_and_key(value: str, problem: str) -> None:
    assert problems_of("dev", {**BASE, f"{P}images.serving": value}) == [
        f'Pulumi.dev.yaml: mlops-platform:images.serving {problem}; got "{value}"'
    ]


def test_a_registry_is_a_lowercase_path_without_tag() -> None:
    (problem,) = problems_of("dev", {**BASE, f"{P}images.registry": "ghcr.io/Acme/x:1"})
    assert problem.startswith("Pulumi.dev.yaml: mlops-platform:images.registry must be a registry path")


@pytest.mark.parametrize("name", IMAGE_NAMES)
def test_prod_refuses_an_image_without_a_digest(name: str) -> None:
    assert problems_of("prod", {**PROD, f"{P}images.{name}": f"{name}:1.2.3"}) == [
        f"Pulumi.prod.yaml: mlops-platform:images.{name} must be pinned by digest in prod "
        f'(<repository>@sha256:<64 hex>); got "{name}:1.2.3"'
    ]
    pinned = load_settings("prod", {**PROD, f"{P}images.{name}": f"{name}:1.2.3@{DIGEST}"}).images.image(name)
    assert pinned is not None and pinned.pinned
    assert pinned.reference == f"{DEFAULT_REGISTRY}/{name}:1.2.3@{DIGEST}"


def test_dev_accepts_a_tag_and_the_prod_stack_file_carries_digests() -> None:
    assert not load_settings("dev", {**BASE, f"{P}images.serving": "serving:1.2.3"}).images.serving_image.pinned  # type: ignore[union-attr]
    cfg = read_stack_file("prod")
    prod = load_settings("prod", cfg.config, set(cfg.secret_keys), cfg.source).images
    for name in IMAGE_NAMES:
        ref = prod.image(name)
        assert ref is not None and ref.pinned and ref.repository == f"{DEFAULT_REGISTRY}/{name}"
    assert set(prod.profiles) == {"gpu-serving", "gpu-training"}
    for name, value in prod.profiles.items():
        ref = ImageRef.parse(value, prod.registry)
        assert ref.pinned and ref.repository == f"{DEFAULT_REGISTRY}/{name}"


def test_every_image_the_repository_builds_has_a_setting() -> None:
    built = {p.parent.name for p in (ROOT / "services").glob("*/Dockerfile")}
    assert built == set(IMAGE_NAMES)
    keys = {key for key, _, _ in declared()}
    assert {f"images.{n}" for n in IMAGE_NAMES} | {"images.registry", "images.profiles"} <= keys


def test_profile_image_references_are_named_references_and_pinned_in_prod() -> None:
    recorded = '{"gpu-serving": "gpu-serving:2.0", "gpu-training": "quay.io/acme/trainer@' + DIGEST + '"}'
    images = load_settings("dev", {**BASE, f"{P}images.profiles": recorded}).images
    assert images.profiles == {"gpu-serving": "gpu-serving:2.0", "gpu-training": f"quay.io/acme/trainer@{DIGEST}"}
    assert load_settings("dev", BASE).images.profiles == {}  # nothing recorded: no profile image is built here
    for value, problem in (
        ('{"GPU-serving": "a:1"}', "has 'GPU-serving', which is not an image name (<profile>-<kind>, lowercase"),
        ('{"gpu-serving": "a:latest"}', "has 'gpu-serving': \"a:latest\", which must be a pinned tag or a digest"),
        ('{"gpu-serving": 3}', "has 'gpu-serving': 3, which is not an image reference"),
        ('["gpu-serving"]', "must be an object"),
    ):
        (found,) = problems_of("dev", {**BASE, f"{P}images.profiles": value})
        assert found.startswith(f"Pulumi.dev.yaml: {P}images.profiles {problem}"), found
    # prod: each recorded reference pinned by digest, named by its own key (once, not again as the profile's)
    (found,) = problems_of("prod", {**PROD, f"{P}images.profiles": recorded})
    assert found == (
        f"Pulumi.prod.yaml: {P}images.profiles.gpu-serving must be pinned by digest in prod "
        '(<repository>@sha256:<64 hex>); got "gpu-serving:2.0"'
    )
