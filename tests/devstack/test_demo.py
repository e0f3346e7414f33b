"""`make demo`: the whole loop on this machine for every model of the catalog. Runs the real thing in a temporary
state directory, on free ports: MLflow, one serving process per model, real Airflow services and the platform API,
each model's training requested through `POST /v1/trainings` and followed over SSE to its promoted version. Checks
what it prints (per model: gate, promoted version, a prediction from its own serving; the API's URL, a token and
curl commands that work: one starts the next training, the other follows it to its final state), what it leaves
running after Ctrl-C (nothing). `--no-api` (`airflow dags test`) still runs the loop, with `--once`, `--model`, a
failing step stopping everything, and MLflow on PostgreSQL and S3."""

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
from typing import IO

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
    found = dict(
        re.findall(
            r"^ {4}(MLflow|Airflow|platform API|serving [^ ]+) http://127\.0\.0\.1:(\d+) \(pid", output, flags=re.M
        )
    )
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


def test_make_demo_trains_through_the_api_and_its_curl_commands_work_until_ctrl_c(state: Path) -> None:
    _make_has_demo_target()
    args = f"--mlflow-port 0 --serving-port 0 --api-port 0 --state-dir {state}"
    started = time.monotonic()
    make = subprocess.Popen(
        ["make", "--no-print-directory", "-C", str(REPO), "demo", f"ARGS={args}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
        start_new_session=True,
    )
    assert make.stdout is not None
    lines: list[str] = []
    try:
        _read_until_ready(make.stdout, lines)
        out = "".join(lines)
        print(f"make demo (fresh state, both models, through the API): {time.monotonic() - started:.1f} s to ready")
        assert "press Ctrl-C to stop" in out, out[-6000:]
        ports = _ports(out)
        assert set(ports) == {"MLflow", "Airflow", "platform API", f"serving {IRIS}", f"serving {DIABETES}"}
        api_url = f"http://127.0.0.1:{ports['platform API']}"
        _assert_both_models_trained_and_served(out, state, ports)
        _assert_printed_curl_commands_work(lines, out, api_url, ports)
    finally:
        os.killpg(make.pid, signal.SIGINT)  # what Ctrl-C in a terminal does to the foreground group
        rest, _ = make.communicate(timeout=180)
    output = "".join(lines) + rest
    assert "interrupted: everything the demo started is stopped" in output, output[-3000:]
    _nothing_left(output, state)


def _read_until_ready(stdout: IO[str], lines: list[str]) -> None:
    """Into `lines`: the demo's output up to its "press Ctrl-C" line (or its end, or 20 minutes)."""
    deadline = time.monotonic() + 1200
    while time.monotonic() < deadline:
        line = stdout.readline()
        if not line:
            break
        lines.append(line)
        if "press Ctrl-C to stop" in line:
            break


def _assert_both_models_trained_and_served(out: str, state: Path, ports: dict[str, int]) -> None:
    """Both models promoted and served, every step timed, a prediction from each serving, the catalog's URLs."""
    for model in MODELS:
        assert f"RESULT {model}: OK: version 1 promoted to champion and served by its own serving (before: none)" in out
        assert re.search(rf"^  MLflow UI +http://127\.0\.0\.1:\d+/#/models/{model}$", out, flags=re.M)
        assert f"promoted: version 1 is champion of {model}" in out
    assert "RESULT: OK: 2 of 2 models promoted and served" in out
    assert out.count("quality gate: passed: ") == 2
    # each training went through the API's states, followed over SSE
    assert out.count("training.queued") == 2 and out.count("training.success") == 2
    for step in (
        "check dependencies and ports",
        "start MLflow",
        "start the serving processes (one per model)",
        "start Airflow",
        "start the platform API",
        f"train {IRIS} through the API",
        f"train {DIABETES} through the API",
        "sample predictions",
    ):
        assert re.search(rf"^ +\d+\.\d s  {re.escape(step)}", out, flags=re.M), f"step {step!r} without duration"
    assert len(re.findall(r"^  champion +-> version 1$", out, flags=re.M)) == 2
    # a prediction from each model's own serving: a class for iris, a number for the regression
    iris_answer = json.loads(re.search(rf"^    {IRIS}: (.*)$", out, flags=re.M).group(1))  # type: ignore[union-attr]
    diabetes_answer = json.loads(re.search(rf"^    {DIABETES}: (.*)$", out, flags=re.M).group(1))  # type: ignore[union-attr]
    assert (iris_answer["version"], diabetes_answer["version"]) == ("1", "1")
    assert iris_answer["predictions"][0] in (0, 1, 2) and isinstance(diabetes_answer["predictions"][0], float)
    catalog = json.loads((state / "catalog.json").read_text())
    assert {m: catalog["models"][m][contract.CATALOG_SERVING_URL_KEY] for m in MODELS} == {
        m: f"http://127.0.0.1:{ports[f'serving {m}']}" for m in MODELS
    }


def _assert_printed_curl_commands_work(lines: list[str], out: str, api_url: str, ports: dict[str, int]) -> None:
    """The summary's API URL and token, and its curl commands: predict, start a training (idempotently), follow it."""
    # the summary: the API's URL, its token and the curl commands, ready to paste
    assert re.search(rf"^  URL +{re.escape(api_url)} ", out, flags=re.M)
    token = re.search(r"^  token \(train, read\) +(\S+)$", out, flags=re.M).group(1)  # type: ignore[union-attr]
    curls = [shlex.split(line.strip()) for line in lines if line.strip().startswith("curl ")]
    start = [c for c in curls if f"{api_url}/v1/trainings" in c and "POST" in c]
    follow = [c for c in curls if "-sSN" in c and any(a.startswith(f"{api_url}/v1/trainings/") for a in c)]
    assert len(start) == len(follow) == 2 and f"Authorization: Bearer {token}" in start[0], out[-3000:]
    assert any(a.startswith("Idempotency-Key: ") for a in start[0])
    # per model, in the summary's order: its start command, then the follow command of the training the demo ran
    iris_start, iris_follow = next((c, f) for c, f in zip(start, follow, strict=True) if IRIS in c[-1])
    # the serving's curl commands answer with the promoted version
    predict = next(
        c for c in curls if any(a.endswith("/predict") for a in c) and str(ports[f"serving {IRIS}"]) in " ".join(c)
    )
    predicted = json.loads(subprocess.run(predict, capture_output=True, text=True, timeout=60).stdout)
    assert (predicted["alias"], predicted["version"]) == ("champion", "1")
    # the printed curl starts the next training of iris; the same key again answers the same training
    created = json.loads(subprocess.run(iris_start, capture_output=True, text=True, timeout=60).stdout)
    again = json.loads(subprocess.run(iris_start, capture_output=True, text=True, timeout=60).stdout)
    assert created["model"] == IRIS and again["id"] == created["id"]
    # the printed follow command, for that training: its events until the final one
    follow_new = [
        a if not a.endswith("/events") else f"{api_url}/v1/trainings/{created['id']}/events" for a in iris_follow
    ]
    streamed = subprocess.run(follow_new, capture_output=True, text=True, timeout=900).stdout
    events = re.findall(r"^event: (\S+)$", streamed, flags=re.M)
    assert events[0] == "training.queued" and events[-1] == "training.success", streamed[-3000:]
    final = json.loads(re.findall(r"^data: (.*)$", streamed, flags=re.M)[-1])["run"]
    assert final["promoted"] is True and final["registered_version"] == "2" and "champion" in final["aliases"]


def test_port_in_use_is_reported_and_nothing_starts(state: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out = _demo_once(state, "--serving-port", str(port), "--mlflow-port", "0", "--api-port", "0", timeout=120)
    assert code == 1, out
    assert f"port 127.0.0.1:{port} is already in use" in out and "--serving-port N" in out
    assert "start MLflow" not in out  # checked before anything is started
    _nothing_left(out, state)


def test_without_the_api_a_failing_step_stops_everything(state: Path) -> None:
    code, out = _demo_once(
        state,
        "--no-api",
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


def test_without_the_api_on_postgresql_and_s3(state: Path, postgres_available: tuple[str, int]) -> None:
    """`--no-api --once`: the environment variables switch MLflow to PostgreSQL and an S3 endpoint (moto)."""
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
        code, out = _demo_once(
            state, "--no-api", "--mlflow-port", "0", "--serving-port", "0", "--model", DIABETES, env=env
        )
        assert code == 0, out[-6000:]
        assert "MLflow backend postgresql+psycopg://" in out and "artifacts s3://demo-artifacts/mlflow" in out
        assert f"RESULT {DIABETES}: OK: version 1 promoted to champion and served" in out  # a pyfunc model from S3
        keys = [o["Key"] for o in s3.client().list_objects_v2(Bucket="demo-artifacts").get("Contents", [])]
        assert any(k.endswith("MLmodel") for k in keys), keys
        assert not (state / "mlflow.db").exists()
        assert (state / "airflow" / "airflow.db").is_file()  # --no-api: `airflow dags test` on SQLite
        assert "platform API" not in out
    _nothing_left(out, state)
