"""checkov, an outside scanner, over the Kubernetes objects a stack renders.

The harness holds every object the program creates under mocks (`ProgramRun.kubernetes_objects`); `render` writes
them one YAML file per object, and `start`/`finish` run checkov 3.3.30 (PyPI, pinned by hash in
tools/checkov/requirements.txt; `make setup` installs it in .venv-checkov, apart from uv.lock) once over the
folder: `checkov -d DIR --framework kubernetes secrets -o json --skip-download`. Each failed check becomes a
`Finding` on the object of its file; harness/checkov_accepted.py lists the accepted ones, each with its reason.

Numbers are written as the API server returns them (the mocks hand every number over as a float, and
`runAsUser: 10001.0` fails checkov's integer checks). A Secret's own values are replaced by a fixed word: a Secret
holds credentials by definition (under mocks, generated stand-ins); the secrets checks are there for credentials
anywhere else (ConfigMaps, env literals, command lines). Helm releases are not rendered (no chart is fetched):
their values are checked by the policy pack and the charts' schemas instead.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.run import ROOT, ProgramRun

CHECKOV_VERSION = "3.3.30"
FRAMEWORKS = ("kubernetes", "secrets")
REDACTED = "redacted"  # a plain word: a random-looking one trips the entropy checks


@dataclass(frozen=True, order=True)
class ObjectId:
    """A rendered object: kind, namespace ("" when cluster-scoped) and name."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace + '/' if self.namespace else ''}{self.name}"


@dataclass(frozen=True, order=True)
class Finding:
    """One failed checkov check on one object."""

    check: str
    obj: ObjectId
    title: str

    def __str__(self) -> str:
        return f"{self.check} on {self.obj}: {self.title}"


def checkov_binary() -> Path:
    """checkov of .venv-checkov (`make setup`), or $CHECKOV_BIN; raises when it is not there."""
    path = Path(os.environ.get("CHECKOV_BIN") or ROOT / ".venv-checkov" / "bin" / "checkov")
    if not path.is_file():
        raise FileNotFoundError(
            f"checkov is not installed at {path}: run `make setup` (installs checkov {CHECKOV_VERSION})"
        )
    return path


def _integral(value: Any) -> Any:
    """Integral floats as ints, all the way down."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def _redacted(obj: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = _integral(obj)
    if out.get("kind") != "Secret":
        return out
    for key in ("data", "stringData"):
        if isinstance(out.get(key), Mapping):
            out[key] = dict.fromkeys(out[key], REDACTED)
    return out


def object_id(obj: Mapping[str, Any]) -> ObjectId:
    meta = obj.get("metadata") or {}
    return ObjectId(str(obj.get("kind", "")), str(meta.get("namespace") or ""), str(meta.get("name", "")))


def write_objects(objects: Iterable[dict[str, Any]], folder: Path, prefix: str = "") -> dict[str, ObjectId]:
    """One YAML file per object in `folder` (Secrets' values redacted); returns file name -> object."""
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, ObjectId] = {}
    for i, obj in enumerate(objects):
        oid = object_id(obj)
        name = f"{prefix}{i:03d}-{oid.kind.lower()}-{oid.name}.yaml"
        (folder / name).write_text(yaml.safe_dump(_redacted(obj), sort_keys=False))
        files[name] = oid
    return files


def render(run: ProgramRun, folder: Path) -> dict[str, ObjectId]:
    """Every Kubernetes object of the run, one YAML file each."""
    return write_objects((reg.manifest for reg in run.kubernetes_objects()), folder)


def command(folder: Path) -> list[str]:
    return [str(checkov_binary()), "-d", str(folder), "--framework", *FRAMEWORKS, "-o", "json", "--skip-download"]


def start(folder: Path) -> subprocess.Popen[str]:
    """checkov over `folder`, started (two stacks can be scanned at once)."""
    env = {**os.environ, "LOG_LEVEL": "WARNING"}
    return subprocess.Popen(command(folder), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def findings(output: str, files: Mapping[str, ObjectId]) -> list[Finding]:
    """The failed checks of checkov's JSON report, each on the object of its file."""
    reports = json.loads(output)
    out: list[Finding] = []
    for report in reports if isinstance(reports, list) else [reports]:
        if "check_type" not in report and report.get("failed") == 0:
            continue  # what checkov prints when nothing was found at all: its summary alone
        if report.get("check_type") not in FRAMEWORKS:
            raise ValueError(f"unexpected checkov report {str(report)[:300]}")
        for failed in report["results"].get("failed_checks", []):
            file_name = Path(failed["file_path"]).name
            out.append(Finding(failed["check_id"], files[file_name], failed.get("check_name") or ""))
    return sorted(set(out))


def finish(process: subprocess.Popen[str], files: Mapping[str, ObjectId]) -> list[Finding]:
    """Wait for a scan; its findings. checkov exits 1 when a check fails: anything else, or no report, raises."""
    stdout, stderr = process.communicate(timeout=1200)
    if process.returncode not in (0, 1) or not stdout.strip().startswith(("[", "{")):
        raise RuntimeError(f"checkov failed (exit {process.returncode}):\n{stderr[-3000:]}\n{stdout[-2000:]}")
    return findings(stdout, files)
