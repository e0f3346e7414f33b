"""The platform's container images: what each is built from, its tags, and the digest a tag points to.

    python -m tools.delivery.images list [--json]                  # airflow, serving (services/*/Dockerfile)
    python -m tools.delivery.images inputs --image serving         # the files the image is built from
    python -m tools.delivery.images plan --image serving --registry ghcr.io/OWNER/REPO --commit SHA
    python -m tools.delivery.images digest ghcr.io/owner/repo/serving:inputs-0123abcd

An image is `services/<name>/Dockerfile`, built with the repository root as context. Its inputs are
the Dockerfile and the sources of its COPY/ADD instructions (those without `--from`): the files git
tracks or would track there. Their hash names the tag `inputs-<hash>`, so the images workflow builds
an image only when one of its inputs changed, and otherwise reuses the image already pushed for the
same inputs (and tags it with the commit). `plan` writes `name`, `repository` (the registry path
lowercased), `dockerfile`, `inputs-tag` and `commit-tag` to $GITHUB_OUTPUT with `--github-output`.

`digest` asks the registry (OCI distribution API, with the bearer-token handshake registries such as
ghcr.io use; credentials from $REGISTRY_USERNAME/$REGISTRY_PASSWORD when set) which manifest a tag
names and prints its digest; exit 3 when the tag does not exist. localhost and 127.0.0.1 registries
are spoken to over plain HTTP, every other over HTTPS.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOT_FOUND = 3
MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)


def images(root: Path = ROOT) -> dict[str, Path]:
    """Every image the repository builds: name -> Dockerfile (relative to `root`)."""
    return {p.parent.name: p.relative_to(root) for p in sorted((root / "services").glob("*/Dockerfile"))}


def _instructions(dockerfile: str) -> list[tuple[str, list[str]]]:
    lines: list[tuple[str, list[str]]] = []
    current = ""
    for raw in dockerfile.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        if current.strip():
            word, _, rest = current.strip().partition(" ")
            lines.append((word.upper(), shlex.split(rest) if not rest.lstrip().startswith("[") else json.loads(rest)))
        current = ""
    return lines


def copy_sources(dockerfile: str) -> list[str]:
    """The build-context paths COPY/ADD read (not those copied from another image or stage)."""
    sources: list[str] = []
    for word, args in _instructions(dockerfile):
        if word not in ("COPY", "ADD"):
            continue
        if any(a.startswith("--from") for a in args):
            continue
        paths = [a for a in args if not a.startswith("--")]
        sources += [p.removeprefix("./").rstrip("/") or "." for p in paths[:-1]]
    return sources


def inputs(name: str, root: Path = ROOT) -> list[str]:
    """The files image `name` is built from: its Dockerfile and what it copies (tracked or new, not ignored)."""
    dockerfile = images(root)[name]
    paths = [str(dockerfile), *copy_sources((root / dockerfile).read_text())]
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *paths],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return sorted({f for f in listed.split("\0") if f and (root / f).is_file()})


def inputs_hash(name: str, root: Path = ROOT) -> str:
    digest = hashlib.sha256(f"image {name}\n".encode())
    for path in inputs(name, root):
        digest.update(f"{path}\0{hashlib.sha256((root / path).read_bytes()).hexdigest()}\n".encode())
    return digest.hexdigest()


def plan(name: str, registry: str, commit: str, root: Path = ROOT) -> dict[str, str]:
    if name not in images(root):
        raise SystemExit(f"unknown image {name!r}: one of {', '.join(images(root))}")
    if not re.fullmatch(r"[0-9a-f]{40}", commit):
        raise SystemExit(f"--commit must be a full 40-character commit SHA, got {commit!r}")
    return {
        "name": name,
        "repository": f"{registry.lower().rstrip('/')}/{name}",
        "dockerfile": str(images(root)[name]),
        "inputs-tag": f"inputs-{inputs_hash(name, root)[:32]}",
        "commit-tag": commit,
    }


# --- the registry --------------------------------------------------------------------------------------
def split_reference(ref: str) -> tuple[str, str, str]:
    """`host/path/name:tag` or `...@sha256:...` -> (host, path/name, tag or digest)."""
    if "@" in ref:
        name, reference = ref.split("@", 1)
    else:
        slash = ref.rfind("/")
        colon = ref.rfind(":")
        if colon <= slash:
            raise ValueError(f"{ref} has neither a tag nor a digest")
        name, reference = ref[:colon], ref[colon + 1 :]
    host, _, path = name.partition("/")
    if not path or not ("." in host or ":" in host or host == "localhost"):
        raise ValueError(f"{ref} does not start with a registry host")
    return host, path, reference


def _scheme(host: str) -> str:
    return "http" if host.split(":")[0] in ("localhost", "127.0.0.1") else "https"


def _bearer_token(challenge: str, env: Mapping[str, str], timeout: float) -> str | None:
    params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    if not challenge.lower().startswith("bearer") or "realm" not in params:
        return None
    query = urllib.parse.urlencode({k: v for k, v in params.items() if k in ("service", "scope")})
    request = urllib.request.Request(f"{params['realm']}?{query}")  # noqa: S310 - realm named by the registry
    if env.get("REGISTRY_USERNAME") and env.get("REGISTRY_PASSWORD"):
        basic = base64.b64encode(f"{env['REGISTRY_USERNAME']}:{env['REGISTRY_PASSWORD']}".encode()).decode()
        request.add_header("Authorization", f"Basic {basic}")
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        body = json.loads(response.read())
    token = body.get("token") or body.get("access_token")
    return str(token) if token else None


def digest_of(ref: str, env: Mapping[str, str] | None = None, timeout: float = 30.0) -> str | None:
    """The digest of the manifest `ref` names, or None when the registry does not have it."""
    env = os.environ if env is None else env
    host, path, reference = split_reference(ref)
    url = f"{_scheme(host)}://{host}/v2/{path}/manifests/{reference}"
    headers = {"Accept": MANIFEST_TYPES}
    for attempt in range(2):
        request = urllib.request.Request(url, headers=headers, method="HEAD")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                digest = response.headers.get("Docker-Content-Digest")
                if not digest:
                    raise ValueError(f"{host} answered without a Docker-Content-Digest header")
                return str(digest)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            if exc.code == 401 and attempt == 0:
                token = _bearer_token(exc.headers.get("WWW-Authenticate", ""), env, timeout)
                if token:
                    headers["Authorization"] = f"Bearer {token}"
                    continue
            raise
    return None


def _write_outputs(values: Mapping[str, str]) -> None:
    if os.environ.get("GITHUB_OUTPUT"):
        with open(os.environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as fh:
            fh.writelines(f"{k}={v}\n" for k, v in values.items())


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.delivery.images", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list").add_argument("--json", action="store_true", help="as a JSON list (a job matrix)")
    sub.add_parser("inputs").add_argument("--image", required=True)
    pl = sub.add_parser("plan")
    pl.add_argument("--image", required=True)
    pl.add_argument("--registry", required=True)
    pl.add_argument("--commit", required=True)
    pl.add_argument("--github-output", action="store_true")
    dg = sub.add_parser("digest")
    dg.add_argument("reference")
    dg.add_argument("--github-output", metavar="NAME", help="also write NAME=<digest> to $GITHUB_OUTPUT")
    args = p.parse_args(argv)
    if args.command == "list":
        print(json.dumps(list(images())) if args.json else "\n".join(images()))
    elif args.command == "inputs":
        print("\n".join(inputs(args.image)))
    elif args.command == "plan":
        values = plan(args.image, args.registry, args.commit)
        print("\n".join(f"{k}={v}" for k, v in values.items()))
        if args.github_output:
            _write_outputs(values)
    else:
        try:
            digest = digest_of(args.reference)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            print(f"::error::cannot ask the registry about {args.reference}: {exc}", file=sys.stderr)
            return 1
        if digest is None:
            print(f"{args.reference}: not in the registry", file=sys.stderr)
            return NOT_FOUND
        print(digest)
        if args.github_output:
            _write_outputs({args.github_output: digest})
    return 0


if __name__ == "__main__":
    sys.exit(main())
