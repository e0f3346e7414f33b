"""`make bench`: our serving service against `mlflow models serve`, same model, same load, same machine.

In one process tree it starts PostgreSQL-backed MLflow with moto's S3 as the proxied artifact store
(devstack), registers one iris LogisticRegression (the `champion` alias), and serves it twice:

- ours: `python -m services.serving` (the Dockerfile's command), 1 worker;
- MLflow's: `mlflow models serve -m models:/<name>@champion --env-manager local -w 1`.

Load: `hey -c 16` with single-row JSON requests, in interleaved rounds (ours, theirs, theirs, ours, ...)
so that drift in the machine's load hits both. Then, under the same load on ours, 20 hot swaps (the alias
moved between two versions and the reload API called): every request must succeed and p99 during swaps
is compared with steady p99. Writes bench/results/serving.json with the numbers, the exact commands and
the machine. Needs `hey` (`apt-get install -y hey`; installed automatically when running as root).
"""

from __future__ import annotations

import argparse
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
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from devstack.mlflow_server import MlflowServer  # noqa: E402
from devstack.models import iris_rows, set_alias, train_and_register  # noqa: E402
from devstack.procs import LOOPBACK, env_with_venv, free_port, http_server, loopback_url  # noqa: E402
from devstack.serving import serving_service  # noqa: E402
from devstack.stack import mlflow_stack  # noqa: E402
from services.common import contract  # noqa: E402

RESULTS = REPO / "bench" / "results" / "serving.json"
MODEL = "bench-iris"
CONNECTIONS = 16


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


@contextlib.contextmanager
def mlflow_models_serve(server: MlflowServer, log_path: Path, start_timeout: float = 240):  # type: ignore[no-untyped-def]
    port = free_port()
    argv = [
        "mlflow",
        "models",
        "serve",
        "-m",
        f"models:/{MODEL}@champion",
        "--env-manager",
        "local",
        "-h",
        LOOPBACK,
        "-p",
        str(port),
        "-w",
        "1",
    ]
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per server")
    parser.add_argument("--seconds", type=float, default=15, help="duration of each hey run")
    parser.add_argument("--swaps", type=int, default=20)
    parser.add_argument("--swap-interval", type=float, default=1.0, help="seconds between the starts of two swaps")
    parser.add_argument("--swap-pairs", type=int, default=4, help="steady/swap run pairs the swaps are spread over")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    hey = ensure_hey()
    machine_info = machine()
    work = Path(tempfile.mkdtemp(prefix="serving-bench-"))
    row = iris_rows(1)[0]
    ours_body = work / "ours.json"
    ours_body.write_text(json.dumps({"rows": [row]}))
    theirs_body = work / "mlflow.json"
    theirs_body.write_text(json.dumps({"dataframe_records": [row]}))
    print(f"work directory (logs): {work}", flush=True)

    with mlflow_stack(log_dir=work, db_prefix="bench") as stack:
        v1 = train_and_register(stack.tracking_uri, MODEL, alias="champion", C=1.0)
        # one new version per swap: every swap really downloads and loads a version it never saw
        swap_versions = [train_and_register(stack.tracking_uri, MODEL, C=1.0 / (2 + i)) for i in range(args.swaps)]
        set_alias(stack.tracking_uri, MODEL, "champion", v1.version)
        with (
            serving_service(
                stack.tracking_uri,
                MODEL,
                workers=1,
                log_dir=work / "serving-logs",
                log_path=work / "serving.out",
                poll_seconds=3600,
            ) as ours,
            mlflow_models_serve(stack.server, work / "mlflow-serve.out") as (theirs_base, theirs_argv),
        ):
            targets = {
                "ours": hey_command(hey, f"{ours.base_url}/predict", ours_body, args.seconds),
                "mlflow": hey_command(hey, f"{theirs_base}/invocations", theirs_body, args.seconds),
            }
            for name in ("ours", "mlflow"):  # warm-up, not measured
                run_hey(hey_command(hey, targets[name][-1], ours_body if name == "ours" else theirs_body, 3))
            rounds: dict[str, list[dict[str, Any]]] = {"ours": [], "mlflow": []}
            for i in range(args.rounds):
                order = ("ours", "mlflow") if i % 2 == 0 else ("mlflow", "ours")
                for name in order:
                    result = run_hey(targets[name])
                    rounds[name].append(result)
                    print(
                        f"round {i + 1} {name:6s}: {result['rps']:8.1f} req/s  p99 {result['p99_ms']:7.1f} ms  "
                        f"failures {result['failures']}",
                        flush=True,
                    )

            # --- hot swaps under load ------------------------------------------------------------
            # Pairs of runs: a steady run (no swap), then the same load with swaps, so that the
            # machine's drift hits both; p99s are averaged over the runs of each kind.
            per_pair = [
                args.swaps // args.swap_pairs + (1 if i < args.swaps % args.swap_pairs else 0)
                for i in range(args.swap_pairs)
            ]
            swap_seconds = 2 + max(per_pair) * args.swap_interval + 3
            swap_cmd = hey_command(hey, f"{ours.base_url}/predict", ours_body, swap_seconds)
            reload_url = f"{ours.base_url}{contract.reload_path('champion')}"
            steady_runs: list[dict[str, Any]] = []
            swap_runs: list[dict[str, Any]] = []
            swaps: list[dict[str, Any]] = []
            pending = iter(swap_versions)
            import httpx

            with httpx.Client(timeout=120) as admin:
                for pair, count in enumerate(per_pair, start=1):
                    steady_runs.append(run_hey(swap_cmd))
                    print(
                        f"pair {pair} steady      : {steady_runs[-1]['rps']:8.1f} req/s  "
                        f"p99 {steady_runs[-1]['p99_ms']:7.1f} ms",
                        flush=True,
                    )
                    load = subprocess.Popen(swap_cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                    out: dict[str, str] = {}
                    reader = threading.Thread(
                        target=lambda p=load, o=out: o.update(stdout=p.communicate()[0]), daemon=True
                    )
                    reader.start()
                    started = time.monotonic()
                    for i in range(count):
                        delay = started + 2 + i * args.swap_interval - time.monotonic()
                        if delay > 0:
                            time.sleep(delay)
                        target = next(pending)
                        set_alias(stack.tracking_uri, MODEL, "champion", target.version)
                        t0 = time.perf_counter()
                        response = admin.post(reload_url, headers={"Authorization": f"Bearer {ours.reload_token}"})
                        body = response.json()
                        swaps.append(
                            {
                                "to_version": target.version,
                                "status": response.status_code,
                                "outcome": body.get("outcome"),
                                "served_version": body.get("version"),
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
                final_version = admin.post(f"{ours.base_url}/predict", json={"rows": [row]}).json()["version"]

    ours_rps = statistics.median(r["rps"] for r in rounds["ours"])
    mlflow_rps = statistics.median(r["rps"] for r in rounds["mlflow"])
    ours_p99 = statistics.median(r["p99_ms"] for r in rounds["ours"])
    mlflow_p99 = statistics.median(r["p99_ms"] for r in rounds["mlflow"])
    failed_swaps = [
        s for s in swaps if s["status"] != 200 or s["outcome"] != "reloaded" or s["served_version"] != s["to_version"]
    ]
    swap_failures = sum(r["failures"] for r in swap_runs) + len(failed_swaps)
    steady_p99 = statistics.mean(r["p99_ms"] for r in steady_runs)
    swap_p99 = statistics.mean(r["p99_ms"] for r in swap_runs)
    result = {
        "ours_rps": round(ours_rps, 1),
        "mlflow_rps": round(mlflow_rps, 1),
        "ours_p99_ms": round(ours_p99, 2),
        "mlflow_p99_ms": round(mlflow_p99, 2),
        "throughput_ratio": round(ours_rps / mlflow_rps, 2),
        "p99_ratio": round(ours_p99 / mlflow_p99, 4),
        "steady_p99_ms": round(steady_p99, 2),
        "steady_rps": round(statistics.mean(r["rps"] for r in steady_runs), 1),
        "swaps": len(swaps),
        "swap_requests": sum(r["requests"] for r in swap_runs),
        "swap_failures": swap_failures,
        "swap_p99_ms": round(swap_p99, 2),
        "swap_rps": round(statistics.mean(r["rps"] for r in swap_runs), 1),
        "swap_p99_over_steady": round(swap_p99 / steady_p99, 2),
        "final_version_served": final_version,
        "targets": {
            "throughput_at_least_5x": ours_rps >= 5 * mlflow_rps,
            "p99_at_most_one_fifth": ours_p99 <= mlflow_p99 / 5,
            "zero_swap_failures": swap_failures == 0,
            "swap_p99_at_most_2x_steady": swap_p99 <= 2 * steady_p99,
        },
        "method": {
            "connections": CONNECTIONS,
            "rounds_per_server": args.rounds,
            "seconds_per_round": args.seconds,
            "aggregate": "median over the interleaved rounds",
            "request": "one row per request",
            "workers": "1 uvicorn worker each",
            "model": f"{MODEL}: iris StandardScaler+LogisticRegression, registered in MLflow (PostgreSQL + moto S3)",
            "swap": f"{args.swaps} alias moves, each to a version not loaded before (versions "
            f"{swap_versions[0].version}..{swap_versions[-1].version}), each followed by "
            f"POST {contract.reload_path('champion')}, one every {args.swap_interval} s under load",
            "steady_reference": "pairs of runs with the same hey command: steady (no swap) then with swaps; "
            "steady_p99_ms and swap_p99_ms are the means over the runs of each kind",
        },
        "commands": {
            "ours_server": " ".join(["python", "-m", "services.serving"])
            + f"  (env: {contract.SERVING_WORKERS.name}=1, "
            f"{contract.MODEL_NAME.name}={MODEL}, {contract.MLFLOW_TRACKING_URI.name}=<mlflow>)",
            "mlflow_server": " ".join(theirs_argv),
            "ours_load": " ".join(targets["ours"]),
            "mlflow_load": " ".join(targets["mlflow"]),
            "swap_load": " ".join(swap_cmd),
            "ours_body": ours_body.read_text(),
            "mlflow_body": theirs_body.read_text(),
            "benchmark": "python bench/serving_bench.py " + " ".join(sys.argv[1:]),
        },
        "rounds": rounds,
        "steady_runs": steady_runs,
        "swap_runs": swap_runs,
        "swap_calls": swaps,
        "machine": machine_info,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(
        json.dumps(
            {
                k: result[k]
                for k in (
                    "ours_rps",
                    "mlflow_rps",
                    "ours_p99_ms",
                    "mlflow_p99_ms",
                    "swap_requests",
                    "swap_failures",
                    "swap_p99_ms",
                    "steady_p99_ms",
                    "targets",
                )
            },
            indent=2,
        )
    )
    print(f"written to {args.output}")
    if all(result["targets"].values()):
        shutil.rmtree(work, ignore_errors=True)
        return 0
    print(f"a target was missed; logs kept in {work}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
