"""One GitHub issue per drifted stack: opened on the first drift, updated while the drift lasts, closed
when self-heal has run.

    python -m tools.delivery.drift_issue open --stack prod --body-file drift.md --run-url URL
    python -m tools.delivery.drift_issue close --stack prod --run-url URL

Uses the REST API at $GITHUB_API_URL (default https://api.github.com) for $GITHUB_REPOSITORY with
$GITHUB_TOKEN (the job's token, `issues: write`). The issue is found by its title among the open
issues labelled `drift`, so a second drift updates the same issue (new body, one comment per run)
instead of opening another. Writes `issue-url` and `issue-number` to $GITHUB_OUTPUT.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

LABEL = "drift"


def title(stack: str) -> str:
    return f"Drift on {stack}: the stack differs from its deployed commit"


class GitHub:
    def __init__(self, api: str, repo: str, token: str, timeout: float = 30.0) -> None:
        self.base = f"{api.rstrip('/')}/repos/{repo}"
        self.token = token
        self.timeout = timeout

    def call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 - the API URL comes from the runner
            self.base + path,
            data=data,
            method=method,
            headers={
                "Accept": "application/vnd.github+json",
                "Authorization": f"Bearer {self.token}",
                "X-GitHub-Api-Version": "2022-11-28",
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
            payload = response.read()
        return json.loads(payload) if payload else None

    def find_open(self, stack: str) -> dict[str, Any] | None:
        query = urllib.parse.urlencode({"state": "open", "labels": LABEL, "per_page": 100})
        for issue in self.call("GET", f"/issues?{query}") or []:
            if "pull_request" not in issue and issue.get("title") == title(stack):
                return dict(issue)
        return None


def open_or_update(gh: GitHub, stack: str, body: str, run_url: str | None) -> dict[str, Any]:
    issue = gh.find_open(stack)
    if issue is None:
        return dict(
            gh.call("POST", "/issues", {"title": title(stack), "body": body, "labels": [LABEL, f"stack:{stack}"]})
        )
    gh.call("PATCH", f"/issues/{issue['number']}", {"body": body})
    seen = f"Drift seen again{f' in {run_url}' if run_url else ''}; the description shows the current diff."
    gh.call("POST", f"/issues/{issue['number']}/comments", {"body": seen})
    return issue


def close(gh: GitHub, stack: str, run_url: str | None) -> dict[str, Any] | None:
    issue = gh.find_open(stack)
    if issue is None:
        return None
    healed = f"Self-heal ran `pulumi up --refresh` on {stack}{f' ({run_url})' if run_url else ''}: closing."
    gh.call("POST", f"/issues/{issue['number']}/comments", {"body": healed})
    gh.call("PATCH", f"/issues/{issue['number']}", {"state": "closed", "state_reason": "completed"})
    return issue


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    p = argparse.ArgumentParser(prog="python -m tools.delivery.drift_issue", description=__doc__.split("\n")[0])
    p.add_argument("action", choices=("open", "close"))
    p.add_argument("--stack", required=True)
    p.add_argument("--body-file", help="the issue description (Markdown); required to open")
    p.add_argument("--run-url")
    args = p.parse_args(argv)
    missing = [v for v in ("GITHUB_REPOSITORY", "GITHUB_TOKEN") if not env.get(v)]
    if missing:
        print(f"::error::{', '.join(missing)} not set", file=sys.stderr)
        return 1
    gh = GitHub(env.get("GITHUB_API_URL", "https://api.github.com"), env["GITHUB_REPOSITORY"], env["GITHUB_TOKEN"])
    try:
        if args.action == "open":
            if not args.body_file:
                p.error("--body-file is required to open an issue")
            issue: dict[str, Any] | None = open_or_update(
                gh, args.stack, Path(args.body_file).read_text(), args.run_url
            )
        else:
            issue = close(gh, args.stack, args.run_url)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"::error::GitHub issues API failed: {exc}", file=sys.stderr)
        return 1
    if issue is None:
        print(f"no open drift issue for {args.stack}")
        return 0
    print(f"{args.action}: {issue['html_url']}")
    if env.get("GITHUB_OUTPUT"):
        with open(env["GITHUB_OUTPUT"], "a", encoding="utf-8") as fh:
            fh.write(f"issue-url={issue['html_url']}\nissue-number={issue['number']}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
