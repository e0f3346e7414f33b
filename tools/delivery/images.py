"""The platform's container images: what each is built from, its tags, and the digest a tag points to.

    python -m tools.delivery.images list [--json]                  # api, airflow, serving (services/*/Dockerfile)
    python -m tools.delivery.images inputs --image serving         # the files the image is built from
    python -m tools.delivery.images inputs --image gpu-serving --dockerfile profiles/gpu/Dockerfile --target serving
    python -m tools.delivery.images plan --image serving --registry ghcr.io/OWNER/REPO --commit SHA
    python -m tools.delivery.images digest ghcr.io/owner/repo/serving:inputs-0123abcd
    python -m tools.delivery.images config-map --images '[{"name": "serving", ...}]' --registry R --tag SHA

A platform image is `services/<name>/Dockerfile`, built with the repository root as context; a profile image
(`tools.delivery.stack_images`: `<profile>-<kind>`) names its own Dockerfile, build stage and context. Its
inputs are the Dockerfile and the sources of the COPY/ADD instructions (those without `--from`, and not URLs)
of the stages its target runs: the files git tracks or would track there. Their hash names the tag
`inputs-<hash>`, so the images workflow builds an image only when one of its inputs changed, and otherwise
reuses the image already pushed for the same inputs (and tags it with the commit). `plan` writes `name`,
`repository` (the registry path lowercased), `dockerfile`, `target`, `context`, `inputs-tag` and
`commit-tag` to $GITHUB_OUTPUT with `--github-output`.

`digest` asks the registry (OCI distribution API, with the bearer-token handshake registries such as
ghcr.io use; credentials from $REGISTRY_USERNAME/$REGISTRY_PASSWORD when set) which manifest a tag
names and prints its digest; exit 3 when the tag does not exist. localhost and 127.0.0.1 registries
are spoken to over plain HTTP, every other over HTTPS. `config-map` asks it for every image of the
images workflow's matrix pushed with `--tag` and prints the stack configuration that runs them by digest.

Standard library only: the workflows run it with the runner's python3, before any environment is set up.
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
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
NOT_FOUND = 3
PROJECT = "mlops-platform"  # stacks.settings.PROJECT (not imported: standard library only)
PROFILES_SETTING = "images.profiles"  # the profile images' references, by image name
IMAGE_NAME = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"  # a repository path component (stacks.settings.images.IMAGE_NAME)
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


def stages(dockerfile: str) -> list[tuple[str | None, str, list[tuple[str, list[str]]]]]:
    """The build stages of a Dockerfile: (name in lower case or None, its FROM image or stage, its instructions)."""
    out: list[tuple[str | None, str, list[tuple[str, list[str]]]]] = []
    for word, args in _instructions(dockerfile):
        if word == "FROM":
            plain = [a for a in args if not a.startswith("--")]
            name = plain[2].lower() if len(plain) >= 3 and plain[1].upper() == "AS" else None
            out.append((name, plain[0].lower() if plain else "", []))
        elif out:
            out[-1][2].append((word, args))
    return out


def copy_sources(dockerfile: str, target: str | None = None) -> list[str]:
    """The build-context paths COPY/ADD read (not those copied from another image or stage, nor URLs) in the
    stages that building `target` runs: that stage, the stage it is FROM and the stages it copies from, and
    theirs in turn. No target: the last stage, as `docker build` does."""
    found = stages(dockerfile)
    if not found:
        return []
    names = [name for name, _, _ in found]
    if target is not None and target.lower() not in names:
        raise ValueError(f"the Dockerfile has no stage {target!r} (stages: {', '.join(n for n in names if n)})")
    needed: set[int] = set()
    todo = [names.index(target.lower()) if target is not None else len(found) - 1]
    while todo:
        index = todo.pop()
        if index in needed:
            continue
        needed.add(index)
        _, base, body = found[index]
        earlier = names[:index]
        copied = [a.split("=", 1)[1].lower() for w, args in body for a in args if a.startswith("--from=")]
        todo += [earlier.index(r) for r in (base, *copied) if r in earlier]
    sources: list[str] = []
    for index in sorted(needed):
        for word, args in found[index][2]:
            if word not in ("COPY", "ADD") or any(a.startswith("--from") for a in args):
                continue
            paths = [a for a in args if not a.startswith("--")]
            sources += [p.removeprefix("./").rstrip("/") or "." for p in paths[:-1] if "://" not in p]
    return sources


def inputs_of(dockerfile: str, root: Path = ROOT, target: str | None = None, context: str = ".") -> list[str]:
    """The files an image is built from: its Dockerfile and what the stages of `target` copy from the build
    context (`context`, relative to `root`): the files git tracks or would track there, not ignored ones."""
    sources = [str(Path(context) / p) for p in copy_sources((root / dockerfile).read_text(), target)]
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", dockerfile, *sources],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return sorted({f for f in listed.split("\0") if f and (root / f).is_file()})


def inputs(name: str, root: Path = ROOT) -> list[str]:
    """The files platform image `name` is built from: its Dockerfile and what it copies."""
    return inputs_of(str(images(root)[name]), root)


def inputs_hash(
    name: str, root: Path = ROOT, dockerfile: str | None = None, target: str | None = None, context: str = "."
) -> str:
    """Hash of an image's name, build target and inputs: the same inputs give the same `inputs-<hash>` tag."""
    dockerfile = dockerfile or str(images(root)[name])
    digest = hashlib.sha256(f"image {name}\n".encode())
    if target is not None or context != ".":
        digest.update(f"target {target} context {context}\n".encode())
    for path in inputs_of(dockerfile, root, target, context):
        digest.update(f"{path}\0{hashlib.sha256((root / path).read_bytes()).hexdigest()}\n".encode())
    return digest.hexdigest()


def inputs_tag(
    name: str, root: Path = ROOT, dockerfile: str | None = None, target: str | None = None, context: str = "."
) -> str:
    """`inputs-<hash>`: the tag an image gets for its inputs, wherever it is built (workflow or `make images`)."""
    return f"inputs-{inputs_hash(name, root, dockerfile, target, context)[:32]}"


def plan(
    name: str,
    registry: str,
    commit: str,
    root: Path = ROOT,
    dockerfile: str | None = None,
    target: str | None = None,
    context: str = ".",
) -> dict[str, str]:
    """Where image `name` goes and what it is built from; a platform image needs no `dockerfile`, a profile
    image (`<profile>-<kind>`) names its own."""
    if dockerfile is None and name not in images(root):
        raise SystemExit(f"unknown image {name!r}: one of {', '.join(images(root))}, or give its --dockerfile")
    if not re.fullmatch(IMAGE_NAME, name):
        raise SystemExit(f"{name!r} is not an image name (lowercase letters, digits, - . _)")
    if not re.fullmatch(r"[0-9a-f]{40}", commit):
        raise SystemExit(f"--commit must be a full 40-character commit SHA, got {commit!r}")
    dockerfile = dockerfile or str(images(root)[name])
    return {
        "name": name,
        "repository": f"{registry.lower().rstrip('/')}/{name}",
        "dockerfile": dockerfile,
        "target": target or "",
        "context": context,
        "inputs-tag": inputs_tag(name, root, dockerfile, target, context),
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


def config_map(entries: Sequence[Mapping[str, Any]], registry: str, digests: Mapping[str, str]) -> dict[str, Any]:
    """The `pulumi/actions` config-map that runs the images by digest: `images.registry`, each platform image's
    own `images.<name>` and the profile images as one `images.profiles` object (JSON text, as `pulumi config
    set` stores it). `entries` are the images workflow's matrix (`stack_images list --all --json`), `digests`
    the pushed digest of each by name."""
    registry = registry.lower().rstrip("/")
    config: dict[str, Any] = {f"{PROJECT}:images.registry": {"value": registry, "secret": False}}
    profiles: dict[str, str] = {}
    for entry in entries:
        name, setting = str(entry["name"]), str(entry["setting"])
        reference = f"{registry}/{name}@{digests[name]}"
        if setting == PROFILES_SETTING:
            profiles[name] = reference
        else:
            config[f"{PROJECT}:{setting}"] = {"value": reference, "secret": False}
    config[f"{PROJECT}:{PROFILES_SETTING}"] = {"value": json.dumps(profiles, sort_keys=True), "secret": False}
    return config


def _write_outputs(values: Mapping[str, str]) -> None:
    if os.environ.get("GITHUB_OUTPUT"):
        with open(os.environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as fh:
            fh.writelines(f"{k}={v}\n" for k, v in values.items())


def _digest_or_exit(reference: str) -> str | int:
    try:
        digest = digest_of(reference)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"::error::cannot ask the registry about {reference}: {exc}", file=sys.stderr)
        return 1
    if digest is None:
        print(f"{reference}: not in the registry", file=sys.stderr)
        return NOT_FOUND
    return digest


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.delivery.images", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list").add_argument("--json", action="store_true", help="as a JSON list")
    built_from = argparse.ArgumentParser(add_help=False)
    built_from.add_argument("--image", required=True)
    built_from.add_argument("--dockerfile", default="", help="a profile image's Dockerfile (platform images: none)")
    built_from.add_argument("--target", default="", help="its build stage")
    built_from.add_argument("--context", default=".", help="its build context")
    sub.add_parser("inputs", parents=[built_from])
    pl = sub.add_parser("plan", parents=[built_from])
    pl.add_argument("--registry", required=True)
    pl.add_argument("--commit", required=True)
    pl.add_argument("--github-output", action="store_true")
    dg = sub.add_parser("digest")
    dg.add_argument("reference")
    dg.add_argument("--github-output", metavar="NAME", help="also write NAME=<digest> to $GITHUB_OUTPUT")
    cm = sub.add_parser("config-map")
    cm.add_argument("--images", required=True, help="the images workflow's matrix (JSON)")
    cm.add_argument("--registry", required=True)
    cm.add_argument("--tag", required=True, help="the tag every image was pushed with (the commit)")
    cm.add_argument("--github-output", metavar="NAME", help="also write NAME=<config-map> to $GITHUB_OUTPUT")
    cm.add_argument("--summary", action="store_true", help="list the references in $GITHUB_STEP_SUMMARY")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "list":
        print(json.dumps(list(images())) if args.json else "\n".join(images()))
        return 0
    if args.command in ("inputs", "plan"):
        return _inputs_or_plan(args)
    if args.command == "digest":
        return _digest_command(args)
    return _config_map_command(args)


def _inputs_or_plan(args: argparse.Namespace) -> int:
    dockerfile, target = args.dockerfile or None, args.target or None
    if args.command == "inputs":
        built = inputs_of(dockerfile, ROOT, target, args.context) if dockerfile else inputs(args.image)
        print("\n".join(built))
        return 0
    values = plan(args.image, args.registry, args.commit, ROOT, dockerfile, target, args.context)
    print("\n".join(f"{k}={v}" for k, v in values.items()))
    if args.github_output:
        _write_outputs(values)
    return 0


def _digest_command(args: argparse.Namespace) -> int:
    digest = _digest_or_exit(args.reference)
    if isinstance(digest, int):
        return digest
    print(digest)
    if args.github_output:
        _write_outputs({args.github_output: digest})
    return 0


def _config_map_command(args: argparse.Namespace) -> int:
    entries = json.loads(args.images)
    digests = {}
    for entry in entries:
        reference = f"{args.registry.lower().rstrip('/')}/{entry['name']}:{args.tag}"
        digest = _digest_or_exit(reference)
        if isinstance(digest, int):
            return digest
        digests[str(entry["name"])] = digest
    values = config_map(entries, args.registry, digests)
    text = json.dumps(values, sort_keys=True)
    print(text)
    if args.github_output:
        _write_outputs({args.github_output: text})
    if args.summary and os.environ.get("GITHUB_STEP_SUMMARY"):
        registry = args.registry.lower().rstrip("/")
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as fh:
            fh.writelines(f"- {name}: `{registry}/{name}@{digest}`\n" for name, digest in digests.items())
    return 0


if __name__ == "__main__":
    sys.exit(main())
