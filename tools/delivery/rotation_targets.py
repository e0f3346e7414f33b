"""The resources a rotation-only `pulumi up` may touch: the IAM key slots, the database password slots and
everything depending on them.

    python -m tools.delivery.rotation_targets --state state.json     # from `pulumi stack export`
    python -m tools.delivery.rotation_targets --stack prod           # offline: the program under mocks

Prints one URN per line: the access keys (`aws:iam/accessKey:AccessKey`, the rotating key slots) and
the database login roles' passwords (`random:index/randomPassword:RandomPassword` kept by a rotation
period, `ROTATION_KEEPER`) first, then every resource that depends on one of them, directly or through
others: the Kubernetes Secrets that carry the active key or login role, the bootstrap Job (and its SQL)
that sets the passwords, and the workloads that roll when they change (their pod templates carry a
marker derived from them). Dependencies are read as Pulumi reads them: `dependencies`,
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
PASSWORD_TYPE = "random:index/randomPassword:RandomPassword"
ROTATION_KEEPER = "rotation-period"  # the keeper of a password slot (components.database)


def _rotates(type_: str, inputs: dict[str, Any] | None) -> bool:
    """A rotating slot: an access key, or a password kept by a rotation period."""
    keepers = (inputs or {}).get("keepers") or {}
    return type_ == KEY_TYPE or (type_ == PASSWORD_TYPE and isinstance(keepers, dict) and ROTATION_KEEPER in keepers)


@dataclass(frozen=True)
class Resource:
    urn: str
    type: str
    parent: str | None = None
    dependencies: frozenset[str] = field(default_factory=frozenset)
    rotates: bool = False  # a key or password slot


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
        rotates = _rotates(r["type"], r.get("inputs"))
        out.append(Resource(r["urn"], r["type"], r.get("parent"), frozenset(deps), rotates))
    return out


def from_program(stack: str) -> list[Resource]:
    """Resources the program registers for `stack` under the harness's mocks (no cloud, no state)."""
    from harness.mocks import reveal
    from harness.run import run_program

    run = run_program(stack)
    return [
        Resource(r.urn, r.type, r.parent, frozenset(r.dependencies), _rotates(r.type, reveal(r.inputs)))
        for r in run.registrations
    ]


@dataclass(frozen=True)
class Targets:
    keys: list[str]
    dependents: list[str]
    passwords: list[str] = field(default_factory=list)

    @property
    def all(self) -> list[str]:
        return self.keys + self.passwords + self.dependents


def rotation_targets(resources: Iterable[Resource]) -> Targets:
    """The key slots', the password slots' and their dependents' URNs, each sorted."""
    resources = list(resources)
    keys = sorted(r.urn for r in resources if r.type == KEY_TYPE)
    passwords = sorted(r.urn for r in resources if r.rotates and r.type != KEY_TYPE)
    reached_from: dict[str, set[str]] = {}
    for r in resources:
        for dep in r.dependencies:
            reached_from.setdefault(dep, set()).add(r.urn)
        if r.parent:  # a dependent's children are part of it
            reached_from.setdefault(r.parent, set()).add(r.urn)
    seen = {*keys, *passwords}
    todo = [*keys, *passwords]
    while todo:
        for nxt in reached_from.get(todo.pop(), set()) - seen:
            seen.add(nxt)
            todo.append(nxt)
    return Targets(keys, sorted(seen - set(keys) - set(passwords)), passwords)


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
    slots = f"{len(targets.keys)} key slots, {len(targets.passwords)} password slots"
    print(f"{slots}, {len(targets.dependents)} dependents", file=sys.stderr)
    if args.github_output and os.environ.get("GITHUB_OUTPUT"):
        with open(os.environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as fh:
            fh.write(f"count={len(targets.all)}\ntargets<<__URNS__\n" + "\n".join(targets.all) + "\n__URNS__\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
