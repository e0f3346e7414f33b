"""The pack as the Pulumi CLI runs it: `PulumiPolicy.yaml`, its virtualenv, and `__main__.py` serving the policies.

The CLI starts `pulumi-analyzer-policy-python`, which runs `<virtualenv>/bin/python -u -m pulumi.policy
<engine> .` in the pack directory (the virtualenv option resolved against it); the pack prints its gRPC
port and serves `Analyze`/`AnalyzeStack`. The last test does exactly that and talks to it over gRPC.
"""

from __future__ import annotations

import os
import runpy
import selectors
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pulumi_policy
import pytest
import yaml
from google.protobuf import empty_pb2
from pulumi.runtime import proto
from pulumi.runtime.proto import analyzer_pb2_grpc

from policy.policies import ADVISORY, PACK_NAME, POLICIES, names
from policy.testing import secret, to_struct
from tests.policy.cases import config_map, db, secure_bucket, without

ROOT = Path(__file__).resolve().parents[2]
PACK = ROOT / "policy"


def pack_settings() -> dict[str, Any]:
    doc = yaml.safe_load((PACK / "PulumiPolicy.yaml").read_text())
    assert isinstance(doc, dict)
    return doc


def pack_python() -> Path:
    runtime = pack_settings()["runtime"]
    virtualenv = runtime["options"]["virtualenv"]
    return (PACK / virtualenv).resolve() / "bin" / "python"


def test_policy_project_file() -> None:
    doc = pack_settings()
    assert doc["runtime"]["name"] == "python"
    assert doc["version"] and doc["description"]
    # The pack runs in the project's locked environment (what `make setup` builds).
    assert pack_python().parent.parent == (ROOT / ".venv").resolve()


def test_main_only_builds_the_mandatory_pack(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[dict[str, Any]] = []

    class RecordingPack:
        def __init__(self, **kwargs: Any) -> None:
            built.append(kwargs)

    monkeypatch.setattr(pulumi_policy, "PolicyPack", RecordingPack)
    runpy.run_path(str(PACK / "__main__.py"), run_name="__main__")
    assert built == [
        {"name": PACK_NAME, "policies": POLICIES, "enforcement_level": pulumi_policy.EnforcementLevel.MANDATORY}
    ]


@pytest.fixture
def served_pack() -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    python = pack_python()
    assert python.exists(), f"{python} missing: run `make setup` (uv sync --frozen)"
    proc = subprocess.Popen(
        [str(python), "-u", "-m", "pulumi.policy", "127.0.0.1:1", "."],
        cwd=PACK,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 60
        line = b""
        while not line.endswith(b"\n") and time.monotonic() < deadline and proc.poll() is None:
            if sel.select(timeout=1):
                line += os.read(proc.stdout.fileno(), 64)
        if proc.poll() is not None or not line.strip().isdigit():
            err = proc.stderr.read().decode() if proc.stderr and proc.poll() is not None else ""
            pytest.fail(f"the pack did not print its port (got {line!r}): {err}")
        channel = grpc.insecure_channel(f"127.0.0.1:{int(line)}")
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_pack_serves_its_policies_over_grpc(served_pack: analyzer_pb2_grpc.AnalyzerStub) -> None:
    info = served_pack.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
    assert info.name == PACK_NAME
    assert sorted(p.name for p in info.policies) == sorted(names())
    assert {p.name: p.enforcementLevel for p in info.policies} == {
        name: proto.ADVISORY if name in ADVISORY else proto.MANDATORY for name in names()
    }

    leaked = config_map({"DB_PASSWORD": "hunter2"})
    response = served_pack.Analyze(
        proto.AnalyzeRequest(type=leaked.type, urn=leaked.urn, name=leaked.name, properties=to_struct(leaked.props)),
        timeout=30,
    )
    assert [(d.policyName, d.enforcementLevel) for d in response.diagnostics] == [
        ("k8s-configmap-no-secrets", proto.MANDATORY)
    ]
    assert "Move it to a Kubernetes Secret" in response.diagnostics[0].message

    # The served pack tells a secret password (as the engine marks it) from a plaintext one.
    for password, expected in (
        (secret("from-config"), []),
        ("in-the-code", [("rds-credentials-secret", proto.MANDATORY)]),
    ):
        rds = db(password=password)
        answer = served_pack.Analyze(
            proto.AnalyzeRequest(type=rds.type, urn=rds.urn, name=rds.name, properties=to_struct(rds.props)), timeout=30
        )
        assert [(d.policyName, d.enforcementLevel) for d in answer.diagnostics] == expected, answer.diagnostics

    resources = without(secure_bucket(), "Versioning")
    stack = served_pack.AnalyzeStack(
        proto.AnalyzeStackRequest(
            resources=[
                proto.AnalyzerResource(
                    type=r.type,
                    urn=r.urn,
                    name=r.name,
                    properties=to_struct(r.props),
                    dependencies=list(r.dependencies),
                )
                for r in resources
            ]
        ),
        timeout=30,
    )
    assert [d.policyName for d in stack.diagnostics] == ["s3-versioning-enabled"]
    assert stack.diagnostics[0].urn == resources[0].urn
