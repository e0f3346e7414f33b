"""Production runs the platform's own images pinned by digest (issue of delivery: a deploy runs exactly the images
built from its commit).

`platform-images-pinned-by-digest-in-prod`: in a production stack (decided as for the RDS policies, see
`policy.aws`), every container of a pod the program renders whose image lies under the platform's registry
(`mlops-platform:images.registry` from the stack config, default the policy's `registries`) must be referenced
`<repository>@sha256:<64 hex>`, and a Helm release that sets `values.images.airflow` (the Airflow chart) must set
its `digest` to `sha256:<64 hex>` (the chart then ignores the tag).

`third-party-images-pinned-by-digest-in-prod`: in a production
stack every other image is pinned by digest too: a pod's container image (`<repository>[:<tag>]@sha256:<64 hex>`),
and every image a Helm release's values set, as the charts this program uses spell it: `image: <reference>`, or a
mapping with `repository` (plus `registry`, `tag`) pinned by `digest` (airflow, alloy, cert-manager), `sha`
(kube-prometheus-stack), or a digest in `tag`/`repository` (mlflow, cloudnative-pg, loki, traefik). An image a chart
takes from its own defaults (not set in the values) is not visible to the pack.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

from pulumi_policy import ReportViolation, ResourceValidationArgs

from policy.aws import PROJECT, _is_production
from policy.common import as_list, get, known_items
from policy.kubernetes import HELM_TYPES, pod_of

DEFAULT_REGISTRIES = ("ghcr.io/acme/mlops-platform",)
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def _registries(config: Mapping[str, Any]) -> list[str]:
    try:
        stack_config = json.loads(os.environ.get("PULUMI_CONFIG") or "{}")
    except json.JSONDecodeError:
        stack_config = {}
    configured = stack_config.get(f"{PROJECT}:images.registry") if isinstance(stack_config, Mapping) else None
    registries = [str(r).rstrip("/") for r in as_list(config.get("registries"))] or list(DEFAULT_REGISTRIES)
    if isinstance(configured, str) and configured.strip():
        registries.append(configured.strip().rstrip("/"))
    return registries


def _pinned(image: str) -> bool:
    return "@" in image and bool(DIGEST.match(image.split("@", 1)[1]))


def _production(args: ResourceValidationArgs) -> str | None:
    """Why the resource's stack is production (as for the RDS policies), or None."""
    provider_props = args.provider.props if args.provider is not None else None
    return _is_production(None, provider_props, args.get_config())


def _platform_images(args: ResourceValidationArgs, registries: list[str]) -> Iterator[tuple[str, str, str]]:
    pod = pod_of(args.resource_type, args.props, args.name)
    if pod is None:
        return
    for c in pod.containers:
        image = c.spec.get("image")
        if isinstance(image, str) and any(image.startswith(r + "/") for r in registries):
            yield pod.label, c.label, image


def validate_platform_images_pinned(args: ResourceValidationArgs, report: ReportViolation) -> None:
    why = _production(args)
    if not why:
        return
    for label, container, image in _platform_images(args, _registries(args.get_config())):
        if not _pinned(image):
            report(
                f"{label}: {container} uses {image} without a digest; prod runs the platform's images pinned by "
                f"digest ({why}). Set images.<name> to <repository>@sha256:<digest> (the deploy workflow does).",
                None,
            )
    if args.resource_type in HELM_TYPES:
        airflow = get(get(args.props, "values"), "images", "airflow")
        if isinstance(airflow, Mapping) and not DIGEST.match(str(airflow.get("digest") or "")):
            report(
                f"Helm release {args.name!r} runs the Airflow image {airflow.get('repository')} without "
                f"values.images.airflow.digest ({why}). Set images.airflow to <repository>@sha256:<digest>.",
                None,
            )


# --- third-party images ----------------------------------------------------------------------------------
SHA = re.compile(r"^(?:sha256:)?[0-9a-f]{64}$")


def _helm_image(image: Mapping[str, Any]) -> tuple[str, bool] | None:
    """(reference, pinned) of a chart's `image` mapping: repository, registry, tag, digest (or `sha`)."""
    repository = image.get("repository")
    if not isinstance(repository, str) or not repository.strip():
        return None  # the chart's default image: not in the values, so not visible here
    registry = image.get("registry")
    ref = f"{registry.rstrip('/')}/{repository}" if isinstance(registry, str) and registry.strip() else repository
    tag = image.get("tag")
    shown = f"{ref}:{tag}" if isinstance(tag, str) and tag and "@" not in ref else ref
    digest = image.get("digest") or image.get("sha")
    pinned = bool(isinstance(digest, str) and SHA.match(digest)) or _pinned(ref) or _pinned(str(tag or ""))
    return shown, pinned


def helm_images(values: Any, path: str = "values") -> Iterator[tuple[str, str, bool]]:
    """(path, reference, pinned) of every image Helm values set: `image: <ref>` or a mapping with `repository`."""
    for key, value in known_items(values):
        sub = f"{path}.{key}"
        if isinstance(value, Mapping):
            found = _helm_image(value)
            if found is not None:
                yield sub, *found
            yield from helm_images(value, sub)
        elif str(key) == "image" and isinstance(value, str) and value.strip():
            yield sub, value, _pinned(value)


def _third_party(image: str, registries: list[str]) -> bool:
    return not any(image.startswith(r + "/") for r in registries)


def _unpinned_third_party(args: ResourceValidationArgs, registries: list[str]) -> Iterator[str]:
    pod = pod_of(args.resource_type, args.props, args.name)
    if pod is not None:
        for c in pod.containers:
            image = c.spec.get("image")
            if isinstance(image, str) and _third_party(image, registries) and not _pinned(image):
                yield f"{pod.label}: {c.label} uses {image}"
    if args.resource_type in HELM_TYPES:
        for path, ref, pinned in helm_images(get(args.props, "values")):
            if not pinned and _third_party(ref, registries):
                yield f"Helm release {args.name!r}: {path} is {ref}"


def validate_third_party_images_pinned(args: ResourceValidationArgs, report: ReportViolation) -> None:
    why = _production(args)
    if not why:
        return
    for finding in _unpinned_third_party(args, _registries(args.get_config())):
        report(
            f"{finding} without a digest; prod runs third-party images pinned by digest ({why}), since a tag can be "
            "moved to other content. Pin it: <repository>:<tag>@sha256:<digest> (Helm: set the chart's image digest).",
            None,
        )
