"""Deploy and drift notifications of the delivery workflows, built with the platform's one formatter.

`python -m tools.delivery.deploy_notify start|finish|drift ...` runs inside a GitHub Actions job.
Every message is an `alerts.Alert` (the formatter the serving service and the DAGs use), posted with
`alerts.send_alert` to $MLOPS_SLACK_WEBHOOK_URL and written as Markdown to the job summary:

- `start --stack dev`: the deploy started (stack, commit, author, trigger, link to the run); it
  remembers the start time in $GITHUB_ENV for the duration.
- `finish --stack dev --status success|failure|cancelled --changes FILE --outputs FILE`: the result,
  with the resources created/updated/replaced/deleted read from FILE (`pulumi stack history --json`,
  `pulumi up --json` events or `pulumi preview --json`), the duration and the stack's https
  endpoints from `pulumi stack output --json`.
- `drift --stack prod --exit-code N --output FILE`: classifies a `pulumi preview --refresh
  --expect-no-changes --diff` run (exit 0: no drift; exit 7 or Pulumi's "no changes were expected"
  error: drift; anything else: the check itself failed) and reports drift with its diff. It writes
  `drift=true|false` to $GITHUB_OUTPUT and exits 1 only when the check itself failed.

Notifying never fails a deploy: with no webhook configured the message is not sent and the job log
and summary say so; a webhook that fails is a warning. The webhook URL is never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.common.alerts import Alert, Delivery, Severity, send_alert
from services.common.contract import SLACK_WEBHOOK_URL

STARTED_AT_ENV = "MLOPS_DEPLOY_STARTED_AT"
WEBHOOK_SECRET = "SLACK_WEBHOOK_URL"  # the repository secret the workflows map to the contract's variable

# `pulumi preview --expect-no-changes` with changes: exit 7 since CLI 3.226.1 (255 before), and this message.
DRIFT_EXIT_CODE = 7
_NO_CHANGES_EXPECTED = re.compile(r"no changes were expected( for \w+)? but changes (were proposed|occurred)")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_PREVIEW_COUNT = re.compile(r"^\s*(?:\+-|[+~-])\s*(\d+) to (create|update|delete|replace)\s*$", re.M)


@dataclass(frozen=True)
class Changes:
    """Resource changes of one update, by Pulumi's step kinds."""

    created: int = 0
    updated: int = 0
    replaced: int = 0
    deleted: int = 0
    unchanged: int = 0
    duration_seconds: int | None = None

    @classmethod
    def from_counts(cls, counts: Mapping[str, Any], duration_seconds: int | None = None) -> Changes:
        def n(*keys: str) -> int:
            return sum(int(counts.get(k) or 0) for k in keys)

        return cls(
            created=n("create", "import"),
            updated=n("update"),
            replaced=n("replace"),
            deleted=n("delete"),
            unchanged=n("same"),
            duration_seconds=duration_seconds,
        )

    def counts_text(self) -> str:
        return f"{self.created} created, {self.updated} updated, {self.replaced} replaced, {self.deleted} deleted"

    def text(self) -> str:
        return f"{self.counts_text()} ({self.unchanged} unchanged)"


def parse_changes(text: str, commit: str | None = None) -> Changes | None:
    """Resource change counts from Pulumi's JSON output, or None when `text` holds none for this run.

    Accepts `pulumi stack history --json` (newest update first; with `commit`, that update must have
    run from this commit, so an older update is never reported as this one), `pulumi up --json`
    engine events (the `summaryEvent`) and `pulumi preview --json` (`changeSummary`).
    """
    text = text.strip()
    if not text:
        return None
    try:
        doc: Any = json.loads(text)
    except json.JSONDecodeError:
        doc = None
    if isinstance(doc, list):
        return _from_history(doc, commit)
    if isinstance(doc, dict):
        if isinstance(doc.get("changeSummary"), dict):
            return Changes.from_counts(doc["changeSummary"])
        if not isinstance(doc.get("summaryEvent"), dict):
            return None
    # a single summary event, or an event stream
    return _from_events(text)


def _from_history(doc: list[Any], commit: str | None) -> Changes | None:
    """`pulumi stack history --json`: the newest update's counts (with `commit`: only if it ran from it)."""
    updates = [u for u in doc if isinstance(u, dict) and u.get("kind") == "update"]
    if not updates or not isinstance(updates[0].get("resourceChanges"), dict):
        return None
    latest = updates[0]
    if commit and (latest.get("environment") or {}).get("git.head") != commit:
        return None
    return Changes.from_counts(latest["resourceChanges"])


def _from_events(text: str) -> Changes | None:
    """`pulumi up --json` engine events, one per line: the counts of the last summaryEvent."""
    for line in reversed(text.splitlines()):
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        summary = event.get("summaryEvent") if isinstance(event, dict) else None
        if isinstance(summary, dict):
            duration = summary.get("durationSeconds")
            return Changes.from_counts(summary.get("resourceChanges") or {}, int(duration) if duration else None)
    return None


def endpoints(outputs: Mapping[str, Any]) -> dict[str, str]:
    """The stack's https endpoints from its exports (`mlflowExternalUrl` -> label `mlflow`)."""
    found = {}
    for key in sorted(outputs):
        value = outputs[key]
        if isinstance(value, str) and value.startswith("https://"):
            label = re.sub(r"(External)?Url$", "", key) or key
            found[label] = value
    return found


def format_duration(seconds: float) -> str:
    whole = max(round(seconds), 0)
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


@dataclass(frozen=True)
class RunContext:
    """Where and what the workflow runs (from GitHub's variables, overridable by options)."""

    stack: str
    commit: str
    author: str
    trigger: str
    run_url: str | None
    commit_url: str | None

    @classmethod
    def from_env(cls, args: argparse.Namespace, env: Mapping[str, str]) -> RunContext:
        server, repo, run_id = env.get("GITHUB_SERVER_URL"), env.get("GITHUB_REPOSITORY"), env.get("GITHUB_RUN_ID")
        commit = args.commit or env.get("GITHUB_SHA", "unknown")
        base = f"{server}/{repo}" if server and repo else None
        return cls(
            stack=args.stack,
            commit=commit,
            author=args.author or env.get("GITHUB_ACTOR", "unknown"),
            trigger=args.trigger or env.get("GITHUB_EVENT_NAME", "manual"),
            run_url=f"{base}/actions/runs/{run_id}" if base and run_id else None,
            commit_url=f"{base}/commit/{commit}" if base and commit != "unknown" else None,
        )

    def fields(self) -> dict[str, str]:
        return {"Stack": self.stack, "Commit": self.commit[:12], "Author": self.author, "Trigger": self.trigger}

    def links(self) -> dict[str, str]:
        links = {}
        if self.run_url:
            links["workflow run"] = self.run_url
        if self.commit_url:
            links[f"commit {self.commit[:7]}"] = self.commit_url
        return links


def _append(env: Mapping[str, str], var: str, text: str) -> None:
    path = env.get(var)
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text if text.endswith("\n") else text + "\n")


def _read_json(path: str | None) -> Any:
    if not path:
        return None
    file = Path(path)
    if not file.is_file():
        return None
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError:
        return None


def deliver(alert: Alert, env: Mapping[str, str], summary: bool = True) -> Delivery:
    """Post `alert` (never raising) and say in the job log and summary what became of it."""
    delivery = send_alert(alert, webhook_url=env.get(SLACK_WEBHOOK_URL.name) or "")
    if delivery is Delivery.SENT:
        note = "Slack: sent."
        print(f"Slack notification sent: {alert.event}")
    elif delivery is Delivery.SKIPPED:
        note = f"Slack: not sent, no webhook configured (repository secret {WEBHOOK_SECRET})."
        print(f"::notice title=Slack notification not sent::no webhook configured ({WEBHOOK_SECRET}): {alert.event}")
    else:
        note = "Slack: delivery failed (see the job log); the deploy is not affected."
        print(f"::warning title=Slack notification failed::{alert.event} could not be delivered")
    if summary:
        _append(env, "GITHUB_STEP_SUMMARY", alert.markdown() + f"\n_{note}_\n")
    return delivery


def start(args: argparse.Namespace, env: Mapping[str, str], now: float) -> int:
    ctx = RunContext.from_env(args, env)
    _append(env, "GITHUB_ENV", f"{STARTED_AT_ENV}={int(now)}")
    alert = Alert(
        event="deploy.started",
        summary=f"{ctx.stack}: `pulumi up` started ({ctx.trigger}) at {ctx.commit[:7]} by {ctx.author}",
        severity=Severity.INFO,
        fields=ctx.fields(),
        links=ctx.links(),
    )
    deliver(alert, env, summary=False)
    return 0


_FINISH = {
    "success": ("deploy.succeeded", Severity.INFO, "succeeded"),
    "failure": ("deploy.failed", Severity.ERROR, "FAILED"),
    "cancelled": ("deploy.cancelled", Severity.WARNING, "was cancelled"),
}


def finish(args: argparse.Namespace, env: Mapping[str, str], now: float) -> int:
    ctx = RunContext.from_env(args, env)
    event, severity, verb = _FINISH[args.status]
    raw = Path(args.changes).read_text() if args.changes and Path(args.changes).is_file() else ""
    changes = parse_changes(raw, commit=ctx.commit)
    started = args.started_at or env.get(STARTED_AT_ENV)
    if started:
        duration: str | None = format_duration(now - float(started))
    elif changes and changes.duration_seconds is not None:
        duration = format_duration(changes.duration_seconds)
    else:
        duration = None
    outputs = _read_json(args.outputs)
    fields = ctx.fields()
    fields["Resources"] = changes.text() if changes else "not recorded (the update did not run)"
    if duration:
        fields["Duration"] = duration
    links = ctx.links()
    links.update(endpoints(outputs) if isinstance(outputs, dict) else {})
    summary = f"{ctx.stack}: `pulumi up` {verb} at {ctx.commit[:7]} by {ctx.author}"
    if changes:
        summary += f": {changes.text()}"
    if duration:
        summary += f", in {duration}"
    deliver(Alert(event=event, summary=summary, severity=severity, fields=fields, links=links), env)
    return 0


def classify(exit_code: int, output: str) -> str:
    """`clean`, `drift` or `error` for a `pulumi preview --expect-no-changes` run."""
    if exit_code == 0:
        return "clean"
    if exit_code == DRIFT_EXIT_CODE or _NO_CHANGES_EXPECTED.search(output):
        return "drift"
    return "error"


def preview_counts(output: str) -> dict[str, int]:
    """The `Resources:` block of a text preview: {'update': 2, 'delete': 1, ...}."""
    counts: dict[str, int] = {}
    for number, kind in _PREVIEW_COUNT.findall(output):
        counts[kind] = counts.get(kind, 0) + int(number)
    return counts


_HEAL = {
    "auto": "Self-heal: `pulumi up --refresh` runs now.",
    "approval": "Self-heal: `pulumi up --refresh` waits for approval in the protected environment; "
    "an issue tracks the drift.",
    "none": "No self-heal: fix the drift by hand.",
}


def drift(args: argparse.Namespace, env: Mapping[str, str], now: float) -> int:
    ctx = RunContext.from_env(args, env)
    output = _ANSI.sub("", Path(args.output).read_text(errors="replace")) if Path(args.output).is_file() else ""
    state = classify(args.exit_code, output)
    _append(env, "GITHUB_OUTPUT", f"drift={'true' if state == 'drift' else 'false'}")
    fields = ctx.fields()
    fields["Check"] = "pulumi preview --refresh --expect-no-changes --diff"
    if state == "clean":
        _append(
            env, "GITHUB_STEP_SUMMARY", f"### No drift on {ctx.stack}\n\nThe stack matches commit {ctx.commit[:12]}."
        )
        print(f"no drift on {ctx.stack}")
        return 0
    if state == "drift":
        counts = preview_counts(output)
        fields["Changes"] = Changes.from_counts(counts).counts_text() if counts else "see the diff"
        fields["Self-heal"] = _HEAL[args.heal]
        event, severity, details = "drift.detected", Severity.WARNING, output.strip()
        summary = f"{ctx.stack} differs from commit {ctx.commit[:7]}. {_HEAL[args.heal]}"
    else:
        event, severity, details = "drift.check-failed", Severity.ERROR, output.strip()[-4000:]
        summary = f"{ctx.stack}: the drift check could not run (exit {args.exit_code})"
    alert = Alert(event, summary, severity, fields=fields, links=ctx.links(), details=details)
    if args.markdown_out:
        Path(args.markdown_out).write_text(alert.markdown())
    deliver(alert, env)
    return 1 if state == "error" else 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.delivery.deploy_notify", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("start", "finish", "drift"):
        s = sub.add_parser(name)
        s.add_argument("--stack", required=True)
        s.add_argument("--commit", help="default: $GITHUB_SHA")
        s.add_argument("--author", help="default: $GITHUB_ACTOR")
        s.add_argument("--trigger", help="what started it, e.g. push, self-heal, key rotation")
        if name == "finish":
            s.add_argument("--status", required=True, choices=sorted(_FINISH))
            s.add_argument("--changes", help="pulumi stack history --json / up --json / preview --json output")
            s.add_argument("--outputs", help="pulumi stack output --json output")
            s.add_argument("--started-at", type=float, help=f"epoch seconds; default: ${STARTED_AT_ENV}")
        if name == "drift":
            s.add_argument("--exit-code", type=int, required=True)
            s.add_argument("--output", required=True, help="the preview's combined output")
            s.add_argument("--heal", choices=sorted(_HEAL), default="none")
            s.add_argument("--markdown-out", help="also write the report as Markdown (e.g. an issue body)")
    return p


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None, now: float | None = None) -> int:
    args = parser().parse_args(argv)
    env = os.environ if env is None else env
    now = time.time() if now is None else now
    command = {"start": start, "finish": finish, "drift": drift}[args.command]
    return command(args, env, now)


if __name__ == "__main__":
    sys.exit(main())
