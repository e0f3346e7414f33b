"""Where a model's training code is checked out for a run (`training.source` of its catalog entry).

- no `repo` and no `ref`: the platform's own checkout (the git-synced repository Airflow runs the DAGs from);
- otherwise `ref` (a branch, tag or commit; default: the repository's HEAD) of `repo` (default: the platform
  checkout's `origin`) is fetched, shallow, into a temporary folder that is deleted after the run.

No Airflow or MLflow import here; git is run as a subprocess. Credentials in a URL never reach a message.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from services.common.catalog import Source

GIT_TIMEOUT_SECONDS = 600
_USERINFO = re.compile(r"(?<=://)[^/@]+@")


class SourceError(RuntimeError):
    """The model's code could not be fetched."""


def redact(url: str) -> str:
    """`url` without the user and password it may carry."""
    return _USERINFO.sub("***@", url)


def _git(*args: str, cwd: Path | None = None) -> str:
    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},  # fail instead of prompting for credentials
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SourceError(f"git {args[0]} failed: {type(exc).__name__}: {exc}") from None
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise SourceError(f"git {args[0]} failed (exit code {proc.returncode}): {redact(tail)}")
    return proc.stdout.strip()


def origin_url(checkout: Path) -> str:
    """The `origin` remote of a git checkout; SourceError when it has none."""
    try:
        return _git("remote", "get-url", "origin", cwd=checkout)
    except SourceError as exc:
        raise SourceError(
            f"training.source names a ref but no repo, and the platform checkout {checkout} has no origin remote "
            f"to fetch it from: set training.source.repo too ({exc})"
        ) from None


def fetch(url: str, ref: str | None, dest: Path) -> str:
    """Fetch `ref` (default HEAD) of `url` into the empty folder `dest`, check it out; the commit."""
    what = f"{ref or 'HEAD'} of {redact(url)}"
    try:
        _git("init", "--quiet", str(dest))
        _git("fetch", "--quiet", "--depth", "1", url, ref or "HEAD", cwd=dest)
        _git("checkout", "--quiet", "--detach", "FETCH_HEAD", cwd=dest)
        return _git("rev-parse", "HEAD", cwd=dest)
    except SourceError as exc:
        raise SourceError(f"the training code ({what}) could not be fetched: {exc}") from None


@contextlib.contextmanager
def checkout(source: Source, platform_root: Path) -> Iterator[Path]:
    """The folder that holds the repository of `source` during the block (its `subdir` is relative to it)."""
    if source.repo is None and source.ref is None:
        yield platform_root
        return
    url = source.repo or origin_url(platform_root)
    with tempfile.TemporaryDirectory(prefix="mlops-source-") as tmp:
        fetch(url, source.ref, Path(tmp))
        yield Path(tmp)
