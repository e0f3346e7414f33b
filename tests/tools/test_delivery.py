"""The scripts the delivery workflows run, for real: what a stack was last deployed from (commit and image
references, from `pulumi stack history --json`), one drift issue per stack against a local stand-in for
GitHub's issues API, the images' inputs (per build stage), tags and digests, and the configuration that runs
every pushed image by digest, against a local registry that asks for a bearer token like ghcr.io does."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from stacks.settings import load_settings
from tests.stacks.test_settings import MINIMAL
from tools.delivery import drift_issue, images
from tools.delivery.deployed import last_deployed
from tools.delivery.deployed import main as deployed_main

ROOT = Path(__file__).resolve().parents[2]
SHA = "0123456789abcdef0123456789abcdef01234567"
DIGEST = "sha256:" + "ab" * 32
DIGEST_GPU = "sha256:" + "cd" * 32
SERVING = f"ghcr.io/acme/mlops-platform/serving@{DIGEST}"


class Server:
    """A local HTTP server whose handler is a function of (method, path, headers, body)."""

    def __init__(self, handle: Callable[[str, str, Any, bytes], tuple[int, dict[str, str], Any]]) -> None:
        outer = self
        self.requests: list[tuple[str, str, Any]] = []

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
                outer.requests.append((self.command, self.path, json.loads(body) if body else None))
                status, headers, payload = handle(self.command, self.path, self.headers, body)
                data = json.dumps(payload).encode() if payload is not None else b""
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_HEAD = _any

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# --- deployed ------------------------------------------------------------------------------------------
def history_entry(commit: str, result: str = "succeeded", kind: str = "update", serving: str = SERVING) -> dict:
    return {
        "version": 7,
        "kind": kind,
        "result": result,
        "environment": {"git.head": commit, "git.dirty": "false"},
        "config": {
            "mlops-platform:images.serving": {"value": serving, "secret": False},
            "mlops-platform:images.registry": {"value": "ghcr.io/acme/mlops-platform", "secret": False},
            "mlops-platform:alerts.slackWebhookUrl": {"secret": True},
            "mlops-platform:serving.profile": {"value": "small", "secret": False},
        },
        "resourceChanges": {"same": 80},
    }


def test_the_last_successful_update_gives_commit_and_images_only() -> None:
    history = [
        history_entry("f" * 40, result="failed"),
        history_entry("e" * 40, kind="refresh"),
        history_entry(SHA),
        history_entry("d" * 40),
    ]
    deployed = last_deployed(history)
    assert deployed.commit == SHA
    assert json.loads(deployed.config_map()) == {
        "mlops-platform:images.registry": {"value": "ghcr.io/acme/mlops-platform", "secret": False},
        "mlops-platform:images.serving": {"value": SERVING, "secret": False},
    }
    assert last_deployed([]).commit is None and last_deployed({"not": "a list"}).commit is None
    # the profile images a deploy ran (images.profiles, JSON text as the deploy passed it) are carried too
    entry = history_entry(SHA)
    profiles = json.dumps({"gpu-serving": f"ghcr.io/acme/mlops-platform/gpu-serving@{DIGEST_GPU}"})
    entry["config"]["mlops-platform:images.profiles"] = {"value": profiles, "secret": False}
    carried = json.loads(last_deployed([entry]).config_map())
    assert carried["mlops-platform:images.profiles"] == {"value": profiles, "secret": False}


def test_deployed_cli_writes_the_outputs_the_jobs_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    out.touch()
    monkeypatch.setenv("GITHUB_OUTPUT", str(out))
    (tmp_path / "h.json").write_text(json.dumps([history_entry(SHA)]))
    assert deployed_main([str(tmp_path / "h.json"), "--fallback-commit", "c" * 40, "--github-output"]) == 0
    lines = out.read_text().splitlines()
    assert lines[:2] == ["found=true", f"commit={SHA}"]
    assert json.loads(lines[2].removeprefix("config-map="))["mlops-platform:images.serving"]["value"] == SERVING
    assert lines[3:] == [
        "config-lines<<__CONFIG__",
        "mlops-platform:images.registry=ghcr.io/acme/mlops-platform",
        f"mlops-platform:images.serving={SERVING}",
        "__CONFIG__",
    ]
    out.write_text("")
    (tmp_path / "empty.json").write_text("[]")  # a stack never updated: main's commit, the stack file's images
    assert deployed_main([str(tmp_path / "empty.json"), "--fallback-commit", "c" * 40, "--github-output"]) == 0
    assert out.read_text() == f"found=false\ncommit={'c' * 40}\nconfig-map=\nconfig-lines<<__CONFIG__\n__CONFIG__\n"


# --- drift issue ---------------------------------------------------------------------------------------
class FakeIssues:
    def __init__(self) -> None:
        self.issues: list[dict[str, Any]] = [
            # a pull request (the issues API lists them too) that happens to carry the same title and label
            {
                "number": 1,
                "title": drift_issue.title("prod"),
                "state": "open",
                "labels": [{"name": "drift"}],
                "pull_request": {"url": "https://api.github.com/repos/acme/mlops-platform/pulls/1"},
            },
        ]
        self.comments: dict[int, list[str]] = {}

    def __call__(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, str], Any]:
        if headers.get("Authorization") != "Bearer ghs_test":
            return 401, {}, {"message": "Bad credentials"}
        url = urllib.parse.urlparse(path)
        data = json.loads(body) if body else {}
        base = "/repos/acme/mlops-platform/issues"
        if method == "GET" and url.path == base:
            q = urllib.parse.parse_qs(url.query)
            labels = set(q.get("labels", [""])[0].split(","))
            return (
                200,
                {},
                [
                    i
                    for i in self.issues
                    if i["state"] == "open" and labels <= {lb["name"] for lb in i["labels"]} | {""}
                ],
            )
        if method == "POST" and url.path == base:
            number = len(self.issues) + 1
            issue = {
                "number": number,
                "title": data["title"],
                "body": data["body"],
                "state": "open",
                "labels": [{"name": n} for n in data["labels"]],
                "html_url": f"https://github.com/acme/mlops-platform/issues/{number}",
            }
            self.issues.append(issue)
            return 201, {}, issue
        number = int(url.path.removeprefix(base + "/").split("/")[0])
        issue = next(i for i in self.issues if i["number"] == number)
        if method == "PATCH":
            issue.update(data)
            return 200, {}, issue
        if method == "POST" and url.path.endswith("/comments"):
            self.comments.setdefault(number, []).append(data["body"])
            return 201, {}, {"id": 1}
        return 404, {}, {"message": "Not Found"}


@pytest.fixture()
def github() -> Iterator[tuple[FakeIssues, dict[str, str]]]:
    fake = FakeIssues()
    server = Server(fake)
    env = {"GITHUB_API_URL": f"http://{server.host}", "GITHUB_REPOSITORY": "acme/mlops-platform"}
    yield fake, env | {"GITHUB_TOKEN": "ghs_test"}
    server.close()


def test_one_issue_per_drifted_stack_updated_while_it_lasts_then_closed(
    github: tuple[FakeIssues, dict[str, str]], tmp_path: Path
) -> None:
    fake, env = github
    out = tmp_path / "out"
    env = env | {"GITHUB_OUTPUT": str(out)}
    body = tmp_path / "drift.md"
    body.write_text("### drift.detected\n~ replicas: 5 => 2")
    assert drift_issue.main(["open", "--stack", "prod", "--body-file", str(body), "--run-url", "u1"], env=env) == 0
    body.write_text("### drift.detected\n~ replicas: 5 => 3")
    assert drift_issue.main(["open", "--stack", "prod", "--body-file", str(body), "--run-url", "u2"], env=env) == 0
    drift = [i for i in fake.issues if i["title"] == drift_issue.title("prod") and "pull_request" not in i]
    assert len(drift) == 1 and drift[0]["body"].endswith("5 => 3") and drift[0]["state"] == "open"
    assert {lb["name"] for lb in drift[0]["labels"]} == {"drift", "stack:prod"}
    assert fake.comments[drift[0]["number"]] == ["Drift seen again in u2; the description shows the current diff."]
    assert out.read_text().splitlines()[-2:] == [f"issue-url={drift[0]['html_url']}", "issue-number=2"]
    # another stack gets its own issue
    assert drift_issue.main(["open", "--stack", "dev", "--body-file", str(body)], env=env) == 0
    assert len([i for i in fake.issues if i["title"].startswith("Drift on") and "pull_request" not in i]) == 2
    assert drift_issue.main(["close", "--stack", "prod", "--run-url", "u3"], env=env) == 0
    assert drift[0]["state"] == "closed" and drift[0]["state_reason"] == "completed"
    assert fake.comments[drift[0]["number"]][-1].startswith("Self-heal ran `pulumi up --refresh` on prod (u3)")
    assert drift_issue.main(["close", "--stack", "prod"], env=env) == 0  # nothing left to close


def test_the_issue_script_fails_loudly_without_access(
    github: tuple[FakeIssues, dict[str, str]], tmp_path: Path
) -> None:
    _, env = github
    body = tmp_path / "b.md"
    body.write_text("x")
    assert drift_issue.main(["open", "--stack", "prod", "--body-file", str(body)], env=env | {"GITHUB_TOKEN": "x"}) == 1
    assert drift_issue.main(["close", "--stack", "prod"], env={"GITHUB_REPOSITORY": "acme/x"}) == 1


# --- images ----------------------------------------------------------------------------------------------
def test_every_image_and_what_it_is_built_from() -> None:
    assert images.images() == {
        "airflow": Path("services/airflow/Dockerfile"),
        "api": Path("services/api/Dockerfile"),
        "serving": Path("services/serving/Dockerfile"),
    }
    serving = images.inputs("serving")
    assert {"services/serving/Dockerfile", "pyproject.toml", "uv.lock", "services/serving/app.py"} <= set(serving)
    assert "services/common/contract.py" in serving and not any(p.startswith("dags/") for p in serving)
    assert images.inputs("airflow") == ["services/airflow/Dockerfile", "services/airflow/requirements.txt"]


def test_copy_sources_skip_other_images_and_stages() -> None:
    dockerfile = (
        "FROM python:3.11-slim AS base\n"
        "# COPY not-this ./\n"
        "COPY --from=ghcr.io/astral-sh/uv:0.13.8 /uv /usr/local/bin/uv\n"
        "COPY pyproject.toml \\\n    uv.lock ./\n"
        "ADD --chown=1:1 ./config/ /etc/app/\n"
        'COPY ["services/", "/app/services/"]\n'
        "COPY --from=base /venv /venv\n"
    )
    assert images.copy_sources(dockerfile) == ["pyproject.toml", "uv.lock", "config", "services"]


def test_a_targets_inputs_are_what_the_stages_it_runs_copy() -> None:
    dockerfile = (
        "FROM nvidia/cuda:12.8.1-runtime-ubuntu24.04 AS base\n"
        "COPY base.txt /\n"
        "FROM base AS deps\n"
        "COPY deps.txt /\n"
        "FROM base AS serving\n"
        "COPY --from=deps /deps.txt /\n"
        "COPY serving/ /app/\n"
        "FROM base AS training\n"
        "ADD https://example.com/constraints.txt /tmp/\n"
        "COPY training.txt /\n"
    )
    assert images.copy_sources(dockerfile, "serving") == ["base.txt", "deps.txt", "serving"]
    assert images.copy_sources(dockerfile, "training") == ["base.txt", "training.txt"]  # a URL is no input
    assert images.copy_sources(dockerfile) == images.copy_sources(dockerfile, "training")  # the last stage
    with pytest.raises(ValueError, match="no stage 'web'"):
        images.copy_sources(dockerfile, "web")
    # the gpu profile's two images: each rebuilt for its own inputs only
    serving = images.inputs_of("profiles/gpu/Dockerfile", target="serving")
    training = images.inputs_of("profiles/gpu/Dockerfile", target="training")
    assert training == ["profiles/gpu/Dockerfile", "services/airflow/requirements.txt"]
    assert {"uv.lock", "pyproject.toml", "services/serving/app.py"} <= set(serving)
    gpu = images.plan(
        "gpu-serving", "ghcr.io/acme/mlops-platform", SHA, dockerfile="profiles/gpu/Dockerfile", target="serving"
    )
    assert (gpu["repository"], gpu["dockerfile"], gpu["target"]) == (
        "ghcr.io/acme/mlops-platform/gpu-serving",
        "profiles/gpu/Dockerfile",
        "serving",
    )
    with pytest.raises(SystemExit):
        images.plan("gpu-serving", "ghcr.io/acme/mlops-platform", SHA)  # not a platform image: needs its Dockerfile


def test_the_inputs_tag_changes_with_an_input_and_only_then(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "services" / "web").mkdir(parents=True)
    (tmp_path / "services" / "web" / "Dockerfile").write_text("FROM python:3.11\nCOPY app.txt /app/\n")
    (tmp_path / "app.txt").write_text("v1")
    (tmp_path / "README.md").write_text("docs")
    first = images.plan("web", "ghcr.io/Acme/Repo", SHA, root=tmp_path)
    assert first["repository"] == "ghcr.io/acme/repo/web" and first["commit-tag"] == SHA
    (tmp_path / "README.md").write_text("other docs")
    assert images.plan("web", "ghcr.io/acme/repo", SHA, root=tmp_path)["inputs-tag"] == first["inputs-tag"]
    (tmp_path / "app.txt").write_text("v2")
    assert images.plan("web", "ghcr.io/acme/repo", SHA, root=tmp_path)["inputs-tag"] != first["inputs-tag"]
    with pytest.raises(SystemExit):
        images.plan("web", "ghcr.io/acme/repo", "main", root=tmp_path)


class FakeRegistry:
    """The OCI distribution API's manifest HEAD behind a bearer-token handshake, as ghcr.io answers."""

    def __init__(self) -> None:
        self.manifests = {
            ("acme/mlops-platform/serving", "inputs-1234"): DIGEST,
            ("acme/mlops-platform/gpu-serving", "inputs-1234"): DIGEST_GPU,
        }
        self.host = ""

    def __call__(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, str], Any]:
        url = urllib.parse.urlparse(path)
        if url.path == "/token":
            q = urllib.parse.parse_qs(url.query)
            assert q["service"] == [self.host] and q["scope"][0].endswith(":pull")
            expected = "Basic " + base64.b64encode(b"bot:ghp_pw").decode()
            if headers.get("Authorization") != expected:
                return 401, {}, {"errors": [{"code": "UNAUTHORIZED"}]}
            return 200, {}, {"token": "registry-token"}
        name, _, reference = url.path.removeprefix("/v2/").rpartition("/manifests/")
        if headers.get("Authorization") != "Bearer registry-token":
            challenge = f'Bearer realm="http://{self.host}/token",service="{self.host}",scope="repository:{name}:pull"'
            return 401, {"WWW-Authenticate": challenge}, {"errors": [{"code": "UNAUTHORIZED"}]}
        assert "application/vnd.oci.image.index.v1+json" in headers.get("Accept", "")
        digest = self.manifests.get((name, reference))
        if digest is None:
            return 404, {}, {"errors": [{"code": "MANIFEST_UNKNOWN"}]}
        return 200, {"Docker-Content-Digest": digest, "Content-Type": "application/vnd.oci.image.index.v1+json"}, None


@pytest.fixture()
def registry() -> Iterator[str]:
    fake = FakeRegistry()
    server = Server(fake)
    fake.host = server.host
    yield server.host
    server.close()


def test_digest_of_a_tag_through_the_token_handshake(registry: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.touch()
    env = {**os.environ, "REGISTRY_USERNAME": "bot", "REGISTRY_PASSWORD": "ghp_pw", "GITHUB_OUTPUT": str(out)}

    def digest(ref: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "tools.delivery.images", "digest", ref, "--github-output", "digest"]
        return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)

    found = digest(f"{registry}/acme/mlops-platform/serving:inputs-1234")
    assert (found.returncode, found.stdout) == (0, DIGEST + "\n"), found.stderr
    assert out.read_text() == f"digest={DIGEST}\n"
    missing = digest(f"{registry}/acme/mlops-platform/serving:inputs-9999")
    assert missing.returncode == images.NOT_FOUND and "not in the registry" in missing.stderr
    env["REGISTRY_PASSWORD"] = "wrong"
    refused = digest(f"{registry}/acme/mlops-platform/serving:inputs-1234")
    assert refused.returncode == 1 and "cannot ask the registry" in refused.stderr


def test_the_config_map_runs_every_image_pushed_for_the_commit_by_digest(registry: str, tmp_path: Path) -> None:
    out, summary = tmp_path / "out", tmp_path / "summary"
    env = {**os.environ, "REGISTRY_USERNAME": "bot", "REGISTRY_PASSWORD": "ghp_pw"}
    env |= {"GITHUB_OUTPUT": str(out), "GITHUB_STEP_SUMMARY": str(summary)}
    matrix = [
        {"name": "serving", "dockerfile": "services/serving/Dockerfile", "target": "", "setting": "images.serving"},
        {
            "name": "gpu-serving",
            "dockerfile": "profiles/gpu/Dockerfile",
            "target": "serving",
            "setting": "images.profiles",
        },
    ]

    def config_map(tag: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "tools.delivery.images", "config-map", "--images", json.dumps(matrix)]
        cmd += ["--registry", f"{registry}/Acme/MLOps-Platform", "--tag", tag, "--github-output", "config-map"]
        return subprocess.run([*cmd, "--summary"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)

    done = config_map("inputs-1234")
    assert done.returncode == 0, done.stderr
    repository = f"{registry}/acme/mlops-platform"
    expected = {
        "mlops-platform:images.registry": {"value": repository, "secret": False},
        "mlops-platform:images.serving": {"value": f"{repository}/serving@{DIGEST}", "secret": False},
        "mlops-platform:images.profiles": {
            "value": json.dumps({"gpu-serving": f"{repository}/gpu-serving@{DIGEST_GPU}"}),
            "secret": False,
        },
    }
    assert json.loads(done.stdout) == expected
    assert out.read_text() == f"config-map={json.dumps(expected, sort_keys=True)}\n"
    assert f"- gpu-serving: `{repository}/gpu-serving@{DIGEST_GPU}`" in summary.read_text()
    # what `pulumi config set` stores for images.profiles is what the settings read
    value = json.loads(done.stdout)["mlops-platform:images.profiles"]["value"]
    assert load_settings("dev", {**MINIMAL, "mlops-platform:images.profiles": value}).images.profiles == {
        "gpu-serving": f"{repository}/gpu-serving@{DIGEST_GPU}"
    }
    missing = config_map("inputs-9999")
    assert missing.returncode == images.NOT_FOUND and "not in the registry" in missing.stderr


def test_references_name_a_registry_and_a_tag_or_digest() -> None:
    assert images.split_reference(SERVING) == ("ghcr.io", "acme/mlops-platform/serving", DIGEST)
    assert images.split_reference("localhost:5000/a/b:1.0") == ("localhost:5000", "a/b", "1.0")
    for bad in ("serving:1.0", "ghcr.io/acme/serving"):
        with pytest.raises(ValueError):
            images.split_reference(bad)
