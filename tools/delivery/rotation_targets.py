"""The resources a rotation-only `pulumi up` may touch: the IAM key slots and everything depending on them.

    python -m tools.delivery.rotation_targets --state state.json     # from `pulumi stack export`
    python -m tools.delivery.rotation_targets --stack prod           # offline: the program under mocks

Prints one URN per line: the access keys (`aws:iam/accessKey:AccessKey`, the rotating key slots)
first, then every resource that depends on one of them, directly or through others: the Kubernetes
Secrets that carry the active key and the workloads that roll when it changes (their pod templates
carry a marker derived from the key). Dependencies are read as Pulumi reads them: `dependencies`,
`propertyDependencies`, `deletedWith`, and children of a dependent component. The scheduled rotation
job passes these URNs to `pulumi up --target ... --target-dependents`, so the update cannot reach
anything else (the database, the bucket, the ingress, ...).

With `--github-output`, writes `targets` (multi-line) and `count` to $GITHUB_OUTPUT. Exits 2 when the
stack has no key slot: an empty target list would make `pulumi up` update everything.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KEY_TYPE = "aws:iam/accessKey:AccessKey"


@dataclass(frozen=True)
class Resource:
    urn: str
    type: str
    parent: str | None = None
    dependencies: frozenset[str] = field(default_factory=frozenset)


def from_export(doc: dict[str, Any]) -> list[Resource]:
    """Resources of a `pulumi stack export` document (deployment version 3)."""
    resources = (doc.get("deployment") or {}).get("resources") or []
    out = []
    for r in resources:
        deps = set(r.get("dependencies") or [])
        for urns in (r.get("propertyDependencies") or {}).values():
            deps.update(urns or [])
        if r.get("deletedWith"):
            deps.add(r["deletedWith"])
        out.append(Resource(r["urn"], r["type"], r.get("parent"), frozenset(deps)))
    return out


def from_program(stack: str) -> list[Resource]:
    """Resources the program registers for `stack` under the harness's mocks (no cloud, no state)."""
    from harness.run import run_program

    run = run_program(stack)
    return [Resource(r.urn, r.type, r.parent, frozenset(r.dependencies)) for r in run.registrations]


@dataclass(frozen=True)
class Targets:
    keys: list[str]
    dependents: list[str]

    @property
    def all(self) -> list[str]:
        return self.keys + self.dependents


def rotation_targets(resources: Iterable[Resource]) -> Targets:
    """The key slots' URNs and their dependents' URNs, each sorted."""
    resources = list(resources)
    keys = sorted(r.urn for r in resources if r.type == KEY_TYPE)
    reached_from: dict[str, set[str]] = {}
    for r in resources:
        for dep in r.dependencies:
            reached_from.setdefault(dep, set()).add(r.urn)
        if r.parent:  # a dependent's children are part of it
            reached_from.setdefault(r.parent, set()).add(r.urn)
    seen = set(keys)
    todo = list(keys)
    while todo:
        for nxt in reached_from.get(todo.pop(), set()) - seen:
            seen.add(nxt)
            todo.append(nxt)
    return Targets(keys, sorted(seen - set(keys)))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.delivery.rotation_targets", description=__doc__.split("\n")[0])
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--state", help="a `pulumi stack export` file")
    source.add_argument("--stack", help="run the program for this stack under mocks instead")
    p.add_argument("--github-output", action="store_true", help="write targets and count to $GITHUB_OUTPUT")
    args = p.parse_args(argv)
    resources = from_export(json.loads(Path(args.state).read_text())) if args.state else from_program(args.stack)
    targets = rotation_targets(resources)
    if not targets.keys:
        print(f"no IAM key slot ({KEY_TYPE}) in the stack: nothing to rotate", file=sys.stderr)
        return 2
    if any("," in urn for urn in targets.all):  # pulumi/actions splits its `target` input at commas
        print("a target URN contains a comma: it cannot be passed to pulumi/actions", file=sys.stderr)
        return 1
    print("\n".join(targets.all))
    print(f"{len(targets.keys)} key slots, {len(targets.dependents)} dependents", file=sys.stderr)
    if args.github_output and os.environ.get("GITHUB_OUTPUT"):
        with open(os.environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as fh:
            fh.write(f"count={len(targets.all)}\ntargets<<__URNS__\n" + "\n".join(targets.all) + "\n__URNS__\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
