"""The arrows between the packages point one way: nothing under services/ imports the DAG package (`mlops_tasks`,
`dags`), the Pulumi program or its parts (`infra`, `components`, `stacks`, `observability`) or the repository's
tooling (`harness`, `policy`, `devstack`, `tools`, `tests`), at module level or inside a function. The services'
images copy services/ only; an import of any of these would fail there at run time."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = frozenset(
    {"mlops_tasks", "dags", "infra", "components", "stacks", "observability", "harness", "policy", "devstack", "tools"}
    | {"tests"}
)


def forbidden_imports(source: str, filename: str = "<source>") -> list[str]:
    """`line: module` of every absolute import in `source` whose top-level package is forbidden."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        else:
            continue
        found += [f"{node.lineno}: {m}" for m in modules if m.split(".")[0] in FORBIDDEN]
    return found


def test_the_scanner_finds_every_form_of_import() -> None:
    source = (
        "import os\nfrom services.common import contract\nimport mlops_tasks.runner as r\n"
        "def f():\n    from infra.network import x\n    import stacks\nfrom . import sibling\n"
    )
    assert forbidden_imports(source) == ["3: mlops_tasks.runner", "5: infra.network", "6: stacks"]


@pytest.mark.parametrize("path", sorted((ROOT / "services").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_services_import_nothing_of_dags_the_program_or_the_tooling(path: Path) -> None:
    assert forbidden_imports(path.read_text(), str(path)) == [], f"{path.relative_to(ROOT)} imports outside services/"
