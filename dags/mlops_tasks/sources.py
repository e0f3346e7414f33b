"""Where a model's training code is checked out for a run (`training.source` of its catalog entry).

- no `repo` and no `ref`: the platform's own checkout (the git-synced repository Airflow runs the DAGs from);
- otherwise `ref` (a branch, tag or commit; default: the repository's HEAD) of `repo` (default: the platform
  checkout's `origin`) is fetched, shallow, into a temporary folder that is deleted after the run.

The fetch uses the read-only credentials the training pod mounts at `services.common.git_access.MOUNT`
(`git_environment`): for an SSH URL, `GIT_SSH_COMMAND` with the key file and the pinned known_hosts
(`StrictHostKeyChecking=yes`, no prompt); for an https URL, a credential helper scoped to that URL's host that reads
the token file when git asks. Only file paths reach git's arguments and environment, never a credential; where no
file is mounted (local runs) git runs with the environment's own setup.

No Airflow or MLflow import here; git is run as a subprocess. Credentials in a URL never reach a message.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from services.common import git_access
from services.common.catalog import Source

GIT_TIMEOUT_SECONDS = 600
CREDENTIALS_DIR = Path(git_access.MOUNT)
_USERINFO = re.compile(r"(?<=://)[^/@]+@")


class SourceError(RuntimeError):
    """The model's code could not be fetched."""


def redact(url: str) -> str:
    """`url` without the user and password it may carry."""
    return _USERINFO.sub("***@", url)


def git_environment(url: str, credentials: Path | None = None) -> dict[str, str]:
    """The variables that make git fetch `url` with the credential files in `credentials` (default
    `CREDENTIALS_DIR`, the training pod's mount). For an SSH URL, when the key or known_hosts is there,
    `GIT_SSH_COMMAND`: ssh in batch mode with strict host key checking, the pinned known_hosts, and the key as its
    only identity. For an https URL with a token file, a credential helper for that URL's scheme and host only,
    which prints the user and the token when git asks (any other helper reset). Empty when there is nothing to
    use. The values name files, never their content."""
    credentials = credentials or CREDENTIALS_DIR
    if git_access.ssh_host(url) is not None:
        key, known_hosts = credentials / git_access.SSH_KEY_FILE, credentials / git_access.KNOWN_HOSTS_FILE
        if not key.is_file() and not known_hosts.is_file():
            return {}
        command = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"]
        if known_hosts.is_file():
            command += ["-o", f"UserKnownHostsFile={known_hosts}"]
        if key.is_file():
            command += ["-i", str(key), "-o", "IdentitiesOnly=yes"]
        return {"GIT_SSH_COMMAND": shlex.join(command)}
    parts = urlsplit(url)
    token, username = credentials / git_access.TOKEN_FILE, credentials / git_access.USERNAME_FILE
    if parts.scheme != "https" or not parts.hostname or not token.is_file():
        return {}
    user = f'"$(cat {shlex.quote(str(username))})"' if username.is_file() else git_access.DEFAULT_TOKEN_USERNAME
    helper = (
        f'!f() {{ test "$1" = get || exit 0; printf "username=%s\\npassword=%s\\n" {user} '
        f'"$(cat {shlex.quote(str(token))})"; }}; f'
    )
    host = parts.netloc.rpartition("@")[2]
    return {
        "GIT_CONFIG_COUNT": "2",
        "GIT_CONFIG_KEY_0": "credential.helper",  # an empty value drops the helpers configured before
        "GIT_CONFIG_VALUE_0": "",
        "GIT_CONFIG_KEY_1": f"credential.https://{host}.helper",
        "GIT_CONFIG_VALUE_1": helper,
    }


def _git(*args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None) -> str:
    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
            env={**os.environ, **(env or {}), "GIT_TERMINAL_PROMPT": "0"},  # fail instead of prompting
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


def fetch(url: str, ref: str | None, dest: Path, credentials: Path | None = None) -> str:
    """Fetch `ref` (default HEAD) of `url` into the empty folder `dest` with the credential files in `credentials`
    (`git_environment`), check it out; the commit."""
    what = f"{ref or 'HEAD'} of {redact(url)}"
    try:
        _git("init", "--quiet", str(dest))
        _git("fetch", "--quiet", "--depth", "1", url, ref or "HEAD", cwd=dest, env=git_environment(url, credentials))
        _git("checkout", "--quiet", "--detach", "FETCH_HEAD", cwd=dest)
        return _git("rev-parse", "HEAD", cwd=dest)
    except SourceError as exc:
        raise SourceError(f"the training code ({what}) could not be fetched: {exc}") from None


@contextlib.contextmanager
def checkout(source: Source, platform_root: Path) -> Iterator[Path]:
    """The folder that holds the repository of `source` during the block (its `subdir` is relative to it)."""
    if not source.fetched:
        yield platform_root
        return
    url = source.repo or origin_url(platform_root)
    with tempfile.TemporaryDirectory(prefix="mlops-source-") as tmp:
        fetch(url, source.ref, Path(tmp))
        yield Path(tmp)
