"""docs/configuration.md is what `make docs` (`python -m tools.docs`) prints now: a stack setting, a catalog rule or
a network policy changed without regenerating it fails here."""

from __future__ import annotations

import subprocess
import sys

from harness.run import ROOT


def test_configuration_doc_is_current() -> None:
    generated = subprocess.run(
        [sys.executable, "-m", "tools.docs"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert (ROOT / "docs" / "configuration.md").read_text() == generated, (
        "run `make docs` and commit docs/configuration.md"
    )
