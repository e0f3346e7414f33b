"""One way to install what the tests need besides the Python and npm packages (tools/install-test-dependencies.sh):
.ci/run and the workflows' setup action both run it, the same way, before the README's test command; it installs
the Debian packages that give every Prometheus command the tests run, and never needs the network for the charts
and CRDs when ../shared is beside the clone; where it is absent, harness.fetch_charts fetches exactly what
../shared holds (its README's chart and CRD releases, file for file), shown here with stand-ins for helm and for
the projects' download URLs that serve ../shared's own files. The script runs for real against stand-in apt-get,
sudo and id on PATH."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from harness import crds
from harness.fetch_charts import crd_sources, fetch, fetch_crds, pinned_charts

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "install-test-dependencies.sh"
SHARED = ROOT.parent / "shared"
CALL = "bash tools/install-test-dependencies.sh"


def array(name: str) -> list[str]:
    match = re.search(rf"^{name}=\(([^)]*)\)$", SCRIPT.read_text(), re.M)
    assert match, name
    return match.group(1).split()


# --- one script, called the same way ---------------------------------------------------------------------------
def test_ci_and_the_setup_action_run_the_same_script_before_the_test_command() -> None:
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip()]
    assert ci[-1] == "make test", ".ci/run must end with the README's test command"
    assert ci[-3:-1] == [f'MLOPS_SHARED_DIR="$({CALL})"', "export MLOPS_SHARED_DIR"]
    assert sum(CALL in line for line in ci) == 1 and not any("apt-get" in line for line in ci)
    setup = yaml.safe_load((ROOT / ".github" / "actions" / "setup" / "action.yml").read_text())
    (step,) = [s for s in setup["runs"]["steps"] if CALL in str(s.get("run"))]
    assert step["run"].splitlines()[0] == f"shared=$({CALL})"
    assert "MLOPS_SHARED_DIR=$shared" in step["run"]
    workflows = (ROOT / ".github").rglob("*.yml")
    assert not any("apt-get" in p.read_text() or "fetch_charts" in p.read_text() for p in workflows)


def test_the_packages_give_every_prometheus_command_the_tests_run() -> None:
    packages = array("PACKAGES")
    assert packages == ["prometheus", "prometheus-alertmanager"]
    # what the README and the machines' notes name
    assert "`prometheus` and `prometheus-alertmanager` packages" in (ROOT / "README.md").read_text()
    if (SHARED / "KNOWLEDGE.md").is_file():
        assert "apt-get install -y prometheus prometheus-alertmanager" in (SHARED / "KNOWLEDGE.md").read_text()
    # every command the observability tests look up is one the script checks for after installing
    used: set[str] = set()
    for path in (ROOT / "tests" / "observability").glob("*.py"):
        text = path.read_text()
        used |= set(re.findall(r'binary\("([\w-]+)"\)', text)) | set(re.findall(r'shutil\.which\("([\w-]+)"\)', text))
    assert used and used <= set(array("COMMANDS")), used


def test_the_crds_fetched_are_what_shared_holds_at_the_charts_releases() -> None:
    if not (SHARED / "crds").is_dir():
        pytest.fail("../shared/crds is missing beside the clone (see ../shared/README.md)")
    readme = (SHARED / "README.md").read_text()
    listed = set(re.findall(r"^\| `crds/([\w-]+)/(v[\w.]+)` \|", readme, re.M))
    fetched = {(s.project, s.release) for s in crd_sources()}
    on_disk = {(p.parent.name, p.name) for p in (SHARED / "crds").glob("*/*") if p.is_dir()}
    assert fetched == listed == on_disk
    for source in crd_sources():
        assert sorted(source.files) == sorted(
            p.name for p in (SHARED / "crds" / source.project / source.release).iterdir()
        )
    releases = {s.project: s.release for s in crd_sources()}
    charts = {chart: version for chart, _, version in pinned_charts()}
    assert releases["cert-manager"] == charts["cert-manager"] and releases["traefik"] == f"v{charts['traefik']}"
    charts_listed = set(re.findall(r"^\| `charts/([\w-]+)/([\w.]+)` \|", readme, re.M))
    assert {(chart, version) for chart, version in charts.items()} <= charts_listed


def test_fetching_where_shared_is_absent_gives_the_same_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not (SHARED / "crds").is_dir() or not (SHARED / "charts").is_dir():
        pytest.fail("../shared is missing beside the clone (see ../shared/README.md)")
    # the projects' sources, served from ../shared's copies of the same files
    served: list[str] = []

    def opener(url: str) -> io.BytesIO:
        served.append(url)
        for source in crd_sources():
            if url.startswith(source.url + "/"):
                name = url.removeprefix(source.url + "/")
                return io.BytesIO((SHARED / "crds" / source.project / source.release / name).read_bytes())
        raise AssertionError(f"unexpected URL {url}")

    fetch_crds(tmp_path, opener)
    assert all(u.startswith("https://raw.githubusercontent.com/") for u in served)
    for source in crd_sources():
        for name in source.files:
            got = (tmp_path / "crds" / source.project / source.release / name).read_bytes()
            assert got == (SHARED / "crds" / source.project / source.release / name).read_bytes()
    index = crds.load_index(tmp_path / "crds")
    assert index.crd("monitoring.coreos.com", "ServiceMonitor") and index.crd("traefik.io", "Middleware")
    # helm: a stand-in that "pulls" a chart by unpacking ../shared's copy of it
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "helm").write_text(
        "#!/usr/bin/env bash\n"
        'chart="$2"; version=""; dest=""\n'
        'while [ $# -gt 0 ]; do case "$1" in --version) version="$2";; --untardir) dest="$2";; esac; shift; done\n'
        f'mkdir -p "$dest/$chart" && cp {SHARED}/charts/"$chart"/"$version"/* "$dest/$chart/"\n'
    )
    (bin_dir / "helm").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    fetch(tmp_path)
    for chart, _, version in pinned_charts():
        names = sorted(p.name for p in (SHARED / "charts" / chart / version).iterdir())
        assert sorted(p.name for p in (tmp_path / "charts" / chart / version).iterdir()) == names, chart


# --- the script, run --------------------------------------------------------------------------------------------
def stand_ins(tmp_path: Path, uid: int, install: bool) -> tuple[Path, Path]:
    """A PATH with only the tools the script uses: apt-get (logs its arguments; with `install` it provides the
    Prometheus commands), sudo (logs, then runs the command), id (prints `uid`), dirname."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    chmod = shutil.which("chmod")
    provide = "".join(f'echo "#!/bin/sh" > {bin_dir}/{c}; {chmod} +x {bin_dir}/{c}; ' for c in array("COMMANDS"))
    scripts = {
        "apt-get": f'echo "apt-get $*" >> {log}\ncase "$1" in install) {provide if install else ":"};; esac\n',
        "sudo": f'echo "sudo $1" >> {log}\nexec "$@"\n',
        "id": f"echo {uid}\n",
        "env": 'while [ "${1#*=}" != "$1" ]; do export "$1"; shift; done\nexec "$@"\n',
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text("#!/bin/bash\n" + body)
        (bin_dir / name).chmod(0o755)
    for tool in ("dirname",):
        os.symlink(shutil.which(tool), bin_dir / tool)  # type: ignore[arg-type]
    log.touch()
    return bin_dir, log


def run(script: Path, bin_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    bash = shutil.which("bash")
    assert bash
    return subprocess.run(
        [bash, str(script)], env={"PATH": str(bin_dir), **env}, capture_output=True, text=True, timeout=60
    )


def test_the_packages_are_installed_when_a_command_is_missing_with_sudo_when_not_root(tmp_path: Path) -> None:
    if not (SHARED / "crds").is_dir():
        pytest.fail("../shared is missing beside the clone (see ../shared/README.md)")
    bin_dir, log = stand_ins(tmp_path, uid=1001, install=True)
    done = run(SCRIPT, bin_dir)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{SHARED.resolve()}\n"  # ../shared, used as it is: nothing fetched
    assert log.read_text().splitlines() == [
        "sudo apt-get",
        "apt-get update -qq",
        "sudo env",
        "apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager",
    ]
    again = run(SCRIPT, bin_dir)  # everything there now: nothing installed
    assert again.returncode == 0 and log.read_text().count("apt-get install") == 1


def test_a_package_that_does_not_give_the_commands_fails_the_script(tmp_path: Path) -> None:
    bin_dir, log = stand_ins(tmp_path, uid=0, install=False)
    done = run(SCRIPT, bin_dir)
    assert done.returncode == 1 and done.stdout == ""
    assert "still missing after installing prometheus prometheus-alertmanager" in done.stderr
    assert not any(line.startswith("sudo") for line in log.read_text().splitlines())  # root needs no sudo


def test_without_shared_the_charts_and_crds_are_fetched_into_the_given_folder(tmp_path: Path) -> None:
    clone = tmp_path / "work" / "clone"
    (clone / "tools").mkdir(parents=True)
    shutil.copy(SCRIPT, clone / "tools" / SCRIPT.name)
    (clone / ".venv" / "bin").mkdir(parents=True)
    python_log = tmp_path / "python.log"
    (clone / ".venv" / "bin" / "python").write_text(f'#!/bin/bash\necho "$PWD $*" >> {python_log}\n')
    (clone / ".venv" / "bin" / "python").chmod(0o755)
    bin_dir, _ = stand_ins(tmp_path, uid=0, install=True)
    dest = tmp_path / "fetched"
    done = run(clone / "tools" / SCRIPT.name, bin_dir, MLOPS_SHARED_DIR=str(dest))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{dest}\n"
    assert python_log.read_text() == f"{clone} -m harness.fetch_charts {dest}\n"
    assert "no ../shared beside the clone" in done.stderr
