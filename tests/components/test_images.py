"""Image references in the shapes of the charts' values: registry split from the repository, the digest under its
key (with or without `sha256:`), in the tag for charts without a digest key, nothing set for what a reference
lacks, and `with_images` setting only the images it is given, at their paths, without touching its input."""

from __future__ import annotations

from components.images import (
    kube_prometheus_form,
    registry_form,
    repository_form,
    split_registry,
    tag_form,
    with_images,
)
from stacks.settings import ImageRef

DIGEST = "sha256:" + "ab" * 32
PINNED = ImageRef.parse(f"quay.io/prometheus/prometheus:v3.14.0@{DIGEST}")
TAGGED = ImageRef.parse("busybox:1.38.0")


def test_the_registry_is_the_first_part_only_when_it_is_a_host() -> None:
    assert split_registry(PINNED) == ("quay.io", "prometheus/prometheus")
    assert split_registry(ImageRef.parse("grafana/loki:3.7.6")) == (None, "grafana/loki")
    assert split_registry(ImageRef.parse("localhost:5000/x/y:1")) == ("localhost:5000", "x/y")


def test_each_chart_shape() -> None:
    assert registry_form(PINNED) == {
        "registry": "quay.io",
        "repository": "prometheus/prometheus",
        "tag": "v3.14.0",
        "digest": DIGEST,
    }
    assert kube_prometheus_form(PINNED)["sha"] == "ab" * 32 and "digest" not in kube_prometheus_form(PINNED)
    assert repository_form(PINNED) == {
        "repository": "quay.io/prometheus/prometheus",
        "tag": "v3.14.0",
        "digest": DIGEST,
    }
    assert tag_form(PINNED) == {"repository": "quay.io/prometheus/prometheus", "tag": f"v3.14.0@{DIGEST}"}
    # by tag (dev): no digest key at all
    assert registry_form(TAGGED) == {"repository": "busybox", "tag": "1.38.0"}
    assert tag_form(TAGGED) == {"repository": "busybox", "tag": "1.38.0"}


def test_with_images_sets_the_given_images_at_their_paths_only() -> None:
    values = {"prometheus": {"prometheusSpec": {"retention": "15d"}}, "grafana": {"enabled": True}}
    table = {
        "prometheus": ("prometheus.prometheusSpec.image", registry_form),
        "alertmanager": ("alertmanager.alertmanagerSpec.image", registry_form),
    }
    out = with_images(values, {"prometheus": PINNED}, table)
    assert out["prometheus"]["prometheusSpec"] == {"retention": "15d", "image": registry_form(PINNED)}
    assert "alertmanager" not in out and out["grafana"] is values["grafana"]
    assert values["prometheus"]["prometheusSpec"] == {"retention": "15d"}  # the input is left as it was
