"""`make demo`: the whole loop on this machine for every model of the catalog. Runs the real thing (MLflow, one
serving process per model, `airflow dags test train_<model>`) in a temporary state directory, on free ports, and
checks what it prints (per model: gate, promoted version, a prediction from its own serving), what it leaves
running (nothing), that `--model` runs one model and that a second run promotes the next version."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.catalog import DIABETES, IRIS
from services.common import contract

pytestmark = [pytest.mark.servers, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
DEMO = [sys.executable, "-m", "devstack.demo"]
MODELS = (IRIS, DIABETES)


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without the contract's variables: the demo sets what it needs."""
    names = {v.name for v in contract.ALL_VARS}
    env = {k: v for k, v in os.environ.items() if k not in names and k != "MAKEFLAGS"}
    env.update(extra or {})
    return env


def _demo_once(state: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 900) -> tuple[int, str]:
    """`python -m devstack.demo --once --state-dir STATE ARGS...`: its exit code and output."""
    proc = subprocess.run(
        [*DEMO, "--once", "--state-dir", str(state), *args],
        capture_output=True,
        text=True,
        env=env if env is not None else _env(),
        timeout=timeout,
        cwd=REPO,
    )
    return proc.returncode, proc.stdout + proc.stderr


def _ports(output: str) -> dict[str, int]:
    """What the demo started and on which port: MLflow, and `serving <model>` for each model."""
    found = dict(re.findall(r"^ {4}(MLflow|serving [^ ]+) http://127\.0\.0\.1:(\d+) \(pid", output, flags=re.M))
    return {name: int(port) for name, port in found.items()}


def _port_free(port: int) -> bool:
    """Nothing listens on `port` (connections of the stopped server may linger in TIME_WAIT: not a listener)."""
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _nothing_left(output: str, state: Path) -> None:
    """Every port the demo served on is free again and no process runs from its state directory."""
    ports = _ports(output)
    for name, port in ports.items():
        deadline = time.monotonic() + 20
        while not _port_free(port) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _port_free(port), f"{name} still listens on {port} after the demo exited"
    left = subprocess.run(["pgrep", "-af", str(state)], capture_output=True, text=True).stdout.strip()
    assert left == "", f"processes left behind:\n{left}"


def _make_has_demo_target() -> None:
    targets = subprocess.run(["make", "-pn", "-C", str(REPO)], capture_output=True, text=True, env=_env()).stdout
    assert re.search(r"^demo:", targets, flags=re.M), (
        "the Makefile has no `demo` target; it must run: .venv/bin/python -m devstack.demo $(ARGS)"
    )


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "demo-state"


def test_make_demo_once_then_one_model_again_until_ctrl_c(state: Path) -> None:
    _make_has_demo_target()
    args = f"--mlflow-port 0 --serving-port 0 --state-dir {state}"

    started = time.monotonic()
    first = subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), "demo", f"ARGS=--once {args}"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=1200,
    )
    seconds = time.monotonic() - started
    out = first.stdout + first.stderr
    print(f"make demo ARGS=--once (fresh state, both models): {seconds:.1f} s")
    assert first.returncode == 0, out[-6000:]
    assert set(_ports(out)) == {"MLflow", f"serving {IRIS}", f"serving {DIABETES}"}  # one serving per model
    for model in MODELS:
        assert f"RESULT {model}: OK: version 1 promoted to champion and served by its own serving (before: none)" in out
        assert re.search(rf"^  MLflow UI +http://127\.0\.0\.1:\d+/#/models/{model}$", out, flags=re.M)
        assert f"promoted: version 1 is champion of {model}" in out
    assert "RESULT: OK: 2 of 2 models promoted and served" in out
    assert "quality gate: passed: candidate test_accuracy" in out and "quality gate: passed: candidate test_rmse" in out
    for step in (
        "check dependencies and ports",
        "start MLflow",
        "start the serving processes (one per model)",
        "airflow dags test train_iris_classifier",
        "airflow dags test train_diabetes_regression",
        "sample predictions",
    ):
        assert re.search(rf"^ +\d+\.\d s  {re.escape(step)}", out, flags=re.M), f"step {step!r} without duration"
    assert len(re.findall(r"^  champion +-> version 1$", out, flags=re.M)) == 2
    assert len(re.findall(r"^  serving OpenAPI docs http://127\.0\.0\.1:\d+/docs$", out, flags=re.M)) == 2
    # a prediction from each model's own serving: a class for iris, a number for the regression
    iris_answer = json.loads(re.search(rf"^    {IRIS}: (.*)$", out, flags=re.M).group(1))  # type: ignore[union-attr]
    diabetes_answer = json.loads(re.search(rf"^    {DIABETES}: (.*)$", out, flags=re.M).group(1))  # type: ignore[union-attr]
    assert (iris_answer["version"], diabetes_answer["version"]) == ("1", "1")
    assert iris_answer["predictions"][0] in (0, 1, 2) and isinstance(diabetes_answer["predictions"][0], float)
    catalog = json.loads((state / "catalog.json").read_text())
    assert {m: catalog["models"][m][contract.CATALOG_SERVING_URL_KEY] for m in MODELS} == {
        m: f"http://127.0.0.1:{_ports(out)[f'serving {m}']}" for m in MODELS
    }
    assert (state / "mlflow.db").is_file() and (state / "airflow" / "airflow.db").is_file()
    _nothing_left(out, state)

    # Again, one model, without --once: its next version is promoted, the printed curl commands work, Ctrl-C stops
    # all.
    make = subprocess.Popen(
        ["make", "--no-print-directory", "-C", str(REPO), "demo", f"ARGS={args} --model {IRIS}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
        start_new_session=True,
    )
    assert make.stdout is not None
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            line = make.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "press Ctrl-C to stop" in line:
                break
        second = "".join(lines)
        assert "press Ctrl-C to stop" in second, second[-6000:]
        assert f"RESULT {IRIS}: OK: version 2 promoted to champion and served by its own serving (before: 1)" in second
        assert "RESULT: OK: 1 of 1 models promoted and served" in second
        assert DIABETES not in second  # --model: the other model is neither served nor trained
        assert "improvement +0.0000 (higher is better), at least +0.0000 required" in second  # against the champion
        curls = [shlex.split(line.strip()) for line in lines if line.strip().startswith("curl ")]
        assert len(curls) == 3, second[-3000:]
        answers = [subprocess.run(c, capture_output=True, text=True, timeout=60).stdout for c in curls]
        predicted, reloaded, models = (json.loads(a) for a in answers)
        assert (predicted["alias"], predicted["version"]) == ("champion", "2")
        assert reloaded["outcome"] == "unchanged" and reloaded["version"] == "2"
        assert models["model"] == IRIS and [v["version"] for v in models["variants"]] == ["2"]
    finally:
        os.killpg(make.pid, signal.SIGINT)  # what Ctrl-C in a terminal does to the foreground group
        rest, _ = make.communicate(timeout=120)
    output = "".join(lines) + rest
    assert "interrupted: everything the demo started is stopped" in output, output[-3000:]
    _nothing_left(output, state)


def test_port_in_use_is_reported_and_nothing_starts(state: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out = _demo_once(state, "--serving-port", str(port), "--mlflow-port", "0", timeout=120)
    assert code == 1, out
    assert f"port 127.0.0.1:{port} is already in use" in out and "--serving-port N" in out
    assert "start MLflow" not in out  # checked before anything is started
    _nothing_left(out, state)


def test_a_failing_step_stops_everything(state: Path) -> None:
    code, out = _demo_once(
        state,
        "--mlflow-port",
        "0",
        "--serving-port",
        "0",
        "--model",
        IRIS,
        "--conf",
        json.dumps({"C": "strong"}),
        timeout=600,
    )
    assert code == 1, out[-4000:]
    assert f"demo failed: the DAG run of {IRIS} ended without a run" in out
    assert "Invalid input for param C" in out  # the log tail says why
    assert set(_ports(out)) == {"MLflow", f"serving {IRIS}"}  # both had started
    _nothing_left(out, state)


def test_bad_arguments_are_reported_before_anything_starts(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from devstack import demo

    assert demo.main(["--once", "--state-dir", str(state), "--model", "nope"]) == 1
    out = capsys.readouterr().out
    assert f"demo failed: --model nope: the catalog has no such model; its models: {DIABETES}, {IRIS}" in out
    assert demo.main(["--once", "--state-dir", str(state), "--conf", '{"C": 2}']) == 1
    assert "--conf sets the params of one model: add --model NAME" in capsys.readouterr().out
    assert not state.exists()  # failed before creating anything


def test_a_missing_dependency_is_reported(
    state: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from devstack import demo
    from devstack.procs import DevstackError

    def missing(name: str) -> str:
        raise DevstackError(f"executable {name!r} not found in .venv/bin or on PATH")

    monkeypatch.setattr(demo, "find_binary", missing)
    assert demo.main(["--once", "--state-dir", str(state)]) == 1
    out = capsys.readouterr().out
    assert "demo failed: executable 'mlflow' not found" in out and "make setup" in out
    assert not state.exists()  # failed before creating anything


def test_demo_on_postgresql_and_s3(state: Path, postgres_available: tuple[str, int]) -> None:
    """The environment variables switch the embedded defaults to PostgreSQL and an S3 endpoint (moto)."""
    from devstack.moto import moto_s3
    from devstack.postgres import fresh_database

    with fresh_database("demotest") as database_url, moto_s3(["demo-artifacts"]) as s3:
        env = _env(
            {
                contract.DEMO_BACKEND_STORE_URI.name: database_url,
                contract.DEMO_ARTIFACTS_DESTINATION.name: "s3://demo-artifacts/mlflow",
                **s3.client_env(),
            }
        )
        code, out = _demo_once(state, "--mlflow-port", "0", "--serving-port", "0", "--model", DIABETES, env=env)
        assert code == 0, out[-6000:]
        assert "MLflow backend postgresql+psycopg://" in out and "artifacts s3://demo-artifacts/mlflow" in out
        assert f"RESULT {DIABETES}: OK: version 1 promoted to champion and served" in out  # a pyfunc model from S3
        keys = [o["Key"] for o in s3.client().list_objects_v2(Bucket="demo-artifacts").get("Contents", [])]
        assert any(k.endswith("MLmodel") for k in keys), keys
        assert not (state / "mlflow.db").exists()
    _nothing_left(out, state)
