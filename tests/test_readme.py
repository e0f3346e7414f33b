"""The README stays true: its environment-variable table is the contract's, its commands exist."""

from __future__ import annotations

import re

from harness.run import ROOT
from services.common import contract


def readme() -> str:
    return (ROOT / "README.md").read_text()


def test_env_table_equals_the_contract() -> None:
    text = readme()
    table = text.split("<!-- env-table:start -->")[1].split("<!-- env-table:end -->")[0].strip()
    assert table == contract.markdown_table(), (
        "run: python -m services.common.contract, paste between the env-table markers"
    )


def test_make_targets_named_in_the_readme_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z-]+):", makefile, flags=re.M))
    named = set(re.findall(r"make ([a-z-]+)", readme()))
    assert named <= targets, f"README names make targets that do not exist: {named - targets}"


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test    # the test command" in readme()
    assert re.search(r"^make test$", (ROOT / ".ci" / "run").read_text(), flags=re.M)
