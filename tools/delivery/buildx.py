"""The one place `make images` runs Docker: build one image with buildx, push it, and return its digest.

Everything else about images (which to build, from what, under which tag, where its reference is recorded) is
decided in `tools.delivery.stack_images` and `tools.delivery.images`, in plain Python. This step only turns a
decided build into a `docker buildx build --push` command line and reads back the digest buildx reports in its
metadata file (`containerimage.digest`: the manifest, or the index with attestations, that the tags name).
It needs the Docker CLI with the buildx plugin and a builder that can reach the registry (`docker login` first).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class BuildError(RuntimeError):
    """The build could not run or reported no digest."""


def command(
    dockerfile: str, context: str, target: str | None, tags: Sequence[str], platform: str, metadata: Path
) -> list[str]:
    """The `docker buildx build` arguments that build, push and describe one image (without the executable)."""
    args = ["buildx", "build", "--file", dockerfile, "--platform", platform, "--push", "--provenance", "mode=max"]
    args += ["--sbom", "true", "--metadata-file", str(metadata)]
    if target:
        args += ["--target", target]
    for tag in tags:
        args += ["--tag", tag]
    return [*args, context]


def build_and_push(
    dockerfile: str, context: str, target: str | None, tags: Sequence[str], platform: str, root: Path
) -> str:
    """Build `dockerfile` at `target` in `context` (relative to `root`), push it under every tag in `tags`, and
    return its digest. Raises BuildError when docker is missing, fails, or reports no digest."""
    docker = shutil.which("docker")
    if docker is None:
        raise BuildError(
            "docker is not on PATH: `make images` needs the Docker CLI with buildx and a builder (without a Docker "
            "engine, let the images workflow build them: docs/delivery.md)"
        )
    with tempfile.TemporaryDirectory(prefix="mlops-buildx-") as tmp:
        metadata = Path(tmp) / "metadata.json"
        done = subprocess.run([docker, *command(dockerfile, context, target, tags, platform, metadata)], cwd=root)
        if done.returncode != 0:
            raise BuildError(f"docker buildx build of {dockerfile} ({target or 'last stage'}) exited {done.returncode}")
        try:
            digest = json.loads(metadata.read_text()).get("containerimage.digest", "")
        except (OSError, ValueError) as exc:
            raise BuildError(f"docker buildx build wrote no metadata file: {exc}") from exc
    if not DIGEST.match(str(digest)):
        raise BuildError(f"docker buildx build reported no image digest (containerimage.digest: {digest!r})")
    return str(digest)
