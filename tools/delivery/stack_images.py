"""Every image a stack runs that this repository builds: what `make images` builds, pushes and records.

    python -m tools.delivery.stack_images list --stack dev [--json]   # what `make images STACK=dev` builds
    python -m tools.delivery.stack_images list --all --json           # every stack's: the images workflow's matrix
    python -m tools.delivery.stack_images build --stack dev [--registry ghcr.io/you/repo] [--platform linux/amd64]
    python -m tools.delivery.stack_images record --stack prod serving=<reference> gpu-serving=<reference> ...

The images of a stack are the platform's (`services/<name>/Dockerfile`; reference in `images.<name>`) and the
profile images built from a Dockerfile (`profiles.<p>.images.<kind>: {dockerfile, target, context}`) that a
model of the stack runs (`<p>-<kind>`; reference in `images.profiles`). With `--all`, those of every stack file,
run or not, so that the images workflow keeps every Dockerfile built and scanned.

`build` (`make images`) first records placeholders in memory and loads the result as stack settings, so a bad
registry or stack file fails before anything is built; then builds and pushes each image to
`<registry>/<name>:inputs-<hash of its inputs>` (the tag the images workflow gives the same inputs) through
`tools.delivery.buildx`, the only step that runs Docker; prints each digest; and records the references
(`<registry>/<name>@sha256:...`, and `images.registry` when `--registry` is given) in `Pulumi.<stack>.yaml`,
printing the same as `pulumi config set` commands for a stack configured elsewhere. `record` writes references
built elsewhere (by the images workflow, say) the same way.

The stack file is edited in place, line by line: only the `images.*` keys written change (a missing key goes
after the last `images.*` key, or at the end of `config:`), every comment and every other line stays as it
was. The result is parsed back and must hold exactly the old configuration plus the new references, and load
as valid settings of the stack, before it is written.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.run import read_stack_file
from stacks.settings import (
    DEFAULT_REGISTRY,
    PROJECT,
    SettingsError,
    load_settings,
    stack_profile_builds,
)
from tools.delivery import buildx
from tools.delivery import images as image_tool

ROOT = image_tool.ROOT
PROFILES_SETTING = image_tool.PROFILES_SETTING
PLACEHOLDER_DIGEST = "sha256:" + "0" * 64  # what `build` validates the stack file with before building
_ENTRY = re.compile(r"^  (?P<key>[A-Za-z0-9_.-]+:[A-Za-z0-9_.-]+):(?:[ \t]|$)")


@dataclass(frozen=True)
class Image:
    """One image to build: its name (the repository under the registry), what it is built from, and the
    setting that holds its reference (`images.<name>`, or `images.profiles` for a profile image)."""

    name: str
    dockerfile: str
    target: str | None
    context: str
    setting: str

    def as_json(self) -> dict[str, str]:
        """A matrix entry of the images workflow."""
        return {
            "name": self.name,
            "dockerfile": self.dockerfile,
            "target": self.target or "",
            "context": self.context,
            "setting": self.setting,
        }


def stack_file(stack: str, root: Path = ROOT) -> Path:
    return root / f"Pulumi.{stack}.yaml"


def stacks(root: Path = ROOT) -> list[str]:
    """The stacks that have a stack file."""
    return sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in root.glob("Pulumi.*.yaml"))


def stack_images(stack: str, root: Path = ROOT, run_only: bool = True) -> list[Image]:
    """The images of `stack`: the platform's, then its profile images built from a Dockerfile (only those a
    model runs with `run_only`). Raises SettingsError naming the key when a Dockerfile is missing."""
    platform = [Image(name, str(path), None, ".", f"images.{name}") for name, path in image_tool.images(root).items()]
    cfg = read_stack_file(stack, stack_file(stack, root))
    builds = stack_profile_builds(stack, cfg.config, cfg.source)
    profiles = []
    for build in builds.values():
        if run_only and not build.used_by:
            continue
        spec = build.build
        if not (root / spec.dockerfile).is_file():
            profile, kind = build.uses[0]
            raise SettingsError(
                [
                    f"{cfg.source}: {PROJECT}:profiles.{profile}.images.{kind}.dockerfile {spec.dockerfile} is not "
                    "a file of the repository"
                ]
            )
        profiles.append(Image(build.name, spec.dockerfile, spec.target, spec.context, PROFILES_SETTING))
    return platform + profiles


def all_images(root: Path = ROOT) -> list[Image]:
    """Every image of every stack file, run or not. An image name built differently by two stacks (a profile
    of the same name with another Dockerfile) is an error: both would push to the same repository."""
    found: dict[str, tuple[Image, str]] = {}
    for stack in stacks(root):
        for image in stack_images(stack, root, run_only=False):
            seen = found.setdefault(image.name, (image, stack))
            if seen[0] != image:
                raise SettingsError(
                    [
                        f"image {image.name} is built from {seen[0].dockerfile} ({seen[0].target}) in "
                        f"{stack_file(seen[1]).name} but from {image.dockerfile} ({image.target}) in "
                        f"{stack_file(stack).name}: give the profiles different names"
                    ]
                )
    return [image for image, _ in found.values()]


# --- the stack file ------------------------------------------------------------------------------------------
def _scalar(value: str) -> str:
    """`value` as a YAML scalar: plain when it reads back as the same string, else double-quoted (JSON)."""
    try:
        plain = yaml.safe_load(f"k: {value}") if value and not value.startswith(("'", '"')) else None
    except yaml.YAMLError:
        plain = None
    return value if isinstance(plain, dict) and plain.get("k") == value else json.dumps(value)


def _render(key: str, value: str | Mapping[str, str]) -> list[str]:
    if isinstance(value, str):
        return [f"  {key}: {_scalar(value)}\n"]
    if not value:
        return [f"  {key}: {{}}\n"]
    return [f"  {key}:\n"] + [f"    {name}: {_scalar(ref)}\n" for name, ref in sorted(value.items())]


def _config_entries(lines: Sequence[str]) -> tuple[dict[str, tuple[int, int]], int]:
    """The `config:` block's entries (full key -> first line, line after its last) and the line after the
    block's last entry."""
    starts = [i for i, line in enumerate(lines) if line.rstrip() == "config:"]
    if len(starts) != 1:
        raise ValueError("the stack file has no top-level `config:` mapping")
    entries: dict[str, tuple[int, int]] = {}
    current: str | None = None
    end = starts[0] + 1
    for i in range(starts[0] + 1, len(lines)):
        line = lines[i]
        stripped = line.strip()
        if stripped and not line.startswith(" ") and not stripped.startswith("#"):
            break  # the next top-level key
        indent = len(line) - len(line.lstrip(" "))
        match = _ENTRY.match(line)
        if match:
            current = match.group("key")
            entries[current] = (i, i + 1)
            end = i + 1
        elif current is not None and stripped and indent > 2:
            entries[current] = (entries[current][0], i + 1)  # a continuation of the entry (nested value)
            end = i + 1
        elif stripped and indent <= 2 and not stripped.startswith("#"):
            raise ValueError(f"line {i + 1} of the stack file is not a `config:` entry: {stripped!r}")
    return entries, end


def record(text: str, updates: Mapping[str, str | Mapping[str, str]]) -> str:
    """`text` (a stack file) with the settings in `updates` (`images.serving` -> reference, `images.profiles` ->
    {name: reference}) set, every other line unchanged. Raises ValueError when the result would not be the old
    configuration plus exactly these values."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    for setting, value in updates.items():
        key = f"{PROJECT}:{setting}"
        entries, end = _config_entries(lines)
        if key in entries:
            first, last = entries[key]
            lines[first:last] = _render(key, value)
            continue
        ours = [span for k, span in entries.items() if k.startswith(f"{PROJECT}:images.")]
        at = max(last for _, last in ours) if ours else end
        new = _render(key, value)
        if not ours:
            new = ["  # The images this stack runs, by digest: written by `make images` (docs/delivery.md).\n", *new]
        lines[at:at] = new
    result = "".join(lines)
    before, after = yaml.safe_load(text) or {}, yaml.safe_load(result) or {}
    expected_config = {**(before.get("config") or {}), **{f"{PROJECT}:{k}": v for k, v in updates.items()}}
    if after.get("config") != expected_config or {k: v for k, v in after.items() if k != "config"} != {
        k: v for k, v in before.items() if k != "config"
    }:
        raise ValueError("the edited stack file does not read back as the old one plus the new image references")
    return result


def recorded_profiles(stack: str, root: Path = ROOT) -> dict[str, str]:
    """The profile image references the stack file holds now (`images.profiles`)."""
    raw = read_stack_file(stack, stack_file(stack, root)).config.get(f"{PROJECT}:{PROFILES_SETTING}", "{}")
    value = json.loads(raw)
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def updates_for(
    images: Sequence[Image], references: Mapping[str, str], profiles_now: Mapping[str, str], registry: str | None
) -> dict[str, str | dict[str, str]]:
    """The settings that record `references` (image name -> reference): one `images.<name>` per platform
    image, the profile images merged into the `images.profiles` the stack file holds (`profiles_now`), and
    `images.registry` when the images were pushed somewhere else than the stack's registry."""
    updates: dict[str, str | dict[str, str]] = {} if registry is None else {"images.registry": registry}
    profiles = dict(profiles_now)
    for image in images:
        if image.name not in references:
            continue
        if image.setting == PROFILES_SETTING:
            profiles[image.name] = references[image.name]
        else:
            updates[image.setting] = references[image.name]
    if profiles != dict(profiles_now):
        updates[PROFILES_SETTING] = dict(sorted(profiles.items()))
    return updates


def config_commands(stack: str, updates: Mapping[str, str | Mapping[str, str]]) -> list[str]:
    """The same settings as `pulumi config set` commands (objects as JSON, as `pulumi config set` takes them)."""
    commands = []
    for setting, value in updates.items():
        text = value if isinstance(value, str) else json.dumps(dict(value), sort_keys=True)
        commands.append(f"pulumi config set --stack {stack} {PROJECT}:{setting} -- {shlex.quote(text)}")
    return commands


def write_checked(
    stack: str, updates: Mapping[str, str | Mapping[str, str]], root: Path = ROOT, write: bool = True
) -> str:
    """Record `updates` in the stack file once the result loads as the stack's settings; returns the new text
    (written unless `write` is false). Raises SettingsError or ValueError, writing nothing."""
    path = stack_file(stack, root)
    text = record(path.read_text(), updates)
    with tempfile.TemporaryDirectory(prefix="mlops-stack-") as tmp:
        (Path(tmp) / path.name).write_text(text)
        cfg = read_stack_file(stack, Path(tmp) / path.name)
    load_settings(stack, cfg.config, set(cfg.secret_keys), path.name)
    if write:
        path.write_text(text)
    return text


def _registry(stack: str, given: str | None, root: Path) -> str:
    if given:
        return given.rstrip("/")
    return read_stack_file(stack, stack_file(stack, root)).config.get(f"{PROJECT}:images.registry", DEFAULT_REGISTRY)


def build(stack: str, registry: str | None, platform: str, root: Path = ROOT) -> dict[str, str]:
    """`make images`: build and push every image of `stack`, record their references; returns them by name."""
    images = stack_images(stack, root)
    target_registry = _registry(stack, registry, root)
    profiles_now = recorded_profiles(stack, root)
    placeholders = {image.name: f"{target_registry}/{image.name}@{PLACEHOLDER_DIGEST}" for image in images}
    write_checked(stack, updates_for(images, placeholders, profiles_now, registry and target_registry), root, False)
    references = {}
    for image in images:
        repository = f"{target_registry}/{image.name}"
        tag = image_tool.inputs_tag(image.name, root, image.dockerfile, image.target, image.context)
        stage = f" --target {image.target}" if image.target else ""
        print(f"==> {image.name}: {image.dockerfile}{stage} -> {repository}:{tag}", file=sys.stderr, flush=True)
        digest = buildx.build_and_push(
            image.dockerfile, image.context, image.target, [f"{repository}:{tag}"], platform, root
        )
        references[image.name] = f"{repository}@{digest}"
        print(f"{image.name} {references[image.name]}", flush=True)
    _record_and_report(stack, images, references, profiles_now, registry and target_registry, root)
    return references


def _record_and_report(
    stack: str,
    images: Sequence[Image],
    references: Mapping[str, str],
    profiles_now: Mapping[str, str],
    registry: str | None,
    root: Path,
) -> None:
    updates = updates_for(images, references, profiles_now, registry)
    write_checked(stack, updates, root)
    print(f"recorded in {stack_file(stack, root).name}: {', '.join(updates)}", file=sys.stderr)
    print("the same as `pulumi config set` commands (for a stack configured elsewhere):", file=sys.stderr)
    for line in config_commands(stack, updates):
        print(f"  {line}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.delivery.stack_images", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="the images of a stack, or of every stack")
    which = ls.add_mutually_exclusive_group(required=True)
    which.add_argument("--stack")
    which.add_argument("--all", action="store_true", help="every stack's images, run by a model or not")
    ls.add_argument("--json", action="store_true", help="as the images workflow's matrix")
    bd = sub.add_parser("build", help="build, push and record every image of a stack (make images)")
    bd.add_argument("--stack", required=True)
    bd.add_argument("--registry", help="registry path to push to (default: the stack's images.registry)")
    bd.add_argument("--platform", default="linux/amd64")
    rc = sub.add_parser("record", help="record references built elsewhere: NAME=REFERENCE ...")
    rc.add_argument("--stack", required=True)
    rc.add_argument("references", nargs="+", metavar="NAME=REFERENCE")
    args = p.parse_args(argv)
    try:
        if args.command == "list":
            found = all_images() if args.all else stack_images(args.stack)
            if args.json:
                print(json.dumps([image.as_json() for image in found]))
            else:
                for image in found:
                    stage = f" --target {image.target}" if image.target else ""
                    print(f"{image.name}\t{image.dockerfile}{stage}\t{image.setting}")
        elif args.command == "build":
            build(args.stack, args.registry, args.platform)
        else:
            images = stack_images(args.stack, run_only=False)
            known = {image.name for image in images}
            references = dict(item.split("=", 1) for item in args.references if "=" in item)
            unknown = sorted(set(references) - known) + [item for item in args.references if "=" not in item]
            if unknown:
                print(f"not NAME=REFERENCE of an image of {args.stack} ({', '.join(sorted(known))}): {unknown}")
                return 2
            _record_and_report(args.stack, images, references, recorded_profiles(args.stack), None, ROOT)
    except (SettingsError, ValueError, buildx.BuildError) as exc:
        problems = exc.problems if isinstance(exc, SettingsError) else [str(exc)]
        print("\n".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
