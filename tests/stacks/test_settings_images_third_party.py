"""The third-party images (`images.thirdParty`, shipped as THIRD_PARTY_IMAGES): each declared once as
`<repository>:<tag>@sha256:<64 hex>`, run by digest in prod and by tag in dev, replaceable per image (pinned in
prod, known names only, errors naming the stack file and the key), each chart's image at the tag its pinned chart
version runs (../shared/charts), and every one of them really set in the prod stack's pods or Helm values."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
import yaml

from components.mlflow import CHART_APP_VERSIONS
from harness.checks import charts_dir
from harness.fetch_charts import pinned_charts
from harness.mocks import reveal
from stacks.settings import PROJECT, THIRD_PARTY_IMAGES, ImageRef, SettingsError, load_settings
from tests.stacks.test_settings import MINIMAL, PROD_NETWORK

P = f"{PROJECT}:"
PROD = {**MINIMAL, **PROD_NETWORK}
DIGEST = "sha256:" + "ab" * 32
FULL = re.compile(r"^[a-z0-9./_-]+:[A-Za-z0-9_][A-Za-z0-9_.-]*@sha256:[0-9a-f]{64}$")


def problems_of(stack: str, config: dict[str, str]) -> list[str]:
    with pytest.raises(SettingsError) as info:
        load_settings(stack, config)
    return info.value.problems


@pytest.mark.parametrize(("name", "reference"), sorted(THIRD_PARTY_IMAGES.items()))
def test_each_image_is_declared_with_tag_and_digest(name: str, reference: str) -> None:
    assert FULL.match(reference), f"{name}: {reference} is not <repository>:<tag>@sha256:<64 hex>"


def test_prod_runs_the_digest_and_dev_the_tag() -> None:
    prod, dev = load_settings("prod", PROD), load_settings("dev", MINIMAL)
    for name, reference in THIRD_PARTY_IMAGES.items():
        shipped = ImageRef.parse(reference)
        assert prod.third_party_image(name) == shipped
        assert dev.third_party_image(name) == ImageRef(shipped.repository, shipped.tag)
    assert prod.mlflow_image.pinned and not dev.mlflow_image.pinned


def test_an_entry_replaces_the_shipped_image_as_given() -> None:
    given = f"mirror.example.com/library/postgres:16.11-bookworm@{DIGEST}"
    s = load_settings("prod", {**PROD, f"{P}images.thirdParty": f'{{"postgres-16": "{given}"}}'})
    assert s.third_party_image("postgres-16").reference == given
    assert s.third_party_image("postgres-17") == ImageRef.parse(THIRD_PARTY_IMAGES["postgres-17"])
    dev = load_settings("dev", {**MINIMAL, f"{P}images.thirdParty": f'{{"postgres-16": "{given}"}}'})
    assert dev.third_party_image("postgres-16").pinned  # as given, even in dev


def test_prod_refuses_a_third_party_image_by_tag_and_mlflow_by_image_tag() -> None:
    problems = problems_of("prod", {**PROD, f"{P}images.thirdParty": '{"redis": "redis:7.4"}'})
    assert problems == [
        f"Pulumi.prod.yaml: {P}images.thirdParty.redis must be pinned by digest in prod "
        '(<repository>:<tag>@sha256:<64 hex>); got "redis:7.4"'
    ]
    (problem,) = problems_of("prod", {**PROD, f"{P}mlflow.imageTag": "3.16.0"})
    assert (
        problem.startswith(f"Pulumi.prod.yaml: {P}mlflow.imageTag runs MLflow by tag")
        and "thirdParty.mlflow" in problem
    )
    assert not load_settings("dev", {**MINIMAL, f"{P}mlflow.imageTag": "3.16.0"}).mlflow_image.pinned


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('{"postgress-16": "postgres:16"}', "has 'postgress-16', which is not a third-party image of the stack"),
        ('{"redis": "redis"}', "has 'redis': \"redis\", which needs a tag or a digest"),
        ('{"redis": "redis:7@sha256:12"}', "which has a malformed digest"),
    ],
)
def test_a_wrong_entry_is_named_with_the_stack_file_and_key(value: str, expected: str) -> None:
    (problem,) = problems_of("dev", {**MINIMAL, f"{P}images.thirdParty": value})
    assert problem.startswith(f"Pulumi.dev.yaml: {P}images.thirdParty ") and expected in problem, problem


# --- the charts' images at the tags of the pinned chart versions ---------------------------------------------
def _chart(chart: str) -> tuple[dict[str, Any], dict[str, Any]]:
    version = {name: v for name, _, v in pinned_charts()}[chart]
    folder = charts_dir() / chart / version
    return yaml.safe_load((folder / "Chart.yaml").read_text()), yaml.safe_load((folder / "values.yaml").read_text())


def _dig(values: Mapping[str, Any], path: str) -> Any:
    for key in path.split("."):
        values = values[key]
    return values


def _chart_tags() -> Iterator[tuple[str, str]]:
    """(image name, the tag the pinned chart runs by default)."""
    version = {name: v for name, _, v in pinned_charts()}
    yield "mlflow", CHART_APP_VERSIONS[version["mlflow"]]
    yield "traefik", str(_chart("traefik")[0]["appVersion"])
    for component in ("controller", "webhook", "cainjector", "acmesolver", "startupapicheck"):
        yield f"cert-manager-{component}", version["cert-manager"]  # its Chart.yaml's appVersion is set at release
    yield "loki", str(_chart("loki")[0]["appVersion"])
    alloy_chart, alloy = _chart("alloy")
    yield "alloy", str(alloy_chart["appVersion"])
    yield "alloy-config-reloader", _dig(alloy, "configReloader.image.tag").split("@")[0]
    kps_chart, kps = _chart("kube-prometheus-stack")
    yield "prometheus-operator", str(kps_chart["appVersion"])
    yield "prometheus-config-reloader", str(kps_chart["appVersion"])
    yield "kube-webhook-certgen", _dig(kps, "prometheusOperator.admissionWebhooks.patch.image.tag")
    yield "prometheus", _dig(kps, "prometheus.prometheusSpec.image.tag")
    yield "alertmanager", _dig(kps, "alertmanager.alertmanagerSpec.image.tag")
    airflow = _chart("airflow")[1]
    for name, key in (("statsd-exporter", "statsd"), ("git-sync", "gitSync"), ("redis", "redis")):
        yield name, _dig(airflow, f"images.{key}.tag")
    yield "busybox", _dig(_chart("mlflow")[1], "initImages.dbchecker.tag")


def test_each_charts_image_runs_the_tag_of_the_pinned_chart() -> None:
    """A chart bump (Renovate) that moves its images fails here until THIRD_PARTY_IMAGES follows."""
    expected = dict(_chart_tags())
    actual = {name: ImageRef.parse(THIRD_PARTY_IMAGES[name]).tag for name in expected}
    assert actual == expected


# --- the prod stack sets every one of them -----------------------------------------------------------------
def _values_images(values: Any) -> Iterator[tuple[str, str]]:
    """(repository, tag) of every image a release's values set, in any of the charts' forms."""
    if isinstance(values, Mapping):
        repository = values.get("repository")
        if isinstance(repository, str) and isinstance(values.get("tag"), str):
            registry = values.get("registry")
            yield (f"{registry}/{repository}" if registry else repository), values["tag"].split("@")[0]
        for value in values.values():
            yield from _values_images(value)
    elif isinstance(values, list):
        for value in values:
            yield from _values_images(value)


def _pod_images(obj: Any) -> Iterator[tuple[str, str]]:
    if isinstance(obj, Mapping):
        image = obj.get("image")
        if isinstance(image, str) and "name" in obj:
            ref = ImageRef.parse(image)
            yield ref.repository, ref.tag or ""
        for value in obj.values():
            yield from _pod_images(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from _pod_images(value)


def test_the_prod_stack_sets_every_third_party_image(stack_run: Callable[[str], Any]) -> None:
    run = stack_run("prod")
    found = {i for r in run.helm_releases() for i in _values_images(reveal(r.inputs).get("values"))}
    found |= {i for r in run.kubernetes_objects() for i in _pod_images(r.manifest.get("spec"))}
    unused = {"postgres-14", "postgres-15", "postgres-17", "redis"}  # other engine versions; Celery only
    missing = [
        name
        for name, reference in THIRD_PARTY_IMAGES.items()
        if name not in unused and (lambda r: (r.repository, r.tag))(ImageRef.parse(reference)) not in found
    ]
    assert missing == []
