"""What a stack runs now: the commit and the image configuration of its last successful update.

    pulumi stack history --stack prod --json > history.json
    python -m tools.delivery.deployed history.json --fallback-commit "$GITHUB_SHA" --github-output

Scheduled jobs (drift check, self-heal, key rotation) run the program at the commit the stack was
last deployed from (`git.head`, which Pulumi records with each update) and with the image
references that update used (`mlops-platform:images.*` from its recorded configuration), so they
compare the stack with what was deployed, not with whatever `main` holds now, and never roll images
back to the stack file's placeholders. Writes `found`, `commit`, `config-map` (the `pulumi/actions`
input: `{key: {value, secret}}` as one line of JSON) and `config-lines` (`key=value` per line, for
`pulumi config set`) to $GITHUB_OUTPUT.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT = "mlops-platform"
CARRIED_PREFIX = f"{PROJECT}:images."  # configuration the deploy passes on the command line, not in the stack file
_SHA = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class Deployed:
    commit: str | None
    config: dict[str, dict[str, Any]] = field(default_factory=dict)

    def config_map(self) -> str:
        return json.dumps(self.config, sort_keys=True) if self.config else ""


def last_deployed(history: Any) -> Deployed:
    """The newest succeeded `update` in `pulumi stack history --json` output (newest first)."""
    for entry in history if isinstance(history, list) else []:
        if not isinstance(entry, dict) or entry.get("kind") != "update" or entry.get("result") != "succeeded":
            continue
        commit = (entry.get("environment") or {}).get("git.head")
        if not isinstance(commit, str) or not _SHA.match(commit):
            continue
        config = {
            key: {"value": value["value"], "secret": False}
            for key, value in sorted((entry.get("config") or {}).items())
            if key.startswith(CARRIED_PREFIX)
            and isinstance(value, dict)
            and not value.get("secret")
            and isinstance(value.get("value"), str)
        }
        return Deployed(commit, config)
    return Deployed(None)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.delivery.deployed", description=__doc__.split("\n")[0])
    p.add_argument("history", help="`pulumi stack history --json` output")
    p.add_argument("--fallback-commit", help="commit to use when the stack has no successful update yet")
    p.add_argument("--github-output", action="store_true")
    args = p.parse_args(argv)
    text = Path(args.history).read_text() if Path(args.history).is_file() else ""
    try:
        history = json.loads(text) if text.strip() else []
    except json.JSONDecodeError:
        print(f"{args.history} is not `pulumi stack history --json` output", file=sys.stderr)
        return 1
    deployed = last_deployed(history)
    commit = deployed.commit or args.fallback_commit
    if deployed.commit:
        images = ", ".join(f"{k.removeprefix(CARRIED_PREFIX)}={v['value']}" for k, v in deployed.config.items())
        print(f"last deployed from {deployed.commit}; images: {images or 'from the stack file'}")
    else:
        print(f"::warning::no successful update with a commit in the stack's history: using {commit}")
    if args.github_output and os.environ.get("GITHUB_OUTPUT"):
        with open(os.environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as fh:
            fh.write(f"found={'true' if deployed.commit else 'false'}\ncommit={commit or ''}\n")
            fh.write(f"config-map={deployed.config_map()}\n")
            lines = "".join(f"{k}={v['value']}\n" for k, v in deployed.config.items())
            fh.write(f"config-lines<<__CONFIG__\n{lines}__CONFIG__\n")
    return 0 if commit else 1


if __name__ == "__main__":
    sys.exit(main())
