"""Settings group `images.*`: the platform's own container images (references, registry) and the profile images
built from this repository's Dockerfiles."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.common.catalog import Catalog, ImageBuild
from stacks.settings.engine import PROJECT, by_env, quote, setting

# --- images (the platform's own container images) --------------------------------------------------
# One registry path for every image the platform builds (.github/workflows/images.yml pushes there);
# a reference without a registry path (`serving@sha256:...`, `serving:0.1.0`) is an image under it.
# Prod runs images pinned by digest only: the deploy workflow passes the digests it built from the
# deployed commit as `images.*` configuration (docs/delivery.md).
IMAGE_NAME = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE_HOST = r"(?:localhost|[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)+)(?::[0-9]+)?"
_IMAGE_REF = re.compile(
    rf"^(?P<repository>(?:{_IMAGE_HOST}/)?{IMAGE_NAME}(?:/{IMAGE_NAME})*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>[a-z0-9]+:[a-zA-Z0-9]+))?$"
)
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_REGISTRY = re.compile(rf"^{_IMAGE_HOST}(?:/{IMAGE_NAME})*$")
DEFAULT_REGISTRY = "ghcr.io/acme/mlops-platform"  # this repository's own GitHub container registry path


@dataclass(frozen=True)
class ImageRef:
    """A container image reference: repository, and a tag, a digest or both."""

    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str, registry: str | None = None) -> ImageRef:
        """Parse `repo:tag`, `repo@sha256:<64 hex>` or `repo:tag@sha256:...`; a repository without a
        `/` is an image under `registry`. Raises ValueError saying what is wrong."""
        m = _IMAGE_REF.match(text.strip()) if isinstance(text, str) else None
        if m is None:
            raise ValueError("must be an image reference: <repository>:<tag> or <repository>@sha256:<64 hex digits>")
        repository, tag, digest = m.group("repository"), m.group("tag"), m.group("digest")
        if digest is not None and not _DIGEST.match(digest):
            raise ValueError(f"has a malformed digest {digest!r}: expected sha256: and 64 lowercase hex digits")
        if digest is None and tag is None:
            raise ValueError("needs a tag or a digest (without one Kubernetes pulls :latest)")
        if digest is None and tag == "latest":
            raise ValueError("must be a pinned tag or a digest, not 'latest'")
        if registry and "/" not in repository:
            repository = f"{registry}/{repository}"
        return cls(repository, tag, digest)

    @property
    def pinned(self) -> bool:
        """Pinned by digest: the reference always pulls the same bytes."""
        return self.digest is not None

    @property
    def reference(self) -> str:
        """What a pod spec's `image:` takes (a digest wins over a tag when both are given)."""
        return self.repository + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


def _check_image(value: Any) -> str | None:
    try:
        ImageRef.parse(value)
    except ValueError as exc:
        return str(exc)
    return None


def _check_profile_images(value: Any) -> str | None:
    for name, ref in value.items():
        if not re.fullmatch(IMAGE_NAME, str(name)):
            return f"has {name!r}, which is not an image name (<profile>-<kind>, lowercase, e.g. gpu-serving)"
        if not isinstance(ref, str):
            return f"has {name!r}: {quote(ref)}, which is not an image reference"
        problem = _check_image(ref)
        if problem is not None:
            return f"has {name!r}: {quote(ref)}, which {problem}"
    return None


def _check_registry(value: Any) -> str | None:
    if not _REGISTRY.match(str(value)):
        return "must be a registry path such as ghcr.io/<owner>/<repository> (lowercase, no tag)"
    return None


# --- third-party images ------------------------------------------------------------------------------
# Every image the stack runs that this repository does not build: the Jobs' and StatefulSet's images and the
# images the Helm values set. One reference each, `<repository>:<tag>@sha256:<64 hex>`: prod runs the digest,
# other environments the tag (by design: dev follows a tag's fixes without a digest bump). Renovate
# (.github/renovate.json, regex manager "third-party images") keeps tag and digest current. No registry could be
# reached where these were written: each digest is the multi-arch index digest that public repositories pinning
# that exact <repository>:<tag> agree on (the alloy config reloader's is the chart's own default,
# ../shared/charts/alloy/1.11.1/values.yaml); `docker buildx imagetools inspect <repository>:<tag>` prints it.
# Where none was found (postgres-14, mlflow, kube-webhook-certgen, git-sync) the digest is still 64 zeros, a
# placeholder Renovate's first run (or that command) replaces: prod cannot pull those images until it is real.
# A tag that a chart also pins (its appVersion) moves with the chart: tests/stacks/test_settings_images_third_party.py.
THIRD_PARTY_IMAGES: dict[str, str] = {
    "postgres-14": "postgres:14.19-bookworm@sha256:0000000000000000000000000000000000000000000000000000000000000000",
    "postgres-15": "postgres:15.14-bookworm@sha256:496f07cd16dff6406cee521a66b37080be917ea063f017336affdfcb1c61f90e",
    "postgres-16": "postgres:16.10-bookworm@sha256:38471f330eb885e04de130b768d6db4e10469e2311879c7e5c699f6d2d8a1c74",
    "postgres-17": "postgres:17.6-bookworm@sha256:f3bd19c606e442c3d7bdfa8002e03fe260a1023351e0ea4598032022b68dd6e3",
    "mlflow": "burakince/mlflow:3.15.1@sha256:0000000000000000000000000000000000000000000000000000000000000000",
    "busybox": "busybox:1.38.0@sha256:fd7dc98638c8e305f4dc34e979f1c0fdfdcaeb0fbf8fcff77ae834b6da3d7e6e",
    "traefik": "docker.io/traefik:v3.7.11@sha256:5203c3f39ca70de6790d964624e042463ffbd57715bc82be155cf224c0dd5144",
    "cert-manager-controller": "quay.io/jetstack/cert-manager-controller:v1.21.1"
    "@sha256:416a2d76870d996460e62bd7f521bf14fa017be9e3e904aab92163a331fcb61a",
    "cert-manager-webhook": "quay.io/jetstack/cert-manager-webhook:v1.21.1"
    "@sha256:d8b3961b51c8c7320633f8208dc46bf88aa13804d0f7cbe48a096b2c523cee42",
    "cert-manager-cainjector": "quay.io/jetstack/cert-manager-cainjector:v1.21.1"
    "@sha256:ccf6b919ec0500745a47a910118f834f9636d0aac1ff221245cd2557ed8c7c98",
    "cert-manager-acmesolver": "quay.io/jetstack/cert-manager-acmesolver:v1.21.1"
    "@sha256:dbc7cc1354f603918e7c5af7f55a0a620537394452c93a565bde75c6f48e8837",
    "cert-manager-startupapicheck": "quay.io/jetstack/cert-manager-startupapicheck:v1.21.1"
    "@sha256:d8ab6416e6e7303a86fa0a8daa82c94a8001f21c9d78eb2e7db20534e5d07ae8",
    "prometheus": "quay.io/prometheus/prometheus:v3.14.0-distroless"
    "@sha256:50c707e96da5ade383cb1707790576480485e93de06aa60ad8802cb5f744bd0a",
    "alertmanager": "quay.io/prometheus/alertmanager:v0.34.0"
    "@sha256:690c7b525f4367aa91f73e2f91c632206d32e97c6384bdbf2fb7a861b420340d",
    "prometheus-operator": "quay.io/prometheus-operator/prometheus-operator:v0.93.1"
    "@sha256:e52bb28fd41c98dd407c7a8cba8bdcfe7eabd7447e250afaf1fe7bb816dedbff",
    "prometheus-config-reloader": "quay.io/prometheus-operator/prometheus-config-reloader:v0.93.1"
    "@sha256:428f088fe6fe07ab138bda92113664b04848a1dc408e4d3680a60ecdb55d1a65",
    "kube-webhook-certgen": "ghcr.io/jkroepke/kube-webhook-certgen:1.8.7"
    "@sha256:0000000000000000000000000000000000000000000000000000000000000000",
    "loki": "docker.io/grafana/loki:3.7.6@sha256:efd47c67f9bac88ca29bcf8cb997d9ab29d1848bd0aff579282295542a745952",
    "alloy": "docker.io/grafana/alloy:v1.18.1@sha256:0f4434c92b3e6cdac38bb129b344e1790c246f7b6e2eaffcc16a5fa363240e33",
    "alloy-config-reloader": "quay.io/prometheus-operator/prometheus-config-reloader:v0.91.0"
    "@sha256:7d9e4eea5f1139e602508871f422b0116c60e87c662f3dcd234d5ab60cd0d8c1",
    "statsd-exporter": "quay.io/prometheus/statsd-exporter:v0.29.0"
    "@sha256:632f705804922d50c1c95ba8ff9c8c0cc18d4bbb0cc265dc4f9ae708271c95b3",
    "git-sync": "registry.k8s.io/git-sync/git-sync:v4.4.2"
    "@sha256:0000000000000000000000000000000000000000000000000000000000000000",
    "redis": "redis:7.2-bookworm@sha256:74566c6910d13ae61e7ce73ebd3127438a1fe805b309b097c323142719ec8a5b",
}


def _check_third_party(value: Any) -> str | None:
    for name, ref in value.items():
        if name not in THIRD_PARTY_IMAGES:
            return (
                f"has {name!r}, which is not a third-party image of the stack (one of {', '.join(THIRD_PARTY_IMAGES)})"
            )
        problem = _check_image(ref) if isinstance(ref, str) else "is not an image reference"
        if problem is not None:
            return f"has {name!r}: {quote(ref)}, which {problem}"
    return None


@dataclass(frozen=True)
class ImagesSettings:
    registry: str = setting(
        "images.registry",
        "registry path of the images the platform builds (the deploy workflow pushes there); "
        "default: this repository's GitHub container registry path",
        default=DEFAULT_REGISTRY,
        check=_check_registry,
    )
    serving: str | None = setting(
        "images.serving",
        "serving image: <repository>@sha256:<digest> (what the deploy workflow passes) or <repository>:<tag>; "
        "a name without '/' is under images.registry; prod: pinned by digest",
        default_fn=by_env("serving:0.1.0", None),
        check=_check_image,
    )
    airflow: str | None = setting(
        "images.airflow",
        "Airflow image (services/airflow/Dockerfile), same forms as images.serving; prod: pinned by digest",
        default_fn=by_env("airflow:3.3.2-mlops-0.1.0", None),
        check=_check_image,
    )
    api: str | None = setting(
        "images.api",
        "platform API image (services/api/Dockerfile), same forms as images.serving; prod: pinned by digest",
        default_fn=by_env("api:0.1.0", None),
        check=_check_image,
    )

    profiles: Mapping[str, str] = setting(
        "images.profiles",
        "the profiles' images built from this repository's Dockerfiles (profiles.<p>.images.<kind>: {dockerfile, "
        "target}), by image name <profile>-<kind> (e.g. gpu-serving): their references, same forms as "
        "images.serving; written by `make images`, passed by the deploy workflow; prod: pinned by digest",
        default={},
        check=_check_profile_images,
    )

    third_party: Mapping[str, str] = setting(
        "images.thirdParty",
        "the third-party images (name -> <repository>:<tag>@sha256:<digest>), shipped in THIRD_PARTY_IMAGES of "
        "stacks/settings/images.py and kept current by Renovate; entries here replace the shipped ones and are "
        "used as given; a shipped one runs by digest in prod and by its tag elsewhere (dev follows tags by design)",
        default={},
        check=_check_third_party,
    )

    def third_party_image(self, name: str, *, pinned: bool) -> ImageRef:
        """Third-party image `name`: the stack's `images.thirdParty` entry as given, else the shipped reference,
        by digest when `pinned` (prod) and by tag otherwise."""
        if name in self.third_party:
            return ImageRef.parse(self.third_party[name])
        ref = ImageRef.parse(THIRD_PARTY_IMAGES[name])
        return ref if pinned else ImageRef(ref.repository, ref.tag)

    def image(self, name: str) -> ImageRef | None:
        """The resolved reference of image `name` (`serving`, `airflow`, `api`), None when unset."""
        value = getattr(self, name)
        return None if value is None else ImageRef.parse(value, self.registry)

    @property
    def serving_image(self) -> ImageRef | None:
        return self.image("serving")

    @property
    def airflow_image(self) -> ImageRef | None:
        return self.image("airflow")


IMAGE_NAMES = ("serving", "airflow", "api")  # every image the platform builds: one images.<name> setting each


@dataclass(frozen=True)
class ProfileBuild:
    """An image the stack builds from a Dockerfile of this repository for its profiles (`profiles.<p>.images.<kind>`
    is an ImageBuild): its name (the key of its reference in `images.profiles`), the profile images that are it,
    as (profile, kind), and the models whose training or serving pods run it (empty: no pod of the stack does)."""

    name: str
    build: ImageBuild
    uses: tuple[tuple[str, str], ...]
    used_by: tuple[str, ...]


def profile_builds(catalog: Catalog, source: str, problems: list[str]) -> dict[str, ProfileBuild]:
    """Every image built from a Dockerfile for the profiles of `catalog` (as parsed, before references are
    resolved), by name. An image name that is not one, or one name built two ways, is a problem."""
    out: dict[str, ProfileBuild] = {}
    for profile, spec in sorted(catalog.profiles.items()):
        for kind, build in spec.images.builds().items():
            key = f"{source}: {PROJECT}:profiles.{profile}.images.{kind}"
            name = build.name(profile, kind)
            if not re.fullmatch(IMAGE_NAME, name):
                problems.append(
                    f"{key} is built from {build.dockerfile} as the image {name!r}, which is not an image name: "
                    "name it with `image` (lowercase letters, digits and - . _)"
                )
                continue
            users = {m for m, model in catalog.models.items() if getattr(model, kind).profile == profile}
            seen = out.get(name)
            if seen is None:
                out[name] = ProfileBuild(name, build, ((profile, kind),), tuple(sorted(users)))
            elif seen.build.model_copy(update={"image": None}) != build.model_copy(update={"image": None}):
                other = "profiles.{}.images.{}".format(*seen.uses[0])
                problems.append(
                    f"{key} builds the image {name} from {build.dockerfile} ({build.target}), but {other} builds it "
                    f"from {seen.build.dockerfile} ({seen.build.target}): one image name, one build"
                )
            else:
                out[name] = ProfileBuild(
                    name, build, (*seen.uses, (profile, kind)), tuple(sorted(users | set(seen.used_by)))
                )
    return out
