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
