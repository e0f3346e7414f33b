"""No function or method in the project's source folders is longer than 80 lines (decorators and docstring
included), so a long function cannot grow back unnoticed; the failure lists every offender with its place and
length. There are no exceptions. (Complexity, branches, returns and statements are ruff's:
pyproject.toml [tool.ruff.lint].)"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE_FOLDERS = (
    "infra",
    "components",
    "stacks",
    "services",
    "dags",
    "harness",
    "policy",
    "devstack",
    "tools",
    "bench",
)
MAX_LINES = 80


def function_lengths(source: str, path: str) -> dict[str, int]:
    """`path:Qualified.name` -> lines, from the first decorator to the last line, of every function in `source`."""
    lengths: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                lengths[f"{path}:{prefix}{child.name}"] = (child.end_lineno or child.lineno) - first + 1
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return lengths


def too_long() -> dict[str, int]:
    found: dict[str, int] = {}
    for folder in SOURCE_FOLDERS:
        for file in sorted((ROOT / folder).rglob("*.py")):
            path = file.relative_to(ROOT).as_posix()
            lengths = function_lengths(file.read_text(encoding="utf-8"), path)
            found |= {name: n for name, n in lengths.items() if n > MAX_LINES}
    return found


def test_every_function_of_the_source_folders_is_at_most_80_lines() -> None:
    offenders = too_long()
    listing = "\n".join(f"  {name}: {n} lines" for name, n in sorted(offenders.items(), key=lambda kv: -kv[1]))
    assert not offenders, f"functions over {MAX_LINES} lines (split them into named helpers):\n{listing}"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("def f():\n" + "    x = 1\n" * 80, {"m.py:f": 81}),
        ("class C:\n    @property\n    def g(self):\n        return 1\n", {"m.py:C.g": 3}),
        ("def outer():\n    async def inner():\n        pass\n", {"m.py:outer": 3, "m.py:outer.inner": 2}),
    ],
)
def test_lengths_count_decorators_and_name_methods_and_nested_functions(source: str, expected: dict[str, int]) -> None:
    assert function_lengths(source, "m.py") == expected
