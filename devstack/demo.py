"""`make demo`: the whole ML loop on this machine, no cluster.

    .venv/bin/python -m devstack.demo [--once] [--mlflow-port 5000] [--serving-port 8000] [--conf JSON]

1. checks the dependencies and that the ports are free (nothing is started otherwise);
2. starts on 127.0.0.1 an MLflow server (SQLite + an artifact folder under .local/demo by default;
   $MLOPS_DEMO_BACKEND_STORE_URI / $MLOPS_DEMO_ARTIFACTS_DESTINATION for PostgreSQL / S3) and the
   serving service, configured through the endpoints contract's variables, as in the cluster;
3. runs `airflow dags test train_register_promote` once (AIRFLOW_HOME and its SQLite DB under .local/demo):
   train, gate, register, promote, reload serving, verify;
4. sends sample predictions and prints the versions under each alias, the URLs and curl commands;
5. keeps everything running until Ctrl-C (or, with --once, exits: 0 only if serving answered with the
   version this run promoted) and stops every process it started.

The state (MLflow DB and artifacts, Airflow DB) persists under .local/demo, so the next run registers
the next version. A taken port, a missing dependency or a failed step ends the demo with a clear message
and nothing left running.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import secrets
import signal
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from devstack import DAGS_FOLDER, REPO
from devstack.dag_runs import METADATA_DB, airflow_env, dags_test_argv, new_dag_run, run_ids
from devstack.procs import DevstackError, ManagedProcess, ensure_port_free, find_binary, free_port
from services.common import contract
from services.common.serving_rules import DEFAULT_ALIASES

DEFAULT_STATE = REPO / ".local" / "demo"
DAG_ID = "train_register_promote"
DEFAULT_MODEL = "iris-classifier"
ALIAS = DEFAULT_ALIASES[0]


class DemoError(RuntimeError):
    """A step failed; the message says what to do."""


# --- output ----------------------------------------------------------------------------------------


def say(message: str = "") -> None:
    print(message, flush=True)


@contextlib.contextmanager
def step(title: str, timings: list[tuple[str, float]]) -> Iterator[None]:
    say(f"==> {title}")
    started = time.monotonic()
    try:
        yield
    except BaseException:
        say(f"    FAILED after {time.monotonic() - started:.1f} s: {title}")
        raise
    seconds = time.monotonic() - started
    timings.append((title, seconds))
    say(f"    done in {seconds:.1f} s")


# --- preflight --------------------------------------------------------------------------------------


def check_dependencies() -> dict[str, str]:
    """Executables and modules the demo needs; a clear error naming what is missing."""
    binaries = {}
    for name in ("mlflow", "airflow"):
        try:
            binaries[name] = find_binary(name)
        except DevstackError as exc:
            raise DemoError(f"{exc}. Build the environment first: make setup") from exc
    missing = [m for m in ("sklearn", "fastapi", "uvicorn", "httpx", "services.serving") if not _has_module(m)]
    if missing:
        raise DemoError(f"missing Python modules: {', '.join(missing)}. Build the environment first: make setup")
    if not (DAGS_FOLDER / f"{DAG_ID}.py").is_file():
        raise DemoError(f"DAG file dags/{DAG_ID}.py not found under {REPO}")
    return binaries


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def check_ports(ports: dict[str, int]) -> None:
    for what, port in ports.items():
        try:
            ensure_port_free(port, what=what)
        except DevstackError as exc:
            option = "--mlflow-port" if "MLflow" in what else "--serving-port"
            raise DemoError(f"{exc}. Stop what uses it or choose another port: make demo ARGS='{option} N'") from exc


# --- the demo ----------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--once", action="store_true", help="run the loop once and exit (0 = new version served)")
    parser.add_argument("--mlflow-port", type=int, default=5000, help="MLflow port (0 = any free port)")
    parser.add_argument("--serving-port", type=int, default=8000, help="serving port (0 = any free port)")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE, help="where the demo keeps its state")
    parser.add_argument(
        "--model-name", default=None, help=f"registered model (default ${contract.MODEL_NAME.name} or {DEFAULT_MODEL})"
    )
    parser.add_argument("--conf", default="{}", help='DAG params as JSON, e.g. \'{"C": 10, "min_accuracy": 0.95}\'')
    parser.add_argument("--dag-timeout", type=float, default=900.0, help="seconds the DAG run may take")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    started = time.monotonic()
    try:
        return run(args)
    except DemoError as exc:
        say(f"\ndemo failed: {exc}")
        return 1
    except DevstackError as exc:
        say(f"\ndemo failed: {exc}")
        return 1
    except KeyboardInterrupt:
        say("\ninterrupted: everything the demo started is stopped")
        return 130
    except Exception as exc:  # anything else: still a clear last line, and everything was stopped
        traceback.print_exc()
        say(
            f"\ndemo failed: unexpected {type(exc).__name__}: {exc} (traceback above); everything it started is stopped"
        )
        return 1
    finally:
        say(f"total {time.monotonic() - started:.1f} s")


def run(args: argparse.Namespace) -> int:
    try:
        conf = json.loads(args.conf)
    except json.JSONDecodeError as exc:
        raise DemoError(f"--conf is not valid JSON: {exc}") from exc
    if not isinstance(conf, dict):
        raise DemoError("--conf must be a JSON object of DAG params")
    state: Path = args.state_dir.resolve()
    logs = state / "logs"
    airflow_home = state / "airflow"
    model = args.model_name or contract.MODEL_NAME.get(DEFAULT_MODEL) or DEFAULT_MODEL
    timings: list[tuple[str, float]] = []

    with step("check dependencies and ports", timings):
        binaries = check_dependencies()
        mlflow_port = args.mlflow_port or free_port()
        serving_port = args.serving_port or free_port()
        while not args.serving_port and serving_port == mlflow_port:
            serving_port = free_port()
        if mlflow_port == serving_port:
            raise DemoError("--mlflow-port and --serving-port must differ")
        check_ports({"the MLflow server": mlflow_port, "the serving service": serving_port})
        state.mkdir(parents=True, exist_ok=True)
        backend = contract.DEMO_BACKEND_STORE_URI.get() or f"sqlite:///{state / 'mlflow.db'}"
        artifacts = contract.DEMO_ARTIFACTS_DESTINATION.get() or str(state / "mlflow-artifacts")
        say(f"    model {model}; MLflow backend {_redact(backend)}; artifacts {artifacts}; state in {state}")

    from devstack.mlflow_server import mlflow_server
    from devstack.serving import serving_service

    with contextlib.ExitStack() as stack:
        with step("start MLflow and prepare the Airflow DB (in parallel)", timings):
            migrate = _start_migrate(binaries["airflow"], airflow_home, logs / "airflow-db-migrate.log")
            if migrate is not None:
                stack.callback(migrate.stop)
            server = stack.enter_context(
                mlflow_server(backend, artifacts, port=mlflow_port, log_path=logs / "mlflow.log", start_timeout=240)
            )
            if migrate is not None:
                code = migrate.wait(timeout=300)
                if code != 0:
                    raise DemoError(f"airflow db migrate failed ({code}):\n{migrate.log_tail(4000)}")
                (airflow_home / MIGRATED_MARKER).write_text(_airflow_version() + "\n")
            say(f"    MLflow {server.tracking_uri} (pid {server.process.pid})")

        previous = _alias_version(server.tracking_uri, model, ALIAS)
        token = secrets.token_urlsafe(18)
        with step("start the serving service", timings):
            serving = stack.enter_context(
                serving_service(
                    server.tracking_uri,
                    model,
                    aliases=(ALIAS,),
                    reload_token=token,
                    port=serving_port,
                    log_path=logs / "serving.log",
                    slack_webhook_url=contract.SLACK_WEBHOOK_URL.get(),
                    wait_for="readyz" if previous else "healthz",
                    start_timeout=240,
                )
            )
            say(
                f"    serving {serving.base_url} (pid {serving.process.pid}); {ALIAS} before this run: "
                f"{'version ' + previous if previous else 'none yet'}"
            )

        dag_env = {
            contract.MLFLOW_TRACKING_URI.name: server.tracking_uri,
            contract.MODEL_NAME.name: model,
            contract.SERVING_URL.name: serving.base_url,
            contract.SERVING_RELOAD_URL.name: serving.base_url,
            contract.RELOAD_TOKEN.name: token,
        }
        dag_log = logs / f"{DAG_ID}-{time.strftime('%Y%m%d-%H%M%S')}.log"
        with step(f"airflow dags test {DAG_ID}: train, gate, register, promote, reload serving, verify", timings):
            before = run_ids(airflow_home / METADATA_DB, DAG_ID)
            with ManagedProcess(
                "airflow dags test",
                dags_test_argv(DAG_ID, {"alias": ALIAS, **conf}),
                env=airflow_env(airflow_home, dag_env),
                cwd=REPO,
                log_path=dag_log,
            ) as dag_test:
                code = dag_test.wait(timeout=args.dag_timeout)
            summary = new_dag_run(airflow_home / METADATA_DB, DAG_ID, before)
            for task_id, task_state, seconds in summary.tasks:
                say(f"    {task_id:<18} {task_state:<14} {'' if seconds is None else f'{seconds:6.1f} s'}")
            gate = summary.xcoms.get(("quality_gate", "gate"))
            if isinstance(gate, dict):
                say(f"    quality gate: {'passed' if gate.get('passed') else 'REJECTED'}: {gate.get('reason')}")
            say(f"    log: {dag_log}")
            if code != 0 or summary.state != "success":
                raise DemoError(
                    f"the DAG run ended {summary.state or 'without a run'} (exit {code}); end of {dag_log}:\n"
                    f"{dag_test.log_tail()}"
                )
        move = summary.xcoms.get(("promote", "return_value"))
        promoted = str(move["new_version"]) if isinstance(move, dict) and move.get("new_version") else None

        with step("sample predictions", timings):
            answers = _predict(serving.base_url)
            for answer in answers:
                say(f"    {json.dumps(answer)[:300]}")

        served = {str(a.get("version")) for a in answers}
        _print_summary(server.tracking_uri, serving.base_url, model, token, timings)
        if promoted is None:
            outcome = f"no version was promoted by this run ({ALIAS} stays at {previous or 'none'})"
            ok = False
        elif served != {promoted}:
            outcome = f"version {promoted} was promoted but serving answered with version(s) {sorted(served)}"
            ok = False
        else:
            outcome = f"version {promoted} promoted to {ALIAS} and served (before: {previous or 'none'})"
            ok = True
        say(f"\nRESULT: {'OK' if ok else 'FAILED'}: {outcome}")
        if args.once:
            return 0 if ok else 1
        say("\nEverything keeps running: press Ctrl-C to stop.")
        while True:
            time.sleep(1)
            for name, proc in (("MLflow", server.process), ("serving", serving.process)):
                if not proc.alive():
                    raise DemoError(f"{name} stopped unexpectedly; its log: {proc.log_path}\n{proc.log_tail(2000)}")


MIGRATED_MARKER = ".demo-migrated"


def _airflow_version() -> str:
    from importlib.metadata import version

    return version("apache-airflow")


def _start_migrate(airflow: str, home: Path, log_path: Path) -> ManagedProcess | None:
    """`airflow db migrate` started in the background, unless this Airflow version already migrated `home`."""
    marker = home / MIGRATED_MARKER
    if (home / METADATA_DB).is_file() and marker.is_file() and marker.read_text().strip() == _airflow_version():
        return None
    home.mkdir(parents=True, exist_ok=True)
    return ManagedProcess(
        "airflow db migrate", [airflow, "db", "migrate"], env=airflow_env(home), cwd=REPO, log_path=log_path
    ).start()


def _redact(uri: str) -> str:
    """Hide a password in a database URL."""
    if "://" in uri and "@" in uri:
        scheme, rest = uri.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        if ":" in creds:
            return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return uri


def _alias_version(tracking_uri: str, model: str, alias: str) -> str | None:
    from mlops_tasks import registry

    return registry.alias_holder(registry.client(tracking_uri), model, alias)


def _predict(serving_url: str) -> list[dict[str, Any]]:
    """Three one-row predictions; an error answer is kept as {"error": ...} (printed, never raised)."""
    from mlops_tasks import serving
    from mlops_tasks.errors import PermanentError
    from mlops_tasks.training import sample_rows

    rows = sample_rows(3)
    answers: list[dict[str, Any]] = []
    for i in range(len(rows)):
        try:
            answers.append(serving.predict(serving_url, rows[i : i + 1]))
        except (serving.ServingUnavailable, PermanentError) as exc:
            answers.append({"error": str(exc)})
    return answers


def _print_summary(
    tracking_uri: str, serving_url: str, model: str, token: str, timings: list[tuple[str, float]]
) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    say("\n=== summary ===")
    say("steps:")
    for title, seconds in timings:
        say(f"  {seconds:6.1f} s  {title}")
    say(f"versions of {model}:")
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{model}'"))
    if versions:
        aliases = client.get_registered_model(model).aliases or {}
        for alias, version in sorted(aliases.items()):
            say(f"  {alias:<12} -> version {version}")
        say(f"  all versions: {versions}")
    else:
        say("  (none registered yet)")
    from mlops_tasks.training import sample_rows

    row = json.dumps(_predict_body(sample_rows(1)))
    say("URLs:")
    say(f"  MLflow UI            {tracking_uri}/#/models/{model}")
    say(f"  serving OpenAPI docs {serving_url}/docs")
    say("try it:")
    say(f"  curl -s -X POST {serving_url}/predict -H 'Content-Type: application/json' -d '{row}'")
    say(f"  curl -s -X POST {serving_url}{contract.reload_path(ALIAS)} -H 'Authorization: Bearer {token}'")
    say(f"  curl -s {serving_url}/models")


def _predict_body(rows: list[dict[str, float]]) -> dict[str, Any]:
    from mlops_tasks import serving

    return serving.predict_body(rows)


if __name__ == "__main__":
    sys.exit(main())
