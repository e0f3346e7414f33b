"""Image references as the Helm charts this program installs spell them.

Each chart takes an image in its own shape: `registry` + `repository` + `tag` + `digest` (traefik, loki, alloy),
a full `repository` with `tag` and `digest` (cert-manager, mlflow), `sha` without the `sha256:` prefix
(kube-prometheus-stack), or only `repository` and `tag`, where a pinned image carries its digest in the tag
(`<tag>@sha256:...`: the Airflow chart's auxiliary images, mlflow's init images). The references come from the
stack settings (`StackSettings.third_party_image`): pinned by digest in prod, by tag elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from stacks.settings import ImageRef


def split_registry(ref: ImageRef) -> tuple[str | None, str]:
    """(registry host or None, repository path) of a reference: `quay.io/prometheus/prometheus` ->
    ("quay.io", "prometheus/prometheus"); `postgres` -> (None, "postgres")."""
    first, _, rest = ref.repository.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return None, ref.repository


def _given(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def registry_form(ref: ImageRef, *, digest_key: str = "digest", bare_digest: bool = False) -> dict[str, Any]:
    """`{registry, repository, tag, digest}` (or `sha`, `bare_digest`: without `sha256:`)."""
    registry, repository = split_registry(ref)
    digest = ref.digest.removeprefix("sha256:") if (ref.digest and bare_digest) else ref.digest
    return _given({"registry": registry, "repository": repository, "tag": ref.tag, digest_key: digest})


def repository_form(ref: ImageRef) -> dict[str, Any]:
    """`{repository, tag, digest}` with the registry in the repository."""
    return _given({"repository": ref.repository, "tag": ref.tag, "digest": ref.digest})


def tag_form(ref: ImageRef) -> dict[str, Any]:
    """`{repository, tag}` for charts without a digest field: a pinned image's tag is `<tag>@sha256:...`."""
    tag = (ref.tag or "") + (f"@{ref.digest}" if ref.digest else "")
    return {"repository": ref.repository, "tag": tag}


ImageForm = Callable[[ImageRef], dict[str, Any]]
kube_prometheus_form: ImageForm = partial(registry_form, digest_key="sha", bare_digest=True)


def with_images(
    values: dict[str, Any], images: Mapping[str, ImageRef], table: Mapping[str, tuple[str, ImageForm]]
) -> dict[str, Any]:
    """`values` with each image of `table` (name -> (dotted values path, form)) that `images` holds set at its
    path (merged into what is there, `values` left unchanged); an image `images` lacks stays the chart's default."""
    out = dict(values)
    for name, (path, form) in table.items():
        if name not in images:
            continue
        *parents, leaf = path.split(".")
        node = out
        for key in parents:  # copies along the path only: values hold Outputs, which cannot be deep-copied
            node[key] = dict(node.get(key) or {})
            node = node[key]
        node[leaf] = {**(node.get(leaf) or {}), **form(images[name])}
    return out
