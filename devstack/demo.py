"""`make demo`: the whole ML loop on this machine, no cluster, for every model of the catalog.

    .venv/bin/python -m devstack.demo [--once] [--model NAME] [--mlflow-port 5000] [--serving-port 8000]
                                      [--api-port 8080] [--conf JSON] [--no-api]

1. checks the dependencies and that the ports are free (nothing is started otherwise);
2. starts on 127.0.0.1 an MLflow server (SQLite + an artifact folder under .local/demo by default;
   $MLOPS_DEMO_BACKEND_STORE_URI / $MLOPS_DEMO_ARTIFACTS_DESTINATION for PostgreSQL / S3) and ONE serving
   process PER MODEL (ports --serving-port, +1, ...), configured through the endpoints contract's variables, as
   in the cluster;
3. writes the model catalog JSON (`devstack.catalog`: the dev stack's `models` and `profiles`, the two examples,
   each with its own serving URLs) and points MLOPS_MODEL_CATALOG at it, as the ConfigMap does in the cluster;
4. starts Airflow (API server, scheduler, DAG processor; LocalExecutor on a fresh PostgreSQL database) and the
   platform API (`services.api`, on its own fresh database), creates a `train`+`read` token with the admin token,
   and requests each model's training through `POST /v1/trainings`, following its events over SSE until a final
   state: the `train_<model>` DAG trains through the runner, gates, registers, promotes, reloads that model's
   serving and verifies. With `--no-api`: `airflow dags test train_<model>` instead (SQLite under .local/demo);
5. prints per model the gate decision, the promoted version and a prediction from its own serving process, then
   the versions under each alias, the URLs and curl commands (the API's URL, the token, start a training, follow
   its events);
6. keeps everything running until Ctrl-C (or, with --once, exits: 0 only if every model's serving answered with
   the version this run promoted) and stops every process it started.

`--model NAME` runs one model of the catalog. The MLflow state (DB and artifacts) persists under .local/demo, so
the next run registers the next versions; the Airflow and API databases of the API path are dropped on exit.
PostgreSQL must answer on 127.0.0.1:5432 (not needed with `--no-api`). A taken port, a missing dependency or a
failed step ends the demo with a clear message and nothing left running.
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
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

from devstack import DAGS_FOLDER, REPO
from devstack.catalog import catalog_env, local_catalog, write_catalog
from devstack.dag_runs import METADATA_DB, DagRunSummary, airflow_env, dags_test_argv, new_dag_run, run_ids
from devstack.procs import DevstackError, ManagedProcess, ensure_port_free, find_binary, free_port
from services.common import contract
from services.common.catalog import Catalog, ModelSpec, names

if TYPE_CHECKING:
    import httpx

    from devstack.mlflow_server import MlflowServer
    from devstack.serving import ServingProcess

DEFAULT_STATE = REPO / ".local" / "demo"
DAG_FILE = "model_pipelines.py"


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
    modules = ("sklearn", "fastapi", "uvicorn", "httpx", "psycopg", "services.serving", "services.api")
    missing = [m for m in modules if not _has_module(m)]
    if missing:
        raise DemoError(f"missing Python modules: {', '.join(missing)}. Build the environment first: make setup")
    if not (DAGS_FOLDER / DAG_FILE).is_file():
        raise DemoError(f"DAG file dags/{DAG_FILE} not found under {REPO}")
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
            option = "--mlflow-port" if "MLflow" in what else "--api-port" if "API" in what else "--serving-port"
            raise DemoError(f"{exc}. Stop what uses it or choose another port: make demo ARGS='{option} N'") from exc


def check_postgres() -> None:
    """The API path keeps Airflow's and the API's state in PostgreSQL: it must answer before anything starts."""
    from devstack.postgres import check_server

    try:
        check_server()
    except DevstackError as exc:
        raise DemoError(
            f"{exc}; or run the DAGs without Airflow services and the API: make demo ARGS=--no-api"
        ) from exc


def choose_models(catalog: Catalog, model: str | None) -> list[str]:
    """The models this run works on: all of the catalog's, or the one `--model` names."""
    known = sorted(catalog.models)
    if model is None:
        return known
    if model not in catalog.models:
        raise DemoError(f"--model {model}: the catalog has no such model; its models: {', '.join(known)}")
    return [model]


def serving_ports(base: int, models: list[str], taken: set[int]) -> dict[str, int]:
    """One port per model: `base`, `base + 1`, ... (or free ports when `base` is 0), none of them in `taken`."""
    ports: dict[str, int] = {}
    for i, model in enumerate(models):
        port = base + i if base else free_port()
        while not base and (port in taken or port in ports.values()):
            port = free_port()
        ports[model] = port
    if taken & set(ports.values()):
        raise DemoError("--mlflow-port and the serving ports (--serving-port, +1, ...) must differ")
    return ports


# --- the demo ----------------------------------------------------------------------------------------


@dataclass
class ModelRun:
    """One model's part of the demo: its serving process, its DAG run and what came of it."""

    model: str
    spec: ModelSpec
    serving_url: str = ""
    serving_pid: int = 0
    previous: str | None = None
    summary: DagRunSummary | None = None
    training: dict[str, Any] | None = None  # the API's training, as GET /v1/trainings/<id> answers it
    promoted: str | None = None
    answers: list[dict[str, Any]] | None = None

    @property
    def alias(self) -> str:
        return self.spec.serving.routing.aliases()[0]

    @property
    def dag_id(self) -> str:
        return names(self.model)["dag_id"]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--once", action="store_true", help="run the loop once and exit (0 = new versions served)")
    parser.add_argument("--model", default=None, help="run one model of the catalog (default: every model)")
    parser.add_argument("--mlflow-port", type=int, default=5000, help="MLflow port (0 = any free port)")
    parser.add_argument(
        "--serving-port", type=int, default=8000, help="port of the first model's serving, +1 for the next (0 = free)"
    )
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE, help="where the demo keeps its state")
    parser.add_argument("--conf", default="{}", help="DAG params of the one --model as JSON, e.g. '{\"C\": 10}'")
    parser.add_argument("--dag-timeout", type=float, default=900.0, help="seconds each DAG run may take")
    parser.add_argument("--api-port", type=int, default=8080, help="port of the platform API (0 = any free port)")
    parser.add_argument(
        "--no-api", action="store_true", help="run each DAG with `airflow dags test` (no Airflow services, no API)"
    )
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
    conf = _parse_conf(args.conf)
    catalog = local_catalog()
    models = choose_models(catalog, args.model)
    if conf and len(models) > 1:
        raise DemoError(f"--conf sets the params of one model: add --model NAME ({', '.join(models)})")
    runs = [ModelRun(model, catalog.models[model]) for model in models]
    state: Path = args.state_dir.resolve()
    logs = state / "logs"
    timings: list[tuple[str, float]] = []
    setup = _check_setup(args, models, state, timings)

    with contextlib.ExitStack() as stack:
        server = _start_mlflow(stack, args, setup, state, timings)
        token = secrets.token_urlsafe(18)
        servings, catalog_path = _start_servings(
            stack, catalog, runs, server.tracking_uri, token, setup, state, timings
        )
        dag_env = {
            contract.MLFLOW_TRACKING_URI.name: server.tracking_uri,
            contract.RELOAD_TOKEN.name: token,
            **catalog_env(catalog_path),
        }
        api: ApiAccess | None = None
        processes = [("MLflow", server.process)] + [(f"serving of {m}", s.process) for m, s in servings.items()]
        if args.no_api:
            for model_run in runs:
                _run_dag(model_run, state / "airflow", dag_env, conf, logs, args.dag_timeout, timings)
        else:
            api = _start_api(stack, dag_env, catalog_path, server.tracking_uri, state, logs, setup.api_port, timings)
            processes += api.processes
            for model_run in runs:
                _train_through_api(api, model_run, conf, args.dag_timeout, timings)

        with step("sample predictions (each model from its own serving)", timings):
            for model_run in runs:
                model_run.answers = _predict(server.tracking_uri, model_run)
                for answer in model_run.answers:
                    say(f"    {model_run.model}: {json.dumps(answer)[:300]}")

        _print_summary(server.tracking_uri, runs, token, timings, api)
        all_ok = _print_results(runs)
        if args.once:
            return 0 if all_ok else 1
        say("\nEverything keeps running: press Ctrl-C to stop.")
        _watch(processes)


def _parse_conf(text: str) -> dict[str, Any]:
    """`--conf`: a JSON object of DAG params."""
    try:
        conf = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DemoError(f"--conf is not valid JSON: {exc}") from exc
    if not isinstance(conf, dict):
        raise DemoError("--conf must be a JSON object of DAG params")
    return conf


@dataclass(frozen=True)
class _Setup:
    """What the first step found and chose: binaries, ports, MLflow's stores."""

    binaries: dict[str, str]
    mlflow_port: int
    ports: dict[str, int]
    api_port: int
    backend: str
    artifacts: str


def _check_setup(args: argparse.Namespace, models: list[str], state: Path, timings: list[tuple[str, float]]) -> _Setup:
    with step("check dependencies and ports", timings):
        binaries = check_dependencies()
        mlflow_port = args.mlflow_port or free_port()
        ports = serving_ports(args.serving_port, models, {mlflow_port})
        named = {"the MLflow server": mlflow_port, **{f"the serving of {m}": p for m, p in ports.items()}}
        api_port = 0
        if not args.no_api:
            api_port = _api_port(args, named)
            named["the platform API"] = api_port
            check_postgres()
        check_ports(named)
        state.mkdir(parents=True, exist_ok=True)
        backend = contract.DEMO_BACKEND_STORE_URI.get() or f"sqlite:///{state / 'mlflow.db'}"
        artifacts = contract.DEMO_ARTIFACTS_DESTINATION.get() or str(state / "mlflow-artifacts")
        say(f"    models {', '.join(models)}; MLflow backend {_redact(backend)}; artifacts {artifacts}")
        say(f"    state in {state}")
    return _Setup(binaries, mlflow_port, ports, api_port, backend, artifacts)


def _api_port(args: argparse.Namespace, named: dict[str, int]) -> int:
    """`--api-port`, or a free port none of the other processes uses."""
    api_port: int = args.api_port or free_port()
    while not args.api_port and api_port in named.values():
        api_port = free_port()
    if api_port in named.values():
        raise DemoError("--api-port must differ from --mlflow-port and the serving ports")
    return api_port


def _start_mlflow(
    stack: contextlib.ExitStack, args: argparse.Namespace, setup: _Setup, state: Path, timings: list[tuple[str, float]]
) -> MlflowServer:
    """The MLflow server (and, without the API, the Airflow DB migration alongside it)."""
    from devstack.mlflow_server import mlflow_server

    logs, airflow_home = state / "logs", state / "airflow"
    with step("start MLflow and prepare the Airflow DB (in parallel)" if args.no_api else "start MLflow", timings):
        migrate = None
        if args.no_api:
            migrate = _start_migrate(setup.binaries["airflow"], airflow_home, logs / "airflow-db-migrate.log")
        if migrate is not None:
            stack.callback(migrate.stop)
        server = stack.enter_context(
            mlflow_server(
                setup.backend,
                setup.artifacts,
                port=setup.mlflow_port,
                log_path=logs / "mlflow.log",
                start_timeout=240,
            )
        )
        if migrate is not None:
            code = migrate.wait(timeout=300)
            if code != 0:
                raise DemoError(f"airflow db migrate failed ({code}):\n{migrate.log_tail(4000)}")
            (airflow_home / MIGRATED_MARKER).write_text(_airflow_version() + "\n")
        say(f"    MLflow {server.tracking_uri} (pid {server.process.pid})")
    return server


def _start_servings(
    stack: contextlib.ExitStack,
    catalog: Catalog,
    runs: list[ModelRun],
    tracking_uri: str,
    token: str,
    setup: _Setup,
    state: Path,
    timings: list[tuple[str, float]],
) -> tuple[dict[str, ServingProcess], Path]:
    """One serving process per model, and the catalog written with their URLs."""
    from devstack.serving import serving_service

    logs = state / "logs"
    servings: dict[str, ServingProcess] = {}
    with step("start the serving processes (one per model)", timings):
        for model_run in runs:
            model_run.previous = _alias_version(tracking_uri, model_run.model, model_run.alias)
            serving = stack.enter_context(
                serving_service(
                    tracking_uri,
                    model_run.model,
                    aliases=model_run.spec.serving.aliases,
                    routing=model_run.spec.serving.routing.model_dump(mode="json"),
                    reload_token=token,
                    port=setup.ports[model_run.model],
                    log_path=logs / f"serving-{names(model_run.model)['slug']}.log",
                    slack_webhook_url=contract.SLACK_WEBHOOK_URL.get(),
                    wait_for="readyz" if model_run.previous else "healthz",
                    start_timeout=240,
                )
            )
            servings[model_run.model] = serving
            model_run.serving_url, model_run.serving_pid = serving.base_url, serving.process.pid
            say(
                f"    serving {model_run.model} {serving.base_url} (pid {serving.process.pid}); "
                f"{model_run.alias} before this run: "
                f"{'version ' + model_run.previous if model_run.previous else 'none yet'}"
            )
        # The catalog as the program writes it into the ConfigMap (the models of this run), with each model's
        # own serving URLs.
        models = [model_run.model for model_run in runs]
        selected = catalog.model_copy(update={"models": {m: catalog.models[m] for m in models}})
        catalog_path = write_catalog(
            selected, state / "catalog.json", {m: serving.base_url for m, serving in servings.items()}
        )
        say(f"    catalog {catalog_path}")
    return servings, catalog_path


def _print_results(runs: list[ModelRun]) -> bool:
    """One RESULT line per model and the overall one; whether every model was promoted and served."""
    outcomes = [_outcome(model_run) for model_run in runs]
    for model_run, (ok, outcome) in zip(runs, outcomes, strict=True):
        say(f"RESULT {model_run.model}: {'OK' if ok else 'FAILED'}: {outcome}")
    served = sum(ok for ok, _ in outcomes)
    all_ok = served == len(runs)
    say(f"\nRESULT: {'OK' if all_ok else 'FAILED'}: {served} of {len(runs)} models promoted and served")
    return all_ok


def _watch(processes: list[tuple[str, ManagedProcess]]) -> NoReturn:
    """Until Ctrl-C: fail as soon as one of the processes stops."""
    while True:
        time.sleep(1)
        for name, proc in processes:
            if not proc.alive():
                raise DemoError(f"{name} stopped unexpectedly; its log: {proc.log_path}\n{proc.log_tail(2000)}")


def _run_dag(
    model_run: ModelRun,
    airflow_home: Path,
    env: dict[str, str],
    conf: dict[str, Any],
    logs: Path,
    timeout: float,
    timings: list[tuple[str, float]],
) -> None:
    """`airflow dags test train_<model>`; its tasks, gate decision and promoted version go into `model_run`."""
    dag_id = model_run.dag_id
    dag_log = logs / f"{dag_id}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    title = f"airflow dags test {dag_id}: train, gate, register, promote, reload its serving, verify"
    with step(title, timings):
        before = run_ids(airflow_home / METADATA_DB, dag_id)
        with ManagedProcess(
            "airflow dags test",
            dags_test_argv(dag_id, {"alias": model_run.alias, **conf}),
            env=airflow_env(airflow_home, env),
            cwd=REPO,
            log_path=dag_log,
        ) as dag_test:
            code = dag_test.wait(timeout=timeout)
        summary = new_dag_run(airflow_home / METADATA_DB, dag_id, before)
        model_run.summary = summary
        for task_id, task_state, seconds in summary.tasks:
            say(f"    {task_id:<18} {task_state:<14} {'' if seconds is None else f'{seconds:6.1f} s'}")
        gate = summary.xcoms.get(("quality_gate", "gate"))
        if isinstance(gate, dict):
            say(f"    quality gate: {'passed' if gate.get('passed') else 'REJECTED'}: {gate.get('reason')}")
        say(f"    log: {dag_log}")
        if code != 0 or summary.state != "success":
            raise DemoError(
                f"the DAG run of {model_run.model} ended {summary.state or 'without a run'} (exit {code}); "
                f"end of {dag_log}:\n{dag_test.log_tail()}"
            )
        move = summary.xcoms.get(("promote", "return_value"))
        if isinstance(move, dict) and move.get("new_version"):
            model_run.promoted = str(move["new_version"])
            say(f"    promoted: version {model_run.promoted} is {model_run.alias} of {model_run.model}")


@dataclass(frozen=True)
class ApiAccess:
    """The running platform API: its URL, a `train`+`read` token, and the processes behind it (API and Airflow)."""

    url: str
    token: str
    airflow_logs: Path
    processes: list[tuple[str, ManagedProcess]]

    def client(self) -> Any:
        import httpx

        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=httpx.Timeout(30, read=60)
        )


FINAL_STATES = ("success", "failed", "cancelled")


def _start_api(
    stack: contextlib.ExitStack,
    dag_env: dict[str, str],
    catalog_path: Path,
    tracking_uri: str,
    state: Path,
    logs: Path,
    port: int,
    timings: list[tuple[str, float]],
) -> ApiAccess:
    """Airflow's services and the platform API, each on a fresh PostgreSQL database; a `train`+`read` token."""
    from devstack.airflow_services import airflow_services
    from devstack.api import api_process, token_for
    from devstack.postgres import fresh_database

    home = state / "airflow-services"
    with step("start Airflow (API server, scheduler, DAG processor; LocalExecutor on PostgreSQL)", timings):
        airflow = stack.enter_context(airflow_services(home, logs, dag_env, db_prefix="demo_airflow"))
        say(f"    Airflow {airflow.url} (pid {airflow.processes[0].pid}); user {airflow.user}; AIRFLOW_HOME {home}")
    with step("start the platform API and create a train+read token", timings):
        database = stack.enter_context(fresh_database("demo_api")).rsplit("/", 1)[1]
        api = stack.enter_context(
            api_process(
                logs / "api.log",
                database=database,
                airflow_url=airflow.url,
                tracking_uri=tracking_uri,
                catalog=catalog_path,
                airflow_user=(airflow.user, airflow.password),
                port=port,
                reconcile_seconds=1.0,
                poll_seconds=0.5,
            )
        )
        token = token_for(api, "train", "read", name="demo")
        say(f"    platform API {api.base_url} (pid {api.process.pid}); database {database}; log {logs / 'api.log'}")
    names_of = ("Airflow API server", "Airflow scheduler", "Airflow DAG processor")
    processes = [("platform API", api.process), *zip(names_of, airflow.processes, strict=True)]
    return ApiAccess(api.base_url, token, home / "logs", processes)


def _train_through_api(
    api: ApiAccess, model_run: ModelRun, conf: dict[str, Any], timeout: float, timings: list[tuple[str, float]]
) -> None:
    """`POST /v1/trainings` for the model, then its events over SSE until a final state; the outcome goes into
    `model_run`."""
    model = model_run.model
    with step(f"train {model} through the API: POST /v1/trainings, its events over SSE until a final state", timings):
        key = f"demo-{secrets.token_hex(6)}"
        body: dict[str, Any] = {"model": model, **({"params": conf} if conf else {})}
        with api.client() as client:
            training = _post_training(client, model, body, key)
            run_id = training["id"]
            say(f"    training {run_id} (Idempotency-Key {key}), Airflow DAG run {training['airflow']['dag_run_id']}")
            final = _follow_events(client, run_id, model, timeout)
        model_run.training = final
        gate = final.get("gate") or {}
        if gate.get("decision"):
            say(f"    quality gate: {'passed' if gate['decision'] == 'passed' else 'REJECTED'}: {gate.get('reason')}")
        if final["state"] != "success":
            raise DemoError(
                f"the training {run_id} of {model} ended {final['state']}: {final.get('error')}; "
                f"task logs under {api.airflow_logs}"
            )
        if final.get("promoted") and final.get("registered_version"):
            model_run.promoted = str(final["registered_version"])
            say(f"    promoted: version {model_run.promoted} is {model_run.alias} of {model}")


def _post_training(client: httpx.Client, model: str, body: dict[str, Any], key: str) -> dict[str, Any]:
    """`POST /v1/trainings`, again every 2 s while Airflow does not know the DAG yet (up to 240 s); the training."""
    # the DAG processor must have parsed the generated DAGs before Airflow accepts a run
    deadline = time.monotonic() + 240
    while True:
        answer = client.post("/v1/trainings", json=body, headers={"Idempotency-Key": key})
        if answer.status_code in (200, 201, 202):
            break
        final_refusal = answer.status_code in (400, 401, 403, 422) or (
            answer.status_code == 404 and answer.json().get("field") == "model"
        )
        if final_refusal or time.monotonic() > deadline:
            raise DemoError(f"the API refused the training of {model} ({answer.status_code}): {answer.text[:1000]}")
        time.sleep(2)
    training: dict[str, Any] = answer.json()
    return training


def _follow_events(client: httpx.Client, run_id: str, model: str, timeout: float) -> dict[str, Any]:
    """The training's events over SSE (resuming after the last one on a dropped stream) until a final state."""
    import httpx

    from devstack.api import parse_sse

    last: int | None = None
    deadline = time.monotonic() + timeout
    while True:
        params = {"after": last} if last is not None else None
        with contextlib.suppress(httpx.TransportError):  # a dropped stream resumes after the last event
            with client.stream("GET", f"/v1/trainings/{run_id}/events", params=params) as response:
                if response.status_code != 200:
                    raise DemoError(f"GET /v1/trainings/{run_id}/events answered {response.status_code}")
                for event in parse_sse(response.iter_lines()):
                    last = event["id"]
                    say(f"    event {event['id']:>5} {event['event']:<20} {_facts(event['data'].get('run'))}")
        final: dict[str, Any] = client.get(f"/v1/trainings/{run_id}").json()
        if final["state"] in FINAL_STATES:
            break
        if time.monotonic() > deadline:
            raise DemoError(f"the training {run_id} of {model} did not end within {timeout:.0f} s")
    return final


def _facts(run: dict[str, Any] | None) -> str:
    """What an event's training says, in a few words."""
    if not run:
        return ""
    facts = [f"state {run.get('state')}"]
    if run.get("registered_version"):
        facts.append(f"version {run['registered_version']}")
    if (run.get("gate") or {}).get("decision"):
        facts.append(f"gate {run['gate']['decision']}")
    if run.get("aliases"):
        facts.append(f"aliases {','.join(run['aliases'])}")
    return "; ".join(facts)


def _outcome(model_run: ModelRun) -> tuple[bool, str]:
    served = {str(a.get("version")) for a in model_run.answers or []}
    alias, before = model_run.alias, model_run.previous or "none"
    if model_run.promoted is None:
        return False, f"no version was promoted by this run ({alias} stays at {before})"
    if served != {model_run.promoted}:
        return False, f"version {model_run.promoted} was promoted but its serving answered with {sorted(served)}"
    return True, f"version {model_run.promoted} promoted to {alias} and served by its own serving (before: {before})"


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


def _rows(tracking_uri: str, model_run: ModelRun, n: int) -> list[dict[str, Any]]:
    """Rows of the input example of the version serving should answer with (the promoted one, else the holder)."""
    from mlops_tasks import registry

    version = model_run.promoted or _alias_version(tracking_uri, model_run.model, model_run.alias)
    return registry.example_rows(tracking_uri, model_run.model, version, n) if version else []


def _predict(tracking_uri: str, model_run: ModelRun) -> list[dict[str, Any]]:
    """One-row predictions from the model's own serving; an error answer is kept as {"error": ...} (printed, never
    raised)."""
    from mlops_tasks import serving
    from mlops_tasks.errors import PermanentError

    answers: list[dict[str, Any]] = []
    for row in _rows(tracking_uri, model_run, 1):
        try:
            answers.append(serving.predict(model_run.serving_url, [row]))
        except (serving.ServingUnavailable, PermanentError) as exc:
            answers.append({"error": str(exc)})
    return answers


def _print_summary(
    tracking_uri: str, runs: list[ModelRun], token: str, timings: list[tuple[str, float]], api: ApiAccess | None
) -> None:
    from mlflow import MlflowClient
    from mlops_tasks import serving

    client = MlflowClient(tracking_uri=tracking_uri)
    say("\n=== summary ===")
    say("steps:")
    for title, seconds in timings:
        say(f"  {seconds:6.1f} s  {title}")
    for model_run in runs:
        model = model_run.model
        say(f"\n{model}:")
        versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{model}'"))
        if versions:
            aliases = client.get_registered_model(model).aliases or {}
            for alias, version in sorted(aliases.items()):
                say(f"  {alias:<12} -> version {version}")
            say(f"  all versions: {versions}")
        else:
            say("  (none registered yet)")
        say(f"  MLflow UI            {tracking_uri}/#/models/{model}")
        say(f"  serving OpenAPI docs {model_run.serving_url}/docs")
        rows = _rows(tracking_uri, model_run, 1)
        if rows:
            body = json.dumps(serving.predict_body(rows))
            say(f"  curl -s -X POST {model_run.serving_url}/predict -H 'Content-Type: application/json' -d '{body}'")
        reload_url = f"{model_run.serving_url}{contract.reload_path(model_run.alias)}"
        say(f"  curl -s -X POST {reload_url} -H 'Authorization: Bearer {token}'")
        say(f"  curl -s {model_run.serving_url}/models")
        if api is not None:
            auth = f"-H 'Authorization: Bearer {api.token}'"
            say("  # start a training through the API (the same Idempotency-Key again answers the same training):")
            say(
                f"  curl -sS -X POST {api.url}/v1/trainings {auth} -H 'Idempotency-Key: demo-{secrets.token_hex(6)}' "
                f"-H 'Content-Type: application/json' -d '{json.dumps({'model': model})}'"
            )
            run_id = (model_run.training or {}).get("id", "<id>")
            say("  # follow a training's events until its final state (this one: the training this demo ran):")
            say(f"  curl -sSN {api.url}/v1/trainings/{run_id}/events {auth}")
    if api is not None:
        say("\nplatform API:")
        say(f"  URL                  {api.url} (OpenAPI docs {api.url}/docs)")
        say(f"  token (train, read)  {api.token}")
        say("  # every event of every model as it happens:")
        say(f"  curl -sSN {api.url}/v1/events -H 'Authorization: Bearer {api.token}'")


if __name__ == "__main__":
    sys.exit(main())
