"""The scripts the delivery workflows run (.github/workflows): image builds, drift, key rotation, issues.

Each is a small CLI, `python -m tools.delivery.<name>`, that uses only the standard library (the
workflows run some of them before the project's environment exists), with tests in tests/ci.
"""
