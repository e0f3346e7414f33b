"""Settings group `serving.*`: platform-wide serving settings (per model: `models.<name>.serving`)."""

from __future__ import annotations

from dataclasses import dataclass

from stacks.settings.engine import check_image_tag, setting


@dataclass(frozen=True)
class ServingSettings:
    """Platform-wide serving settings; everything per model lives in `models.<name>.serving`."""

    image: str = setting(
        "serving.image",
        "serving image repository (used when images.serving is unset)",
        default="ghcr.io/mlops-platform/serving",
    )
    image_tag: str = setting("serving.imageTag", "serving image tag (pinned)", default="0.1.0", check=check_image_tag)
    poll_seconds: int = setting("serving.pollSeconds", "registry watcher interval", default=30, minimum=1, maximum=3600)
