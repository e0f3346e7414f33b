"""`make preview STACK=dev [FORMAT=json]`: run the program under mocks and show what it would create.

Prints the resource tree (type, name, under its parent) and the stack's exports; with
`--format json`, one JSON document `{"stack", "resources": [{"type", "name", "parent", "inputs"}],
"outputs"}`. Secret values are printed as "[secret]". Exits 2 with the settings error on bad
configuration, 1 if any harness check fails (with `--check`).

This is a fast offline check for contributors and CI; users still run `pulumi preview`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from harness.mocks import redact
from harness.run import ProgramRun, run_program
from stacks.settings import SettingsError


def to_document(run: ProgramRun) -> dict[str, Any]:
    names = {r.urn: r.name for r in run.registrations}
    return {
        "stack": run.stack,
        "resources": [
            {
                "type": r.type,
                "name": r.name,
                "parent": names.get(r.parent or ""),
                "urn": r.urn,
                "protect": r.protect,
                "inputs": redact(r.inputs),
            }
            for r in run.registrations
        ],
        "outputs": {k: redact(e.value) for k, e in run.exports.items()},
    }


def render_tree(run: ProgramRun) -> str:
    children: dict[str | None, list[Any]] = {}
    known = {r.urn for r in run.registrations}
    for r in run.registrations:
        parent = r.parent if r.parent in known else None
        children.setdefault(parent, []).append(r)
    lines = [f"Stack {run.stack} ({len(run.registrations)} resources)"]

    def walk(parent: str | None, depth: int) -> None:
        for r in sorted(children.get(parent, []), key=lambda x: (x.type, x.name)):
            flag = "  [protected]" if r.protect else ""
            lines.append(f"{'  ' * depth}+ {r.type}  {r.name}{flag}")
            walk(r.urn, depth + 1)

    walk(None, 1)
    lines.append("Outputs:")
    for name, export in sorted(run.exports.items()):
        value = redact(export.value)
        lines.append(f"  {name}: {json.dumps(value) if not isinstance(value, str) else value}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make preview", description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="dev")
    parser.add_argument("--format", choices=("tree", "json"), default="tree")
    parser.add_argument("--stack-file", type=Path, help="stack file to use instead of Pulumi.<stack>.yaml")
    parser.add_argument("--check", action="store_true", help="also run the harness checks")
    args = parser.parse_args(argv)
    try:
        run = run_program(args.stack, args.stack_file)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.format == "json":
        print(json.dumps(to_document(run), indent=2, sort_keys=False))
    else:
        print(render_tree(run))
    if args.check:
        from harness.checks import all_problems

        min_version = run_min_version(args.stack, args.stack_file)
        problems = {k: v for k, v in all_problems(run, min_version).items() if v}
        for check, items in problems.items():
            for item in items:
                print(f"check failed [{check}]: {item}", file=sys.stderr)
        return 1 if problems else 0
    return 0


def run_min_version(stack: str, stack_file: Path | None) -> str:
    from harness.run import read_stack_file
    from stacks.settings import load_settings

    cfg = read_stack_file(stack, stack_file)
    return load_settings(stack, cfg.config, set(cfg.secret_keys), cfg.source).kubernetes.min_version


if __name__ == "__main__":
    sys.exit(main())
