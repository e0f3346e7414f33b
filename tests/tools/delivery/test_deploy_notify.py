"""The deploy and drift notifier posts start, success, failure and drift messages built by the platform's one
formatter (services.common.alerts) to a local HTTP receiver standing in for Slack; with no webhook it passes and
says so, a failing webhook never fails the deploy, and the change counts come from Pulumi's JSON output of
this run only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from services.common.contract import SLACK_WEBHOOK_URL
from tools.delivery import deploy_notify
from tools.delivery.deploy_notify import Changes, classify, endpoints, format_duration, main, parse_changes

ROOT = Path(__file__).resolve().parents[3]
COMMIT = "0123456789abcdef0123456789abcdef01234567"
HISTORY = [
    {
        "version": 12,
        "kind": "update",
        "startTime": "2026-11-30 10:00:00.000 +0000 UTC",
        "environment": {"git.head": COMMIT, "git.headName": "refs/heads/main"},
        "config": {},
        "result": "succeeded",
        "resourceChanges": {"create": 2, "update": 3, "replace": 1, "delete": 1, "same": 40},
    },
    {"version": 11, "kind": "update", "environment": {"git.head": "f" * 40}, "resourceChanges": {"update": 9}},
]
OUTPUTS = {
    "mlflowExternalUrl": "https://mlflow.dev.mlops.internal",
    "airflowUrl": "https://airflow.dev.mlops.internal",
    "servingExternalUrl": "https://serving.dev.mlops.internal",
    "servingUrl": "http://serving.mlops-dev-serving.svc.cluster.local:8000",
    "namespaces": {"mlflow": "mlops-dev-mlflow"},
}
DRIFT_OUTPUT = """Previewing update (prod):
     Type                              Name                       Plan       Info
     pulumi:pulumi:Stack               mlops-platform-prod
 ~   └─ kubernetes:apps/v1:Deployment  serving                    update     [diff: ~spec]

      ~ spec: {
          ~ replicas: 5 => 2
        }
Resources:
    ~ 1 to update
    48 unchanged

error: no changes were expected but changes were proposed
"""


class Receiver:
    """A local stand-in for Slack's incoming webhook: records JSON bodies, answers `status`."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.bodies: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                receiver.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(receiver.status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T000/B000/secret-token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def github_env(tmp_path: Path, webhook: str | None) -> dict[str, str]:
    files = {name: tmp_path / name.lower() for name in ("GITHUB_STEP_SUMMARY", "GITHUB_OUTPUT", "GITHUB_ENV")}
    for f in files.values():
        f.touch()
    env = {name: str(f) for name, f in files.items()}
    env |= {
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "acme/mlops-platform",
        "GITHUB_RUN_ID": "4242",
        "GITHUB_SHA": COMMIT,
        "GITHUB_ACTOR": "alice",
        "GITHUB_EVENT_NAME": "push",
    }
    if webhook is not None:
        env[SLACK_WEBHOOK_URL.name] = webhook
    return env


def text_of(payload: dict[str, Any]) -> str:
    return json.dumps(payload)


def write(tmp_path: Path, name: str, content: Any) -> str:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def test_start_posts_stack_commit_author_and_run_link_and_remembers_the_start(
    tmp_path: Path, receiver: Receiver
) -> None:
    env = github_env(tmp_path, receiver.url)
    assert main(["start", "--stack", "dev"], env=env, now=1_000.0) == 0
    (payload,) = receiver.bodies
    body = text_of(payload)
    assert payload["text"].startswith(":white_check_mark: *deploy.started*: dev: `pulumi up` started (push)")
    for expected in (
        "*Stack*\\ndev",
        COMMIT[:12],
        "*Author*\\nalice",
        "https://github.com/acme/mlops-platform/actions/runs/4242",
    ):
        assert expected in body
    assert Path(env["GITHUB_ENV"]).read_text() == f"{deploy_notify.STARTED_AT_ENV}=1000\n"


def test_success_reports_changes_duration_and_endpoints(tmp_path: Path, receiver: Receiver) -> None:
    env = github_env(tmp_path, receiver.url) | {deploy_notify.STARTED_AT_ENV: "1000"}
    argv = ["finish", "--stack", "dev", "--status", "success", "--changes", write(tmp_path, "h.json", HISTORY)]
    argv += ["--outputs", write(tmp_path, "o.json", OUTPUTS), "--author", "Alice Doe"]
    assert main(argv, env=env, now=1_000.0 + 252) == 0
    (payload,) = receiver.bodies
    assert payload["text"] == (
        ":white_check_mark: *deploy.succeeded*: dev: `pulumi up` succeeded at 0123456 by Alice Doe: "
        "2 created, 3 updated, 1 replaced, 1 deleted (40 unchanged), in 4m 12s"
    )
    fields = {f["text"].split("\n")[0].strip("*"): f["text"].split("\n", 1)[1] for f in payload["blocks"][1]["fields"]}
    assert fields["Resources"] == "2 created, 3 updated, 1 replaced, 1 deleted (40 unchanged)"
    assert fields["Duration"] == "4m 12s" and fields["Commit"] == COMMIT[:12] and fields["Stack"] == "dev"
    links = payload["blocks"][2]["elements"][0]["text"]
    for label, url in (
        ("mlflow", "https://mlflow.dev.mlops.internal"),
        ("airflow", "https://airflow.dev.mlops.internal"),
        ("serving", "https://serving.dev.mlops.internal"),
        ("workflow run", "https://github.com/acme/mlops-platform/actions/runs/4242"),
        ("commit 0123456", f"https://github.com/acme/mlops-platform/commit/{COMMIT}"),
    ):
        assert f"<{url}|{label}>" in links
    assert "svc.cluster.local" not in links  # only the endpoints reachable from outside
    summary = Path(env["GITHUB_STEP_SUMMARY"]).read_text()
    assert "**deploy.succeeded**" in summary and "| Resources | 2 created, 3 updated" in summary
    assert "_Slack: sent._" in summary


def test_failure_is_an_error_message(tmp_path: Path, receiver: Receiver) -> None:
    env = github_env(tmp_path, receiver.url)
    argv = ["finish", "--stack", "prod", "--status", "failure", "--changes", write(tmp_path, "h.json", HISTORY)]
    assert main([*argv, "--started-at", "100"], env=env, now=130.0) == 0
    (payload,) = receiver.bodies
    assert payload["text"].startswith(":rotating_light: *deploy.failed*: prod: `pulumi up` FAILED at 0123456 by alice")
    assert payload["text"].endswith("in 30s")


def test_an_older_update_is_never_reported_as_this_one(tmp_path: Path, receiver: Receiver) -> None:
    # The update failed before Pulumi recorded it: the newest history entry is another commit's.
    env = github_env(tmp_path, receiver.url) | {"GITHUB_SHA": "e" * 40}
    argv = ["finish", "--stack", "prod", "--status", "failure", "--changes", write(tmp_path, "h.json", HISTORY)]
    assert main(argv, env=env, now=0.0) == 0
    body = text_of(receiver.bodies[0])
    assert "not recorded (the update did not run)" in body and "created" not in body


def test_no_webhook_passes_and_says_so(tmp_path: Path) -> None:
    env = {**os.environ, **github_env(tmp_path, webhook=None)}
    env.pop(SLACK_WEBHOOK_URL.name, None)
    proc = subprocess.run(
        [sys.executable, "-m", "tools.delivery.deploy_notify", "finish", "--stack", "dev", "--status", "success"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "::notice title=Slack notification not sent::no webhook configured (SLACK_WEBHOOK_URL)" in proc.stdout
    assert "Slack: not sent, no webhook configured" in Path(env["GITHUB_STEP_SUMMARY"]).read_text()


@pytest.mark.parametrize("status", [500, 404])
def test_a_failing_webhook_does_not_fail_the_deploy(tmp_path: Path, status: int) -> None:
    with Receiver(status=status) as failing:
        env = {**os.environ, **github_env(tmp_path, failing.url)}
        proc = subprocess.run(
            [sys.executable, "-m", "tools.delivery.deploy_notify", "start", "--stack", "prod"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert len(failing.bodies) == 1  # it was tried
    assert proc.returncode == 0, proc.stderr
    assert "::warning title=Slack notification failed::deploy.started" in proc.stdout
    assert "secret-token" not in proc.stdout + proc.stderr  # the webhook URL is a secret


def test_an_unreachable_webhook_does_not_fail_the_deploy(tmp_path: Path) -> None:
    with Receiver() as gone:
        url = gone.url
    env = github_env(tmp_path, url)  # the receiver is closed: connection refused
    assert main(["finish", "--stack", "dev", "--status", "cancelled"], env=env, now=0.0) == 0
    assert "Slack: delivery failed" in Path(env["GITHUB_STEP_SUMMARY"]).read_text()


def test_change_counts_from_each_pulumi_json_form() -> None:
    events = "\n".join(
        json.dumps(e)
        for e in (
            {"sequence": 0, "timestamp": 1, "preludeEvent": {"config": {}}},
            {"sequence": 1, "timestamp": 2, "resourcePreEvent": {"metadata": {"op": "create"}}},
            {"sequence": 2, "timestamp": 9, "summaryEvent": {"durationSeconds": 75, "resourceChanges": {"create": 4}}},
        )
    )
    assert parse_changes(events) == Changes(created=4, duration_seconds=75)
    preview = json.dumps({"steps": [], "changeSummary": {"update": 2, "delete": 1, "same": 7}})
    assert parse_changes(preview) == Changes(updated=2, deleted=1, unchanged=7)
    assert parse_changes(json.dumps(HISTORY), commit=COMMIT) == Changes(2, 3, 1, 1, 40)
    assert parse_changes(json.dumps([{"kind": "refresh", "resourceChanges": {"update": 1}}])) is None
    assert parse_changes("") is None and parse_changes("error: no stack named 'dev' found") is None


def test_endpoints_and_durations() -> None:
    assert endpoints(OUTPUTS) == {
        "airflow": "https://airflow.dev.mlops.internal",
        "mlflow": "https://mlflow.dev.mlops.internal",
        "serving": "https://serving.dev.mlops.internal",
    }
    assert [format_duration(s) for s in (0, 59.6, 61, 3725)] == ["0s", "1m 00s", "1m 01s", "1h 02m 05s"]


@pytest.mark.parametrize(
    ("code", "output", "state"),
    [
        (0, "Resources:\n    49 unchanged\n", "clean"),
        (7, DRIFT_OUTPUT, "drift"),
        (255, DRIFT_OUTPUT.replace("were proposed", "occurred"), "drift"),  # CLIs before 3.226.1
        (3, "error: getting credentials: no valid credential sources found", "error"),
        (255, "error: the stack is currently locked by 1 lock(s)", "error"),
    ],
)
def test_drift_classification(code: int, output: str, state: str) -> None:
    assert classify(code, output) == state


def test_drift_is_reported_with_its_diff(tmp_path: Path, receiver: Receiver) -> None:
    env = github_env(tmp_path, receiver.url) | {"GITHUB_EVENT_NAME": "schedule"}
    colored = DRIFT_OUTPUT.replace("~ replicas", "\x1b[33m~ replicas\x1b[0m")
    argv = ["drift", "--stack", "prod", "--exit-code", "7", "--output", write(tmp_path, "p.txt", colored)]
    argv += ["--heal", "approval", "--markdown-out", str(tmp_path / "issue.md")]
    assert main(argv, env=env, now=0.0) == 0
    assert Path(env["GITHUB_OUTPUT"]).read_text() == "drift=true\n"
    (payload,) = receiver.bodies
    assert payload["text"].startswith(":warning: *drift.detected*: prod differs from commit 0123456.")
    assert "waits for approval" in payload["text"]
    diff = payload["blocks"][-1]["text"]["text"]
    assert diff.startswith("```\nPreviewing update (prod):") and "~ replicas: 5 =&gt; 2" in diff
    assert "\x1b[" not in diff
    assert "0 created, 1 updated, 0 replaced, 0 deleted" in text_of(payload)
    summary = Path(env["GITHUB_STEP_SUMMARY"]).read_text()
    assert "```diff\nPreviewing update (prod):" in summary and "~ replicas: 5 => 2" in summary
    assert (tmp_path / "issue.md").read_text() in summary  # the issue body is the same report


def test_no_drift_posts_nothing_and_a_failed_check_fails_the_job(tmp_path: Path, receiver: Receiver) -> None:
    env = github_env(tmp_path, receiver.url)
    clean = ["drift", "--stack", "dev", "--exit-code", "0", "--output", write(tmp_path, "ok.txt", "49 unchanged")]
    assert main(clean, env=env, now=0.0) == 0
    assert receiver.bodies == [] and Path(env["GITHUB_OUTPUT"]).read_text() == "drift=false\n"
    broken = ["drift", "--stack", "dev", "--exit-code", "255", "--output", write(tmp_path, "e.txt", "error: boom")]
    assert main(broken, env=env, now=0.0) == 1
    assert receiver.bodies[0]["text"].startswith(":rotating_light: *drift.check-failed*: dev")
    assert Path(env["GITHUB_OUTPUT"]).read_text() == "drift=false\ndrift=false\n"
