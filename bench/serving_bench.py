"""`make bench`: our serving service against its peers, same model, same load, same machine, one run.

In one process tree it starts PostgreSQL-backed MLflow with moto's S3 as the proxied artifact store
(devstack), registers one iris pipeline (StandardScaler + LogisticRegression, the `champion` alias), and serves
it with:

- ours: `python -m services.serving` (the Dockerfile's command), 1 worker, every feature on (validation,
  routing, metrics, access logs to stdout and a log file); and the same at 2 workers;
- MLServer (`mlserver` + `mlserver-sklearn`, one process: `parallel_workers: 0`) on the same fitted pipeline,
  in a bench-only virtualenv under `.local/bench-mlserver` that this script creates from PyPI (with `uv` when
  available) with the project's scikit-learn and NumPy versions: its pins need not agree with the project's;
- MLflow's: `mlflow models serve -m models:/<name>@champion --env-manager local -w 1`;
- the bare-ASGI ceiling: `bench/asgi_ceiling.py` under uvicorn with the service's settings (reads the body,
  answers fixed bytes): what any Python HTTP server can do here with this load generator.

Load: `hey -c 16`, one load per target, in interleaved rounds (the order rotates every round) so that drift
in the machine's load hits every target alike: single-row requests (ours `/predict` and V2 infer, MLServer V2,
MLflow `/invocations`, the ceiling, ours at 2 workers) and 64-row requests (ours and MLServer V2, ours
`/predict`). A V2 body is the same 2-D FP64 tensor for ours and MLServer. Then, under the same load on ours, hot swaps
(the alias moved to a new version and the reload API called): every request must succeed. Medians over the
rounds; targets are ratios within this one run. Writes bench/results/serving.json with the numbers, the exact
commands, the machine and its load average before and after. `--profile` also samples our service with py-spy
(installed in the same bench-only virtualenv) under the single-row load and prints where the time goes.

Needs `hey` (`apt-get install -y hey`; installed automatically when running as root, and the script says so).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from devstack.mlflow_server import MlflowServer  # noqa: E402
from devstack.models import iris_rows, set_alias, train_and_register  # noqa: E402
from devstack.procs import LOOPBACK, env_with_venv, free_port, http_server, loopback_url  # noqa: E402
from devstack.serving import ServingProcess, serving_service  # noqa: E402
from devstack.stack import mlflow_stack  # noqa: E402
from services.common import contract  # noqa: E402

RESULTS = REPO / "bench" / "results" / "serving.json"
MODEL = "bench-iris"
CONNECTIONS = 16
BATCH = 64
MLSERVER_VENV = REPO / ".local" / "bench-mlserver"
MLSERVER_PINS = ("mlserver==1.7.1", "mlserver-sklearn==1.7.1", "py-spy==0.4.3")


def ensure_hey() -> str:
    found = shutil.which("hey")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("hey not found: installing it with apt-get (Debian package `hey`)", flush=True)
        subprocess.run(["apt-get", "install", "-y", "hey"], check=False, stdout=subprocess.DEVNULL)
        found = shutil.which("hey")
        if found:
            return found
    sys.exit("the benchmark needs the HTTP load generator `hey`: install it with `sudo apt-get install -y hey`")


def ensure_mlserver() -> Path:
    """The bench-only virtualenv with MLServer and py-spy (created or refreshed when its pins changed)."""
    import numpy
    import sklearn

    pins = [*MLSERVER_PINS, f"scikit-learn=={sklearn.__version__}", f"numpy=={numpy.__version__}"]
    marker = MLSERVER_VENV / ".bench-pins"
    if marker.is_file() and marker.read_text().split() == pins:
        return MLSERVER_VENV / "bin"
    print(f"creating the MLServer environment {MLSERVER_VENV} from PyPI: {' '.join(pins)}", flush=True)
    uv = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
    python = MLSERVER_VENV / "bin" / "python"
    if Path(uv).is_file():
        subprocess.run(
            [uv, "venv", "--quiet", "--allow-existing", str(MLSERVER_VENV), "--python", sys.executable], check=True
        )
        subprocess.run([uv, "pip", "install", "--quiet", "--python", str(python), *pins], check=True)
    else:
        subprocess.run([sys.executable, "-m", "venv", str(MLSERVER_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *pins], check=True)
    marker.write_text(" ".join(pins) + "\n")
    return MLSERVER_VENV / "bin"


# --- hey -------------------------------------------------------------------------------------------------------
def parse_hey(output: str) -> dict[str, Any]:
    """Requests/sec, percentiles, status codes and errors from hey's summary."""

    def number(pattern: str) -> float:
        match = re.search(pattern, output)
        if not match:
            raise RuntimeError(f"unexpected hey output (no {pattern!r}):\n{output[-3000:]}")
        return float(match.group(1))

    statuses = {int(code): int(count) for code, count in re.findall(r"\[(\d{3})\]\s+(\d+) responses", output)}
    errors = 0
    if "Error distribution:" in output:
        errors = sum(int(n) for n in re.findall(r"\[(\d+)\]\s+\S", output.split("Error distribution:", 1)[1]))
    percentiles = {int(p): float(s) * 1000 for p, s in re.findall(r"\s(\d+)%+ in ([\d.]+) secs", output)}
    return {
        "rps": number(r"Requests/sec:\s+([\d.]+)"),
        "total_s": number(r"Total:\s+([\d.]+) secs"),
        "p50_ms": percentiles.get(50),
        "p90_ms": percentiles.get(90),
        "p99_ms": percentiles.get(99),
        "slowest_ms": number(r"Slowest:\s+([\d.]+) secs") * 1000,
        "statuses": statuses,
        "requests": sum(statuses.values()),
        "errors": errors,
        "failures": errors + sum(n for code, n in statuses.items() if code != 200),
    }


def hey_command(hey: str, url: str, body_file: Path, seconds: float) -> list[str]:
    return [
        hey,
        "-z",
        f"{seconds:g}s",
        "-c",
        str(CONNECTIONS),
        "-m",
        "POST",
        "-T",
        "application/json",
        "-D",
        str(body_file),
        url,
    ]


def run_hey(command: list[str]) -> dict[str, Any]:
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return parse_hey(done.stdout)


# --- the peers -------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def mlflow_models_serve(
    server: MlflowServer, log_path: Path, start_timeout: float = 240
) -> Iterator[tuple[str, list[str]]]:
    port = free_port()
    argv = ["mlflow", "models", "serve", "-m", f"models:/{MODEL}@champion", "--env-manager", "local"]
    argv += ["-h", LOOPBACK, "-p", str(port), "-w", "1"]
    env = env_with_venv({contract.MLFLOW_TRACKING_URI.name: server.tracking_uri})  # bin/ on PATH: it execs uvicorn
    process = http_server(
        "mlflow-models-serve",
        argv,
        port=port,
        ready_path="/ping",
        env=env,
        log_path=log_path,
        start_timeout=start_timeout,
    )
    with process:
        yield loopback_url(port), argv


@contextlib.contextmanager
def mlserver(bin_dir: Path, tracking_uri: str, work: Path) -> Iterator[tuple[str, list[str]]]:
    """MLServer's sklearn runtime on the champion's fitted pipeline (joblib), one process, default features."""
    import joblib
    import mlflow.sklearn

    mlflow.set_tracking_uri(tracking_uri)
    folder = work / "mlserver"
    (folder / MODEL).mkdir(parents=True, exist_ok=True)
    joblib.dump(mlflow.sklearn.load_model(f"models:/{MODEL}@champion"), folder / MODEL / "model.joblib")
    (folder / MODEL / "model-settings.json").write_text(
        json.dumps(
            {
                "name": MODEL,
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib", "version": "1"},
            }
        )
    )
    port = free_port()
    settings = {"parallel_workers": 0, "host": LOOPBACK, "http_port": port, "grpc_port": free_port()}
    settings["metrics_port"] = free_port()
    (folder / "settings.json").write_text(json.dumps(settings))
    argv = [str(bin_dir / "mlserver"), "start", str(folder)]
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    process = http_server(
        "mlserver", argv, port=port, ready_path="/v2/health/ready", env=env, log_path=work / "mlserver.out"
    )
    with process:
        yield loopback_url(port), argv


@contextlib.contextmanager
def ceiling(work: Path) -> Iterator[tuple[str, list[str]]]:
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "bench.asgi_ceiling:app", "--host", LOOPBACK, "--port", str(port)]
    argv += ["--loop", "uvloop", "--http", "httptools", "--no-access-log", "--no-proxy-headers", "--workers", "1"]
    argv += ["--log-level", "warning"]  # the service's uvicorn settings (services/serving/__main__.py)
    process = http_server("asgi-ceiling", argv, port=port, ready_path="/", cwd=REPO, log_path=work / "ceiling.out")
    with process:
        yield loopback_url(port), argv


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_gib = round(int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024, 1)
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gib": mem_gib,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg(),
        "note": "shared machine: other workloads may have run at the same time; rounds are interleaved",
    }


# --- profile -----------------------------------------------------------------------------------------------------
def profile(bin_dir: Path, pid: int, command: list[str], seconds: float, out: Path) -> str:
    """py-spy's samples of `pid` (the thread holding the GIL) under `command`'s load: the top frames."""
    load = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        time.sleep(1)
        spy = [str(bin_dir / "py-spy"), "record", "-p", str(pid), "-d", f"{seconds:g}", "-r", "250", "--gil"]
        subprocess.run(
            [*spy, "-f", "raw", "-o", str(out)],
            check=True,
            capture_output=True,
        )
    finally:
        load.wait()
    own: collections.Counter[str] = collections.Counter()
    within: collections.Counter[str] = collections.Counter()
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [re.sub(r" \((?:.*site-packages/|.*?/main/)?(.*?):\d+\)$", r" (\1)", f) for f in stack.split(";")]
        total += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            within[frame] += int(count)
    lines = [f"py-spy, {total} samples of the GIL-holding thread", "self:"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(25)]
    lines += ["inclusive:"] + [f"  {100 * n / total:5.1f}%  {f}" for f, n in within.most_common(45)]
    return "\n".join(lines)


# --- the run -----------------------------------------------------------------------------------------------------
def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per target")
    parser.add_argument("--seconds", type=float, default=12, help="duration of each hey run")
    parser.add_argument("--swaps", type=int, default=20)
    parser.add_argument("--swap-interval", type=float, default=1.0, help="seconds between the starts of two swaps")
    parser.add_argument("--swap-pairs", type=int, default=4, help="steady/swap run pairs the swaps are spread over")
    parser.add_argument("--profile", action="store_true", help="also sample our service with py-spy")
    parser.add_argument("--output", type=Path, default=RESULTS)
    return parser.parse_args()


def _request_bodies(rows: list[dict[str, float]]) -> dict[str, dict[str, Any]]:
    names = list(rows[0])
    return {
        "one": {"rows": rows[:1]},
        "batch": {"rows": rows},
        "v2_one": {
            "inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [[rows[0][n] for n in names]]}]
        },
        "v2_batch": {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [BATCH, 4],
                    "datatype": "FP64",
                    "data": [[r[n] for n in names] for r in rows],
                }
            ]
        },
        "mlflow_one": {"dataframe_records": rows[:1]},
    }


def _rounds(args: argparse.Namespace, targets: dict[str, list[str]]) -> dict[str, list[dict[str, Any]]]:
    """A warm-up run of every target, then `args.rounds` interleaved rounds (the order rotates every round)."""
    for command in targets.values():  # warm-up, not measured
        result = run_hey([*command[:2], "3s", *command[3:]])
        if result["failures"]:
            raise RuntimeError(f"warm-up failed: {' '.join(command)}: {result['statuses']}")
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
    names_order = list(targets)
    for i in range(args.rounds):
        order = names_order[i % len(names_order) :] + names_order[: i % len(names_order)]
        for name in order:
            result = run_hey(targets[name])
            result["load_average"] = os.getloadavg()[0]
            rounds[name].append(result)
            print(
                f"round {i + 1} {name:17s}: {result['rps']:9.1f} req/s  p99 {result['p99_ms']:7.1f} ms  "
                f"failures {result['failures']}",
                flush=True,
            )
    return rounds


def _headline(med: dict[str, dict[str, float]], swap: dict[str, Any]) -> dict[str, Any]:
    """The medians, the ratios and whether each target is met."""
    ours_rps, ours_p99 = med["ours"]["rps"], med["ours"]["p99_ms"]
    mls_rps, mls_p99 = med["mlserver"]["rps"], med["mlserver"]["p99_ms"]
    ours_rows = med["ours_batch64"]["rps"] * BATCH
    mls_rows = med["mlserver_batch64"]["rps"] * BATCH
    return {
        "ours_rps": round(ours_rps, 1),
        "mlflow_rps": round(med["mlflow"]["rps"], 1),
        "ours_p99_ms": round(ours_p99, 2),
        "mlflow_p99_ms": round(med["mlflow"]["p99_ms"], 2),
        "throughput_ratio": round(ours_rps / med["mlflow"]["rps"], 2),
        "p99_ratio": round(ours_p99 / med["mlflow"]["p99_ms"], 4),
        "ceiling_rps": round(med["ceiling"]["rps"], 1),
        "ceiling_p99_ms": round(med["ceiling"]["p99_ms"], 2),
        "mlserver_rps": round(mls_rps, 1),
        "mlserver_p99_ms": round(mls_p99, 2),
        "v2_rps": round(med["ours_v2"]["rps"], 1),
        "v2_p99_ms": round(med["ours_v2"]["p99_ms"], 2),
        "ours_batch64_rows_per_s": round(ours_rows, 1),
        "mlserver_batch64_rows_per_s": round(mls_rows, 1),
        "ours_predict_batch64_rows_per_s": round(med["ours_predict_batch64"]["rps"] * BATCH, 1),
        "ours_2workers_rps": round(med["ours_2workers"]["rps"], 1),
        "ratios": {
            "ours_over_ceiling": round(ours_rps / med["ceiling"]["rps"], 3),
            "ours_over_mlserver": round(ours_rps / mls_rps, 2),
            "batch64_rows_ours_over_mlserver": round(ours_rows / mls_rows, 2),
            "predict_batch64_rows_ours_over_mlserver": round(med["ours_predict_batch64"]["rps"] * BATCH / mls_rows, 2),
            "p99_ours_over_mlserver": round(ours_p99 / mls_p99, 3),
            "v2_over_predict": round(med["ours_v2"]["rps"] / ours_rps, 3),
            "two_workers_over_one": round(med["ours_2workers"]["rps"] / ours_rps, 2),
        },
        **{k: v for k, v in swap.items() if k not in ("runs", "command")},
        "targets": {
            "throughput_at_least_5x": ours_rps >= 5 * med["mlflow"]["rps"],
            "p99_at_most_one_fifth": ours_p99 <= med["mlflow"]["p99_ms"] / 5,
            "at_least_30pct_of_ceiling": ours_rps >= 0.30 * med["ceiling"]["rps"],
            "at_least_5x_mlserver_single_row": ours_rps >= 5 * mls_rps,
            "at_least_5x_mlserver_rows_in_64_row_requests": ours_rows >= 5 * mls_rows,
            "p99_at_most_one_third_of_mlserver": ours_p99 <= mls_p99 / 3,
            "v2_within_20pct_of_predict": med["ours_v2"]["rps"] >= 0.8 * ours_rps,
            "zero_swap_failures": swap["swap_failures"] == 0,
            "swap_p99_at_most_2x_steady": swap["swap_p99_ms"] <= 2 * swap["steady_p99_ms"],
        },
    }


def _method(args: argparse.Namespace, swap_versions: list[Any]) -> dict[str, Any]:
    return {
        "connections": CONNECTIONS,
        "rounds_per_target": args.rounds,
        "seconds_per_round": args.seconds,
        "aggregate": "median over the interleaved rounds (the order of the targets rotates every round)",
        "request": f"one row per request; batch64: {BATCH} rows per request (rows/s = req/s x {BATCH}), "
        "the same V2 body (one 2-D FP64 tensor) for ours and MLServer; ours_predict_batch64: the same rows "
        "as /predict's JSON objects (4.4x the bytes)",
        "workers": "1 uvicorn worker (MLServer: parallel_workers 0, one process) each; ours also at 2",
        "features": "ours with validation, routing, Prometheus metrics and JSON access logs (stdout + file) on",
        "model": f"{MODEL}: iris StandardScaler+LogisticRegression, registered in MLflow (PostgreSQL + moto S3); "
        "MLServer serves the same fitted pipeline (joblib)",
        "swap": f"{args.swaps} alias moves, each to a version not loaded before (versions "
        f"{swap_versions[0].version}..{swap_versions[-1].version}), each followed by "
        f"POST {contract.reload_path('champion')}, one every {args.swap_interval} s under load",
        "steady_reference": "pairs of runs with the same hey command: steady (no swap) then with swaps; "
        "steady_p99_ms and swap_p99_ms are the means over the runs of each kind",
    }


def _commands(
    servers: dict[str, list[str]],
    targets: dict[str, list[str]],
    swap: dict[str, Any],
    bodies: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    return {
        "ours_server": "python -m services.serving  (env: "
        f"{contract.SERVING_WORKERS.name}=1 and =2, {contract.MODEL_NAME.name}={MODEL}, "
        f"{contract.MLFLOW_TRACKING_URI.name}=<mlflow>, {contract.SERVING_LOG_DIR.name}=<dir>)",
        "mlflow_server": " ".join(servers["mlflow"]),
        "mlserver_server": " ".join(servers["mlserver"]) + "  (settings.json: parallel_workers 0)",
        "ceiling_server": " ".join(servers["ceiling"]),
        **{f"{name}_load": " ".join(command) for name, command in targets.items()},
        "swap_load": swap["command"],
        **{f"body_{key}": json.dumps(body)[:300] for key, body in bodies.items()},
        "benchmark": "python bench/serving_bench.py " + " ".join(sys.argv[1:]),
    }


# --- the run -----------------------------------------------------------------------------------------------------
def main() -> int:
    args = _parse_args()

    hey = ensure_hey()
    mlserver_bin = ensure_mlserver()
    machine_info = machine()
    work = Path(tempfile.mkdtemp(prefix="serving-bench-"))
    rows = iris_rows(BATCH)
    bodies = _request_bodies(rows)
    files = {}
    for key, body in bodies.items():
        files[key] = work / f"{key}.json"
        files[key].write_text(json.dumps(body))
    print(f"work directory (logs): {work}", flush=True)

    with mlflow_stack(log_dir=work, db_prefix="bench") as stack:
        v1 = train_and_register(stack.tracking_uri, MODEL, alias="champion", C=1.0)
        # one new version per swap: every swap really downloads and loads a version it never saw
        swap_versions = [train_and_register(stack.tracking_uri, MODEL, C=1.0 / (2 + i)) for i in range(args.swaps)]
        set_alias(stack.tracking_uri, MODEL, "champion", v1.version)
        common: dict[str, Any] = {"log_dir": work / "serving-logs", "poll_seconds": 3600}
        with (
            serving_service(stack.tracking_uri, MODEL, workers=1, log_path=work / "serving.out", **common) as ours,
            serving_service(stack.tracking_uri, MODEL, workers=2, log_path=work / "serving-2w.out", **common) as ours2,
            mlflow_models_serve(stack.server, work / "mlflow-serve.out") as (theirs_base, theirs_argv),
            mlserver(mlserver_bin, stack.tracking_uri, work) as (mls_base, mls_argv),
            ceiling(work) as (ceiling_base, ceiling_argv),
        ):
            v2_path = f"/v2/models/{MODEL}/infer"
            targets = {
                "ceiling": hey_command(hey, f"{ceiling_base}/", files["one"], args.seconds),
                "ours": hey_command(hey, f"{ours.base_url}/predict", files["one"], args.seconds),
                "ours_v2": hey_command(hey, f"{ours.base_url}{v2_path}", files["v2_one"], args.seconds),
                "mlserver": hey_command(hey, f"{mls_base}{v2_path}", files["v2_one"], args.seconds),
                "ours_batch64": hey_command(hey, f"{ours.base_url}{v2_path}", files["v2_batch"], args.seconds),
                "mlserver_batch64": hey_command(hey, f"{mls_base}{v2_path}", files["v2_batch"], args.seconds),
                "ours_predict_batch64": hey_command(hey, f"{ours.base_url}/predict", files["batch"], args.seconds),
                "ours_2workers": hey_command(hey, f"{ours2.base_url}/predict", files["one"], args.seconds),
                "mlflow": hey_command(hey, f"{theirs_base}/invocations", files["mlflow_one"], args.seconds),
            }
            rounds = _rounds(args, targets)
            profile_text = None
            if args.profile:
                profile_text = profile(
                    mlserver_bin, ours.process.pid, targets["ours"], args.seconds, work / "profile.txt"
                )
                print(profile_text, flush=True)
            swap = hot_swaps(args, hey, ours, files["one"], stack.tracking_uri, swap_versions)

    med = {name: {k: statistics.median(r[k] for r in runs) for k in ("rps", "p99_ms")} for name, runs in rounds.items()}
    servers = {"mlflow": theirs_argv, "mlserver": mls_argv, "ceiling": ceiling_argv}
    result = {
        **_headline(med, swap),
        "method": _method(args, swap_versions),
        "commands": _commands(servers, targets, swap, bodies),
        "rounds": rounds,
        "steady_runs": swap["runs"]["steady"],
        "swap_runs": swap["runs"]["swap"],
        "swap_calls": swap["runs"]["calls"],
        "machine": {**machine_info, "load_average_at_end": os.getloadavg()},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if profile_text is not None:
        (work / "profile-summary.txt").write_text(profile_text + "\n")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    summary = [k for k in result if k.endswith(("_rps", "_p99_ms", "_per_s")) and not k.startswith("steady")]
    print(json.dumps({k: result[k] for k in [*summary, "swap_failures", "ratios", "targets"]}, indent=2))
    print(f"written to {args.output}")
    if all(result["targets"].values()):
        shutil.rmtree(work, ignore_errors=True)
        return 0
    print(f"a target was missed; logs kept in {work}")
    return 1


def hot_swaps(
    args: argparse.Namespace,
    hey: str,
    ours: ServingProcess,
    body: Path,
    tracking_uri: str,
    versions: list[Any],
) -> dict[str, Any]:
    """Pairs of runs: a steady run (no swap), then the same load with swaps, so that the machine's drift hits
    both; p99s are averaged over the runs of each kind."""
    import httpx

    per_pair = [
        args.swaps // args.swap_pairs + (1 if i < args.swaps % args.swap_pairs else 0) for i in range(args.swap_pairs)
    ]
    swap_seconds = 2 + max(per_pair) * args.swap_interval + 3
    command = hey_command(hey, f"{ours.base_url}/predict", body, swap_seconds)
    reload_url = f"{ours.base_url}{contract.reload_path('champion')}"
    steady_runs: list[dict[str, Any]] = []
    swap_runs: list[dict[str, Any]] = []
    swaps: list[dict[str, Any]] = []
    pending = iter(versions)
    with httpx.Client(timeout=120) as admin:
        for pair, count in enumerate(per_pair, start=1):
            steady_runs.append(run_hey(command))
            steady = steady_runs[-1]
            print(f"pair {pair} steady      : {steady['rps']:8.1f} req/s  p99 {steady['p99_ms']:7.1f} ms", flush=True)
            load = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            out: dict[str, str] = {}
            reader = threading.Thread(target=lambda p=load, o=out: o.update(stdout=p.communicate()[0]), daemon=True)
            reader.start()
            started = time.monotonic()
            for i in range(count):
                delay = started + 2 + i * args.swap_interval - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                target = next(pending)
                set_alias(tracking_uri, MODEL, "champion", target.version)
                t0 = time.perf_counter()
                response = admin.post(reload_url, headers={"Authorization": f"Bearer {ours.reload_token}"})
                answer = response.json()
                swaps.append(
                    {
                        "to_version": target.version,
                        "status": response.status_code,
                        "outcome": answer.get("outcome"),
                        "served_version": answer.get("version"),
                        "seconds": round(time.perf_counter() - t0, 3),
                    }
                )
            swaps_done_at = time.monotonic() - started
            reader.join(timeout=swap_seconds + 60)
            if swaps_done_at > swap_seconds:
                raise RuntimeError("the swaps outlasted the load run; raise --swap-interval")
            swap_runs.append(parse_hey(out.get("stdout", "")))
            print(
                f"pair {pair} {count:2d} swaps   : {swap_runs[-1]['rps']:8.1f} req/s  "
                f"p99 {swap_runs[-1]['p99_ms']:7.1f} ms  failures {swap_runs[-1]['failures']}",
                flush=True,
            )
        final_version = admin.post(f"{ours.base_url}/predict", json={"rows": iris_rows(1)}).json()["version"]
    failed_swaps = [
        s for s in swaps if s["status"] != 200 or s["outcome"] != "reloaded" or s["served_version"] != s["to_version"]
    ]
    steady_p99 = statistics.mean(r["p99_ms"] for r in steady_runs)
    swap_p99 = statistics.mean(r["p99_ms"] for r in swap_runs)
    return {
        "steady_p99_ms": round(steady_p99, 2),
        "steady_rps": round(statistics.mean(r["rps"] for r in steady_runs), 1),
        "swaps": len(swaps),
        "swap_requests": sum(r["requests"] for r in swap_runs),
        "swap_failures": sum(r["failures"] for r in swap_runs) + len(failed_swaps),
        "swap_p99_ms": round(swap_p99, 2),
        "swap_rps": round(statistics.mean(r["rps"] for r in swap_runs), 1),
        "swap_p99_over_steady": round(swap_p99 / steady_p99, 2),
        "final_version_served": final_version,
        "command": " ".join(command),
        "runs": {"steady": steady_runs, "swap": swap_runs, "calls": swaps},
    }


if __name__ == "__main__":
    sys.exit(main())
