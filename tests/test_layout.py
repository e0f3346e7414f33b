"""The tests mirror the source tree, and a tool keeps it so.

Every test module `tests/<folder>/test_<name>.py` is named after what it tests in the mirrored source folder
`<folder>/`: a module `<name>.py`, a package `<name>/`, or a file `<name>` of another kind (`Dockerfile`,
`renovate.json`), where `<name>` may carry an aspect after the module's name (`test_protocols_units.py` tests
`protocols`). Two folders mirror more than one place: `tests/dags/` mirrors `dags/` and the package
`dags/mlops_tasks/`; `tests/ci/` mirrors `.ci/` and `.github/` (its actions and workflows). Every folder under
`tests/` mirrors a source folder. The only other test modules are the cross-cutting suites listed below, each
with the reason it stands on its own (journeys across services, hostile input, whole-stack checks): a new module
that tests one module is named after it, or this test names it.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"

# tests/<folder> -> the source folders it mirrors (default: the same path from the root)
MIRRORS: dict[str, tuple[str, ...]] = {
    "dags": ("dags", "dags/mlops_tasks"),
    "ci": (".ci", ".github", ".github/actions", ".github/workflows"),
}

# Cross-cutting suites: module -> why it is not named after one module.
CROSS_CUTTING: dict[str, str] = {
    "tests/ci/test_code_size.py": "the size limit of every function in every source folder",
    "tests/components/test_outputs.py": "every component's typed outputs, across the whole program under mocks",
    "tests/dags/test_dag_runs.py": "journey: real DAG runs against MLflow and serving, from training to rollback",
    "tests/dags/test_fresh_platform.py": "journey: the first training on a platform with nothing registered",
    "tests/services/api/test_schemathesis.py": "hostile input: generated requests against the whole platform API",
    "tests/services/serving/test_hostile.py": "hostile input: bodies, models and files meant to break the service",
    "tests/services/serving/test_schemathesis.py": "hostile input: generated requests against the whole serving API",
    "tests/services/test_import_graph.py": "the import graph of every service: no arrow back to dags/ or the program",
}

# Test-support folders that hold no test module of their own (fixtures, sample models).
SUPPORT_FOLDERS = {"fixtures", "broken_model", "__pycache__"}


def _sources(folder: Path) -> list[Path]:
    rel = folder.relative_to(TESTS).as_posix()
    return [ROOT / p for p in MIRRORS.get(rel, (rel,))]


def _names(source: Path) -> set[str]:
    """What a test module in the mirror of `source` may be named after (lower case, no suffix)."""
    if not source.is_dir():
        return set()
    return {
        child.name.split(".", 1)[0].lower().replace("-", "_")
        for child in source.iterdir()
        if not child.name.startswith("__")
    }


def _tested(stem: str, names: set[str]) -> bool:
    parts = stem.split("_")
    return any("_".join(parts[:i]) in names for i in range(len(parts), 0, -1))


def _test_modules() -> list[Path]:
    return sorted(p for p in TESTS.rglob("test_*.py") if not SUPPORT_FOLDERS & set(p.relative_to(TESTS).parts))


def unmapped() -> list[str]:
    out = []
    for module in _test_modules():
        rel = module.relative_to(ROOT).as_posix()
        if module.parent == TESTS or rel in CROSS_CUTTING:
            continue
        names = set().union(*(_names(s) for s in _sources(module.parent)))
        if not _tested(module.stem.removeprefix("test_"), names):
            out.append(rel)
    return out


def test_every_test_module_is_named_after_what_it_tests() -> None:
    offenders = unmapped()
    assert not offenders, (
        "test modules named after no module of the folder they mirror (rename them test_<module>[_<aspect>].py, "
        "move them to the folder that mirrors their module, or list a cross-cutting suite in tests/test_layout.py "
        "with its reason):\n  " + "\n  ".join(offenders)
    )


def test_every_test_folder_mirrors_a_source_folder() -> None:
    orphans = [
        folder.relative_to(ROOT).as_posix()
        for folder in sorted(p for p in TESTS.rglob("*") if p.is_dir())
        if not SUPPORT_FOLDERS & set(folder.relative_to(TESTS).parts) and not any(s.is_dir() for s in _sources(folder))
    ]
    assert not orphans, f"test folders that mirror no source folder: {orphans}"


def test_the_cross_cutting_list_names_existing_modules_with_a_reason() -> None:
    for module, reason in CROSS_CUTTING.items():
        assert (ROOT / module).is_file(), f"{module} is listed as cross-cutting but does not exist"
        assert len(reason) > 20, f"{module}: say why it is cross-cutting"
        names = set().union(*(_names(s) for s in _sources((ROOT / module).parent)))
        assert not _tested(Path(module).stem.removeprefix("test_"), names), (
            f"{module} is named after a module: it needs no place in the cross-cutting list"
        )


def test_the_rule_catches_a_module_named_by_theme(tmp_path: Path) -> None:
    names = _names(ROOT / "services" / "serving")
    assert _tested("loader", names) and _tested("protocols_units", names) and _tested("dockerfile", names)
    assert not _tested("units", names) and not _tested("hostile", names)
