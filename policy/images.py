"""Production runs the platform's own images pinned by digest (issue of delivery: a deploy runs exactly the images
built from its commit).

`platform-images-pinned-by-digest-in-prod`: in a production stack (decided as for the RDS policies, see
`policy.aws`), every container of a pod the program renders whose image lies under the platform's registry
(`mlops-platform:images.registry` from the stack config, default the policy's `registries`) must be referenced
`<repository>@sha256:<64 hex>`, and a Helm release that sets `values.images.airflow` (the Airflow chart) must set
its `digest` to `sha256:<64 hex>` (the chart then ignores the tag). Third-party images (MLflow, Postgres) are
checked by `k8s-pinned-image-tags` only.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

from pulumi_policy import ReportViolation, ResourceValidationArgs

from policy.aws import PROJECT, _is_production
from policy.common import as_list, get
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


def _platform_images(args: ResourceValidationArgs, registries: list[str]) -> Iterator[tuple[str, str, str]]:
    pod = pod_of(args.resource_type, args.props, args.name)
    if pod is None:
        return
    for c in pod.containers:
        image = c.spec.get("image")
        if isinstance(image, str) and any(image.startswith(r + "/") for r in registries):
            yield pod.label, c.label, image


def validate_platform_images_pinned(args: ResourceValidationArgs, report: ReportViolation) -> None:
    provider_props = args.provider.props if args.provider is not None else None
    why = _is_production(None, provider_props, args.get_config())
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
