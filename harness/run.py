"""Run the real Pulumi program (`infra/__main__.py`) under mocks, with a real stack file's config.

`run_program("dev")` reads `Pulumi.dev.yaml` (the file users deploy with), turns its `config:`
section into Pulumi config (a `secure:` value becomes a placeholder that is marked secret, as the
engine would hand a decrypted secret to the program), runs the program with `PlatformMocks` and a
`RecordingMonitor`, and returns every registration and every stack export with its secretness.
"""

from __future__ import annotations

import asyncio
import json
import os
import runpy
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import settings as runtime_settings

from harness.mocks import PlatformMocks, RecordingMonitor, Registration, SecretValue, reveal

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = ROOT / "infra" / "__main__.py"
PROJECT = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["name"]


def shared_dir() -> Path:
    """Where the checks read chart values files and CRDs: ../shared beside the clone, or $MLOPS_SHARED_DIR
    (CI on GitHub fetches the pinned charts and CRDs there: tools/install-test-dependencies.sh)."""
    return Path(os.environ.get("MLOPS_SHARED_DIR", ROOT.parent / "shared"))


@dataclass
class StackConfig:
    stack: str
    source: str
    config: dict[str, Any]
    secret_keys: list[str]


def placeholder_secret(key: str) -> str:
    """What a `secure:` value decrypts to under the harness (it cannot decrypt real ciphertext)."""
    return f"harness-secret-value-for-{key}"


def read_stack_file(stack: str, path: Path | None = None) -> StackConfig:
    path = path or ROOT / f"Pulumi.{stack}.yaml"
    doc = yaml.safe_load(path.read_text()) or {}
    config: dict[str, Any] = {}
    secret_keys: list[str] = []
    for key, value in (doc.get("config") or {}).items():
        if ":" not in key:
            key = f"{PROJECT}:{key}"
        if isinstance(value, dict) and set(value) == {"secure"}:
            config[key] = placeholder_secret(key)
            secret_keys.append(key)
        elif isinstance(value, (dict, list)):
            config[key] = json.dumps(value)
        elif isinstance(value, bool):
            config[key] = "true" if value else "false"
        else:
            config[key] = str(value)
    return StackConfig(stack=stack, source=path.name, config=config, secret_keys=secret_keys)


@dataclass
class Export:
    value: Any
    secret: bool


@dataclass
class ProgramRun:
    stack: str
    registrations: list[Registration]
    exports: dict[str, Export]

    def of_type(self, *types: str) -> list[Registration]:
        return [r for r in self.registrations if r.type in types]

    def kubernetes_objects(self) -> list[Registration]:
        return [r for r in self.registrations if r.is_kubernetes_object]

    def helm_releases(self) -> list[Registration]:
        return [
            r for r in self.registrations if r.type.startswith("kubernetes:helm.sh/") and r.type.endswith(":Release")
        ]

    def named(self, name: str) -> Registration:
        found = [r for r in self.registrations if r.name == name]
        if len(found) != 1:
            raise KeyError(f"{len(found)} registrations named {name!r}")
        return found[0]

    def children(self, parent: Registration) -> list[Registration]:
        return [r for r in self.registrations if r.parent == parent.urn]

    def by_urn(self) -> dict[str, Registration]:
        return {r.urn: r for r in self.registrations}

    def export_values(self) -> dict[str, Any]:
        return {k: reveal(e.value) for k, e in self.exports.items()}


@contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _ensure_event_loop() -> None:
    """Pulumi's test runner uses the thread's current loop; `asyncio.run` elsewhere (e.g. a test
    that ran before) leaves none set, so provide one, whatever ran earlier in the process."""
    try:
        loop = asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        loop = None
    if loop is None or loop.is_closed():
        asyncio.set_event_loop(asyncio.new_event_loop())


def run_program(
    stack: str,
    stack_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> ProgramRun:
    """Run the program for `stack` under mocks and return what it registered and exported.

    `overrides` replace config values (keys with or without the project prefix); `env` sets
    environment variables during the run. Exceptions raised by the program (e.g.
    `stacks.SettingsError`) propagate.
    """

    def program() -> None:
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        runpy.run_path(str(PROGRAM), run_name="__main__")

    return run_under_mocks(stack, program, stack_file=stack_file, overrides=overrides, env=env)


def run_under_mocks(
    stack: str,
    body: Callable[[], None],
    stack_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> ProgramRun:
    """Run `body` (any code that creates resources, e.g. one component) as a Pulumi program under
    mocks, with the stack file's config set, and return what it registered and exported."""
    cfg = read_stack_file(stack, stack_file)
    for key, value in (overrides or {}).items():
        full = key if ":" in key else f"{PROJECT}:{key}"
        cfg.config[full] = value if isinstance(value, str) else json.dumps(value)
    _ensure_event_loop()
    monitor = RecordingMonitor(PlatformMocks())
    runtime_settings.ROOT.set(None)
    pulumi.runtime.set_mocks(PlatformMocks(), project=PROJECT, stack=stack, preview=False, monitor=monitor)
    pulumi.runtime.set_all_config(cfg.config, cfg.secret_keys)
    exports: dict[str, Export] = {}

    @pulumi.runtime.test
    def _run() -> Any:
        body()
        root = runtime_settings.get_root_resource()
        items = list(getattr(root, "outputs", {}).items())
        outputs = [pulumi.Output.from_input(v) for _, v in items]

        async def collect() -> None:
            for (name, _), out in zip(items, outputs, strict=True):
                value = await out.future()
                secret = await out.is_secret()
                exports[name] = Export(SecretValue(value) if secret else value, secret)

        return pulumi.Output.from_input(asyncio.ensure_future(collect()))

    with _environment(env or {}):
        _run()
    return ProgramRun(stack=stack, registrations=list(monitor.registrations.values()), exports=exports)
