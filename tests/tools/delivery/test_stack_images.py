"""`make images` (tools/delivery/stack_images.py, tools/delivery/buildx.py): which images a stack runs and what each is
built from; the images workflow's matrix of every stack's; the stack file edited in place so that only the image
keys change and the result loads as the stack's settings; and the one Docker step, run against a stand-in `docker`
on PATH that does what buildx does with `--push --metadata-file` (reports the pushed digest): the digests printed,
recorded, and the same as `pulumi config set` commands; nothing built when the stack file would not load."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.run import read_stack_file
from stacks.settings import IMAGE_NAMES, PROJECT, SettingsError, load_settings
from tools.delivery import buildx, stack_images
from tools.delivery import images as image_tool

ROOT = Path(__file__).resolve().parents[3]
P = f"{PROJECT}:"
REGISTRY = "registry.example.com/team/ml"

# What buildx does for `docker buildx build --push --metadata-file F --tag T ...`: build, push, and write the
# pushed manifest's digest to F as `containerimage.digest`. The stand-in logs its arguments, one call per line.
FAKE_DOCKER = """#!/usr/bin/env bash
printf '%s\\n' "$*" >> "$FAKE_DOCKER_LOG"
[ -n "${FAKE_DOCKER_FAIL:-}" ] && { echo "ERROR: failed to solve" >&2; exit 1; }
meta=""; tag=""
while [ $# -gt 0 ]; do
  case "$1" in --metadata-file) meta="$2"; shift ;; --tag) tag="$2"; shift ;; esac
  shift
done
digest="sha256:$(printf '%s' "$tag" | sha256sum | cut -d' ' -f1)"
[ -n "${FAKE_DOCKER_NO_DIGEST:-}" ] && digest=""
echo "#12 pushing $tag with digest $digest" >&2
printf '{"buildx.build.ref": "x", "containerimage.digest": "%s"}' "$digest" > "$meta"
"""


VALUED = ("--file", "--platform", "--provenance", "--sbom", "--metadata-file", "--target", "--tag")


def pushed_digest(tag: str) -> str:
    return "sha256:" + hashlib.sha256(tag.encode()).hexdigest()


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    """A copy of what the images are built from and the stack files, as a git work tree (inputs are git's files)."""
    root = tmp_path / "repo"
    files = subprocess.run(
        [
            "git",
            "ls-files",
            "--cached",
            "--others",
            "--exclude-standard",
            "services",
            "profiles",
            "pyproject.toml",
            "uv.lock",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in [*files, "Pulumi.dev.yaml", "Pulumi.prod.yaml", "profiles/gpu/Dockerfile"]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / name, root / name)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


@pytest.fixture()
def docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The stand-in `docker` first on PATH; returns its log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(FAKE_DOCKER)
    (bin_dir / "docker").chmod(0o755)
    log = tmp_path / "docker.log"
    log.touch()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_DOCKER_LOG", str(log))
    return log


def run_gpu(root: Path, stack: str) -> None:
    """Make the stack's first model train and serve on the gpu profile (its stack file, edited as a user would)."""
    path = root / f"Pulumi.{stack}.yaml"
    doc = yaml.safe_load(path.read_text())
    first = next(iter(doc["config"][f"{P}models"].values()))
    first["training"]["profile"] = "gpu"
    first["serving"]["profile"] = "gpu"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


# --- what to build ---------------------------------------------------------------------------------------------
def test_a_stack_builds_the_platforms_images_and_the_profile_images_its_models_run() -> None:
    dev = stack_images.stack_images("dev")
    assert [(i.name, i.dockerfile, i.target, i.setting) for i in dev] == [
        (name, f"services/{name}/Dockerfile", None, f"images.{name}") for name in sorted(IMAGE_NAMES)
    ]
    # every stack file's images, run or not: the images workflow keeps every Dockerfile built and scanned
    everything = [image.as_json() for image in stack_images.all_images()]
    assert everything[3:] == [
        {
            "name": f"gpu-{kind}",
            "dockerfile": "profiles/gpu/Dockerfile",
            "target": kind,
            "context": ".",
            "setting": "images.profiles",
        }
        for kind in ("training", "serving")
    ]
    assert [e["name"] for e in everything[:3]] == sorted(IMAGE_NAMES)


def test_the_profile_images_a_model_runs_are_built_for_its_stack(repo: Path) -> None:
    assert [i.name for i in stack_images.stack_images("prod", repo)] == sorted(IMAGE_NAMES)
    run_gpu(repo, "prod")
    found = stack_images.stack_images("prod", repo)
    assert [(i.name, i.target) for i in found[3:]] == [("gpu-training", "training"), ("gpu-serving", "serving")]


def test_a_missing_dockerfile_or_one_image_built_two_ways_is_refused(repo: Path) -> None:
    path = repo / "Pulumi.dev.yaml"
    doc = yaml.safe_load(path.read_text())
    build = {"dockerfile": "teams/x/Dockerfile", "image": "gpu-serving"}
    doc["config"][f"{P}profiles"] = {"x": {**doc["config"].get(f"{P}profiles", {}), "images": {"serving": build}}}
    doc["config"][f"{P}profiles"]["x"].update(
        requests={"cpu": "1", "memory": "1Gi"}, limits={"cpu": "1", "memory": "1Gi"}
    )
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(SettingsError) as two_ways:
        stack_images.stack_images("dev", repo, run_only=False)
    assert "builds the image gpu-serving from teams/x/Dockerfile" in two_ways.value.problems[0]
    build["image"] = "team-x"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(SettingsError) as missing:
        stack_images.stack_images("dev", repo, run_only=False)
    assert missing.value.problems == [
        f"Pulumi.dev.yaml: {P}profiles.x.images.serving.dockerfile teams/x/Dockerfile is not a file of the repository"
    ]
    # the same name built differently by two stack files would push two images to one repository
    (repo / "teams" / "x").mkdir(parents=True)
    (repo / "teams" / "x" / "Dockerfile").write_text("FROM python:3.11.14-slim-bookworm\n")
    build["image"] = "gpu-training"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(SettingsError):
        stack_images.all_images(repo)


# --- recording in the stack file -------------------------------------------------------------------------------
def test_recording_changes_only_the_image_keys_and_keeps_every_comment() -> None:
    text = (ROOT / "Pulumi.prod.yaml").read_text()
    serving = f"{REGISTRY}/serving@{pushed_digest('s')}"
    gpu = {"gpu-serving": f"{REGISTRY}/gpu-serving@{pushed_digest('g')}", "gpu-training": "gpu-training:1.0"}
    edited = stack_images.record(text, {"images.serving": serving, "images.profiles": gpu})
    before, after = text.splitlines(), edited.splitlines()
    changed = [(a, b) for a, b in zip(before, after, strict=False) if a != b]
    assert len(after) == len(before)  # the same two gpu entries were there; nothing moved
    assert [b for _, b in changed] == [
        f"  {P}images.serving: {serving}",
        f"    gpu-serving: {gpu['gpu-serving']}",
        f"    gpu-training: {gpu['gpu-training']}",
    ]
    assert [line for line in before if line.lstrip().startswith("#")] == [
        line for line in after if line.lstrip().startswith("#")
    ]
    config = yaml.safe_load(edited)["config"]
    assert config[f"{P}images.serving"] == serving and config[f"{P}images.profiles"] == gpu


def test_a_new_key_goes_after_the_image_keys_or_at_the_end_of_config() -> None:
    text = (
        "# stack file\n"
        "encryptionsalt: v1:abc\n"
        "config:\n"
        "  aws:region: eu-west-1\n"
        "  mlops-platform:models:\n"
        "    iris: {training: {entrypoint: 'a.b:c'}}\n"
        "  # a comment about the next key\n"
        "  mlops-platform:nfs.path: /x\n"
        "\n"
        "  mlops-platform:profiles:\n"
        "    tiny:\n"
        "      # nested comment\n"
        "      requests: {cpu: 1}\n"
        "secretsprovider: passphrase\n"
    )
    first = stack_images.record(text, {"images.airflow": "airflow@" + pushed_digest("a")})
    lines = first.splitlines()
    at = lines.index("secretsprovider: passphrase")
    assert lines[at - 2 : at] == [
        "  # The images this stack runs, by digest: written by `make images` (docs/delivery.md).",
        f"  {P}images.airflow: airflow@{pushed_digest('a')}",
    ]
    second = stack_images.record(first, {"images.profiles": {}, "images.registry": "ghcr.io/x/y"})
    lines = second.splitlines()
    at = lines.index("secretsprovider: passphrase")
    assert lines[at - 3 : at] == [
        f"  {P}images.airflow: airflow@{pushed_digest('a')}",
        f"  {P}images.profiles: {{}}",
        f"  {P}images.registry: ghcr.io/x/y",
    ]
    doc = yaml.safe_load(second)
    assert (doc["encryptionsalt"], doc["secretsprovider"]) == ("v1:abc", "passphrase")
    assert doc["config"][f"{P}profiles"] == {"tiny": {"requests": {"cpu": 1}}}
    # a value that YAML would read as something else is quoted
    quoted = stack_images.record(text, {"images.api": "api: 1"})
    assert yaml.safe_load(quoted)["config"][f"{P}images.api"] == "api: 1"
    with pytest.raises(ValueError, match="no top-level `config:`"):
        stack_images.record("encryptionsalt: x\n", {"images.api": "api:1"})


def test_the_stack_file_is_written_only_when_it_loads_as_the_stacks_settings(repo: Path) -> None:
    before = (repo / "Pulumi.prod.yaml").read_text()
    with pytest.raises(SettingsError) as info:  # prod takes digests only
        stack_images.write_checked("prod", {"images.serving": "serving:1.0"}, repo)
    assert info.value.problems == [
        f"Pulumi.prod.yaml: {P}images.serving must be pinned by digest in prod (<repository>@sha256:<64 hex>); "
        'got "serving:1.0"'
    ]
    assert (repo / "Pulumi.prod.yaml").read_text() == before


def test_the_references_merge_into_the_profile_images_already_recorded_and_as_config_commands() -> None:
    found = stack_images.all_images()
    refs = {"serving": "r/serving@" + pushed_digest("1"), "gpu-serving": "r/gpu-serving@" + pushed_digest("2")}
    updates = stack_images.updates_for(found, refs, {"gpu-training": "t:1", "gpu-serving": "old:1"}, "r")
    assert updates == {
        "images.registry": "r",
        "images.serving": refs["serving"],
        "images.profiles": {"gpu-serving": refs["gpu-serving"], "gpu-training": "t:1"},
    }
    commands = stack_images.config_commands("prod", updates)
    parsed = [shlex.split(c) for c in commands]
    assert [c[:6] for c in parsed] == [["pulumi", "config", "set", "--stack", "prod", f"{P}{key}"] for key in updates]
    assert json.loads(parsed[2][-1]) == updates["images.profiles"] and parsed[1][-1] == refs["serving"]
    assert all(c[6] == "--" for c in parsed)


# --- make images: the Docker step ------------------------------------------------------------------------------
def test_make_images_builds_pushes_prints_and_records_every_image_of_the_stack(
    repo: Path, docker: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_gpu(repo, "prod")
    references = stack_images.build("prod", REGISTRY, "linux/arm64", repo)
    calls = [shlex.split(line) for line in docker.read_text().splitlines()]
    found = stack_images.stack_images("prod", repo)
    assert [image.name for image in found] == [*sorted(IMAGE_NAMES), "gpu-training", "gpu-serving"]
    assert len(calls) == len(found)
    for call, image in zip(calls, found, strict=True):
        tag = f"{REGISTRY}/{image.name}:" + image_tool.inputs_tag(
            image.name, repo, image.dockerfile, image.target, image.context
        )
        assert call[:2] == ["buildx", "build"] and call[-1] == "."
        options = {flag: call[i + 1] for i, flag in enumerate(call) if flag in VALUED}
        assert options["--file"] == image.dockerfile and options["--tag"] == tag
        assert options["--platform"] == "linux/arm64" and "--push" in call
        assert options.get("--target") == image.target
        assert references[image.name] == f"{REGISTRY}/{image.name}@{pushed_digest(tag)}"
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"{name} {ref}" for name, ref in references.items()]
    assert f"pulumi config set --stack prod {P}images.registry -- {REGISTRY}" in err
    # recorded: the stack file loads with exactly these images
    cfg = read_stack_file("prod", repo / "Pulumi.prod.yaml")
    s = load_settings("prod", cfg.config, set(cfg.secret_keys), cfg.source)
    assert s.images.registry == REGISTRY
    assert {n: s.images.image(n).reference for n in IMAGE_NAMES} == {n: references[n] for n in IMAGE_NAMES}  # type: ignore[union-attr]
    gpu = s.catalog.profiles["gpu"].images
    assert (gpu.training, gpu.serving) == (references["gpu-training"], references["gpu-serving"])


def test_the_same_inputs_give_the_same_tag_as_the_images_workflow(repo: Path, docker: Path) -> None:
    stack_images.build("dev", None, "linux/amd64", repo)
    calls = [shlex.split(line) for line in docker.read_text().splitlines()]
    tags = [call[call.index("--tag") + 1] for call in calls]
    sha = "0123456789abcdef0123456789abcdef01234567"
    # the stack's own registry (images.registry's default), the workflow's inputs tag
    assert tags == [
        f"{image_tool.plan(n, 'ghcr.io/acme/mlops-platform', sha, repo)['repository']}:"
        + image_tool.plan(n, "ghcr.io/acme/mlops-platform", sha, repo)["inputs-tag"]
        for n in sorted(IMAGE_NAMES)
    ]


def test_nothing_is_built_when_the_result_would_not_load(repo: Path, docker: Path) -> None:
    before = (repo / "Pulumi.dev.yaml").read_text()
    with pytest.raises(SettingsError) as info:
        stack_images.build("dev", "ghcr.io/Acme/Repo", "linux/amd64", repo)  # registries are lower case
    assert info.value.problems[0].startswith(f"Pulumi.dev.yaml: {P}images.registry must be a registry path")
    assert docker.read_text() == "" and (repo / "Pulumi.dev.yaml").read_text() == before


def test_a_failed_build_or_one_without_a_digest_records_nothing(
    repo: Path, docker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = (repo / "Pulumi.dev.yaml").read_text()
    monkeypatch.setenv("FAKE_DOCKER_FAIL", "1")
    with pytest.raises(buildx.BuildError, match="exited 1"):
        stack_images.build("dev", None, "linux/amd64", repo)
    monkeypatch.delenv("FAKE_DOCKER_FAIL")
    monkeypatch.setenv("FAKE_DOCKER_NO_DIGEST", "1")
    with pytest.raises(buildx.BuildError, match="no image digest"):
        stack_images.build("dev", None, "linux/amd64", repo)
    assert (repo / "Pulumi.dev.yaml").read_text() == before
    monkeypatch.setenv("PATH", str(repo))  # no docker at all
    with pytest.raises(buildx.BuildError, match="docker is not on PATH"):
        buildx.build_and_push("services/api/Dockerfile", ".", None, ["r/api:1"], "linux/amd64", repo)


def test_the_command_line_lists_and_refuses_what_is_not_an_image_of_the_stack() -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tools.delivery.stack_images", *args], cwd=ROOT, capture_output=True, text=True
        )

    listed = cli("list", "--all", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == [image.as_json() for image in stack_images.all_images()]
    refused = cli("record", "--stack", "prod", "web=ghcr.io/x/web@" + pushed_digest("w"))
    assert refused.returncode == 2 and "not NAME=REFERENCE of an image of prod" in refused.stdout
