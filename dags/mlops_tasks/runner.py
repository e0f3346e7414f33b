"""The training runner: runs a model's entrypoint under the training contract and checks what it logged.

`train()` is the whole sequence, in the Airflow task as in devstack and the tests:

1. `start_run`: the model's experiment (`mlops/<model>`) and an MLflow run for this DAG run, tagged with the
   model and the Airflow DAG/run ids, with the params (catalog defaults overridden by the run's) logged;
2. `training_env`: the defined environment (services.common.training_contract), nothing else of ours;
3. `run_entrypoint`: the entrypoint as a subprocess in its own process group, in the source folder, output
   streamed to this module's logger (so into the Airflow task log), the group killed on timeout;
4. `check_outcome`: exactly one model logged in the run, with a signature and an input example, and the gate
   metric logged.

Every failure raises TrainingContractError, whose message names what is missing (or the exit code and the
last lines of stderr); the MLflow run is then marked FAILED with the reason in the `TAG_FAILURE` tag.
A param of the wrong type (or unknown) is a ValueError before any run is created.

No Airflow import here, and MLflow is imported inside the functions that need it.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from services.common import training_contract as tc
from services.common import training_sdk
from services.common.catalog import ModelSpec, names
from services.common.catalog_file import merge_params
from services.common.registry_tags import (
    TAG_CHAMPION,
    TAG_DAG_ID,
    TAG_DAG_RUN_ID,
    TAG_ENTRYPOINT,
    TAG_FAILURE,
    TAG_GATE_METRIC,
    TAG_GIT_COMMIT,
    TAG_MODEL,
    TAG_SOURCE,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

# The directory holding `services/`: put on the entrypoint's PYTHONPATH (after the source folder) for the SDK.
PLATFORM_ROOT = Path(training_sdk.__file__).resolve().parents[2]
BOOTSTRAP = "import sys; from services.common.training_sdk import main; sys.exit(main(sys.argv[1:]))"
STDERR_TAIL_LINES = 20
KILL_GRACE_SECONDS = 10.0
_MAX_TAG = 5000


class TrainingContractError(RuntimeError):
    """A training run that broke the contract: the entrypoint failed, or did not log what it must."""

    def __init__(self, problems: Iterable[str], run_id: str | None = None) -> None:
        self.problems = list(problems)
        self.run_id = run_id
        super().__init__(self._message())

    def _message(self) -> str:
        prefix = f"training run {self.run_id}: " if self.run_id else "training: "
        return prefix + "; ".join(self.problems)

    def with_run(self, run_id: str) -> TrainingContractError:
        if self.run_id is None:
            self.run_id = run_id
            self.args = (self._message(),)
        return self


@dataclass(frozen=True)
class Outcome:
    """A training run that kept the contract: its one logged model and its metrics (gate metric included)."""

    run_id: str
    model_uri: str
    metrics: dict[str, float]
    model_id: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (an XCom value)."""
        return {
            "run_id": self.run_id,
            "model_uri": self.model_uri,
            "metrics": dict(self.metrics),
            "model_id": self.model_id,
        }


@dataclass(frozen=True)
class EntrypointResult:
    argv: tuple[str, ...]
    cwd: str
    returncode: int
    timed_out: bool
    seconds: float
    stderr_tail: tuple[str, ...] = ()
    stdout_tail: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


# --- 1. the MLflow run -----------------------------------------------------------------------------
def _client(tracking_uri: str) -> MlflowClient:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri)


def _experiment_id(client: MlflowClient, name: str) -> str:
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    try:
        return str(client.create_experiment(name))
    except MlflowException:  # created meanwhile by a concurrent run
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return str(experiment.experiment_id)


def source_commit(folder: str | os.PathLike[str]) -> str | None:
    """The git commit checked out at `folder`, or None when it is not a git checkout."""
    try:
        proc = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = proc.stdout.strip()
    return commit if proc.returncode == 0 and commit else None


def start_run(
    tracking_uri: str,
    model: str,
    spec: ModelSpec,
    params: Mapping[str, Any] | None,
    dag_run_id: str,
    *,
    commit: str | None = None,
    champion_model_uri: str | None = None,
) -> str:
    """Create the model's experiment if needed and a run for this DAG run; its id.

    The run is tagged with the model, the Airflow DAG id and run id, the entrypoint, the source and (when
    given) the git commit and the champion; the merged params are logged on it. ValueError (nothing created)
    for bad params."""
    from mlflow.entities import Param

    merged = merge_params(spec.training.params, params)
    derived = names(model)
    client = _client(tracking_uri)
    experiment_id = _experiment_id(client, derived["experiment"])
    source = spec.training.source
    tags = {
        TAG_MODEL: model,
        TAG_DAG_ID: derived["dag_id"],
        TAG_DAG_RUN_ID: dag_run_id,
        TAG_ENTRYPOINT: _entrypoint_text(spec),
        TAG_SOURCE: f"{source.repo or '<airflow.gitRepo>'}@{source.ref or '<airflow.gitBranch>'}:{source.subdir}",
        TAG_GATE_METRIC: spec.gate.metric,
    }
    if commit:
        tags[TAG_GIT_COMMIT] = commit
    if champion_model_uri:
        tags[TAG_CHAMPION] = champion_model_uri
    run = client.create_run(experiment_id, tags=tags, run_name=dag_run_id)
    run_id = str(run.info.run_id)
    if merged:
        client.log_batch(run_id, params=[Param(key, str(value)) for key, value in sorted(merged.items())])
    log.info("MLflow run %s in experiment %s for %s (DAG run %s)", run_id, derived["experiment"], model, dag_run_id)
    return run_id


# --- 2. the environment ----------------------------------------------------------------------------
def training_env(
    *,
    tracking_uri: str,
    model: str,
    spec: ModelSpec,
    run_id: str,
    params: Mapping[str, Any] | None,
    output_dir: str | os.PathLike[str],
    dataset: str | None = None,
    champion_model_uri: str | None = None,
    base_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The entrypoint's whole environment: the contract's variables, the MLflow credentials when set, and the
    pass-through variables of `base_env` (default: this process's environment); the platform's Python first on
    PATH. `dataset` overrides the catalog's dataset for this run; `champion_model_uri` is the version the run may
    replace (unset when the alias has no holder)."""
    base = os.environ if base_env is None else base_env
    env = {name: value for name, value in base.items() if value != "" and tc.passes_through(name)}
    env["PATH"] = os.pathsep.join(p for p in (str(Path(sys.executable).parent), base.get("PATH", os.defpath)) if p)
    env.update(
        {
            tc.TRACKING_URI.name: tracking_uri,
            tc.RUN_ID.name: run_id,
            tc.EXPERIMENT_NAME.name: names(model)["experiment"],
            tc.MODEL_NAME.name: model,
            tc.PARAMS.name: json.dumps(merge_params(spec.training.params, params), sort_keys=True),
            tc.GATE_METRIC.name: spec.gate.metric,
            tc.GATE_DIRECTION.name: spec.gate.direction,
            tc.OUTPUT_DIR.name: str(output_dir),
        }
    )
    dataset_uri = dataset or spec.training.dataset
    if dataset_uri:
        env[tc.DATASET_URI.name] = dataset_uri
    if champion_model_uri:
        env[tc.CHAMPION_MODEL_URI.name] = champion_model_uri
    return env


# --- 3. the entrypoint -----------------------------------------------------------------------------
def _entrypoint_text(spec: ModelSpec) -> str:
    entrypoint = spec.training.entrypoint
    return entrypoint if isinstance(entrypoint, str) else " ".join(entrypoint)


def entrypoint_argv(spec: ModelSpec) -> list[str]:
    """The command the runner executes: `python -c <bootstrap> package.module:function`, or the command list."""
    entrypoint = spec.training.entrypoint
    if isinstance(entrypoint, str):
        return [sys.executable, "-c", BOOTSTRAP, entrypoint]
    return list(entrypoint)


def _pump(stream: IO[bytes], label: str, tail: collections.deque[str]) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        tail.append(line)
        log.info("%s | %s", label, line)
    stream.close()


def _end_group(leader: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the leader's process group, SIGKILL what is left after `grace` seconds; return once it is gone
    (signal 0 probes it: ProcessLookupError once no process of the group is left, zombies included)."""
    pgid = leader.pid
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 30.0)):
        deadline = time.monotonic() + wait
        try:
            os.killpg(pgid, sig)
            while time.monotonic() < deadline:
                time.sleep(0.1)
                leader.poll()  # reap the leader: unreaped, it would keep the group alive
                os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        except PermissionError:  # a member changed its user: it cannot be signalled (nor waited for)
            break
    log.warning("process group %d is still there after SIGKILL", pgid)


def run_entrypoint(
    spec: ModelSpec,
    env: Mapping[str, str],
    workdir: str | os.PathLike[str],
    timeout: float,
    *,
    check: bool = True,
    kill_grace: float = KILL_GRACE_SECONDS,
) -> EntrypointResult:
    """Run the entrypoint in `workdir`/<source subdir> (that folder first on PYTHONPATH, then the platform's
    root for the SDK) with `env`, as a subprocess in its own process group; stdout and stderr go to the logger
    line by line. The group is ended when the command ends (no stray children) or after `timeout` seconds.

    With `check`, a non-zero exit or a timeout raises TrainingContractError naming the exit code (or the
    timeout) and the last lines of stderr."""
    folder = Path(workdir) / spec.training.source.subdir
    entry = _entrypoint_text(spec)
    if not folder.is_dir():
        raise TrainingContractError([f"the source folder {folder} of the entrypoint {entry} does not exist"])
    pythonpath = [str(folder), str(PLATFORM_ROOT), *env.get("PYTHONPATH", "").split(os.pathsep)]
    full_env = {
        **env,
        "PYTHONPATH": os.pathsep.join(dict.fromkeys(p for p in pythonpath if p)),
        "PYTHONUNBUFFERED": "1",
    }
    argv = entrypoint_argv(spec)
    log.info("running %s in %s (timeout %.0f s)", entry, folder, timeout)
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv,
            cwd=folder,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        raise TrainingContractError([f"the entrypoint {entry} could not be started: {exc}"]) from exc
    tails: dict[str, collections.deque[str]] = {
        "stdout": collections.deque(maxlen=STDERR_TAIL_LINES),
        "stderr": collections.deque(maxlen=STDERR_TAIL_LINES),
    }
    assert proc.stdout is not None and proc.stderr is not None
    pumps = [
        threading.Thread(target=_pump, args=(stream, label, tails[label]), daemon=True)
        for stream, label in ((proc.stdout, "stdout"), (proc.stderr, "stderr"))
    ]
    for pump in pumps:
        pump.start()
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        log.error("%s did not finish within %.0f s: ending its process group %d", entry, timeout, proc.pid)
    finally:
        _end_group(proc, kill_grace)  # on timeout, on any error here, and children left after a normal exit
        proc.wait()
        for pump in pumps:
            pump.join(timeout=30)
    result = EntrypointResult(
        argv=tuple(argv),
        cwd=str(folder),
        returncode=proc.returncode,
        timed_out=timed_out,
        seconds=time.monotonic() - started,
        stderr_tail=tuple(tails["stderr"]),
        stdout_tail=tuple(tails["stdout"]),
    )
    log.info("%s ended with exit code %d after %.1f s", entry, result.returncode, result.seconds)
    if check and not result.ok:
        raise TrainingContractError([_failure_text(entry, result, timeout)])
    return result


def _failure_text(entry: str, result: EntrypointResult, timeout: float) -> str:
    if result.timed_out:
        what = f"the entrypoint {entry} did not finish within {timeout:.0f} s and its process group was killed"
    elif result.returncode < 0:
        try:
            name = signal.Signals(-result.returncode).name
        except ValueError:
            name = str(-result.returncode)
        what = f"the entrypoint {entry} was killed by signal {name} (exit code {result.returncode})"
    else:
        what = f"the entrypoint {entry} exited with code {result.returncode}"
    if result.stderr_tail:
        return f"{what}; last lines of stderr:\n" + "\n".join(result.stderr_tail)
    if result.stdout_tail:
        return f"{what} (nothing on stderr); last lines of stdout:\n" + "\n".join(result.stdout_tail)
    return f"{what} (no output)"


# --- 4. the checks ---------------------------------------------------------------------------------
def fail_run(tracking_uri: str, run_id: str, reason: str) -> None:
    """Mark the run FAILED with `reason` in the TAG_FAILURE tag (best effort: the reason is also raised)."""
    try:
        client = _client(tracking_uri)
        client.set_tag(run_id, TAG_FAILURE, reason[:_MAX_TAG])
        client.set_terminated(run_id, status="FAILED")
    except Exception:  # the original failure matters more than this bookkeeping
        log.exception("could not mark run %s FAILED", run_id)


def _logged_models(client: MlflowClient, run: Any) -> list[Any]:
    """The logged models linked to the run: created with it as source run, or recorded as its outputs."""
    run_id = run.info.run_id
    found = {}
    page_token = None
    while True:
        page = client.search_logged_models(
            experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'", page_token=page_token
        )
        found.update({model.model_id: model for model in page})
        page_token = page.token
        if not page_token:
            break
    outputs = run.outputs.model_outputs if run.outputs is not None else []
    for output in outputs:
        if output.model_id not in found:
            found[output.model_id] = client.get_logged_model(output.model_id)
    return sorted(found.values(), key=lambda m: m.creation_timestamp or 0)


def _mlmodel(tracking_uri: str, artifact_location: str) -> Any:
    """The MLmodel metadata of a logged model (None when it has none), read through `tracking_uri`."""
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    with tempfile.TemporaryDirectory(prefix="mlops-mlmodel-") as tmp:
        try:
            path = download_artifacts(
                artifact_uri=f"{artifact_location.rstrip('/')}/MLmodel", dst_path=tmp, tracking_uri=tracking_uri
            )
        except (MlflowException, OSError):
            return None
        return Model.load(path)


def check_outcome(tracking_uri: str, run_id: str, gate_metric: str) -> Outcome:
    """Check the finished run: exactly one logged model, READY, with a signature and an input example, and the
    gate metric logged (a number). TrainingContractError naming every problem (the run is marked FAILED);
    otherwise the run is marked FINISHED if the code left it running, and its Outcome is returned."""
    client = _client(tracking_uri)
    run = client.get_run(run_id)
    problems: list[str] = []
    if run.info.status in ("FAILED", "KILLED"):
        problems.append(f"the run ended {run.info.status}")
    models = _logged_models(client, run)
    model = models[0] if len(models) == 1 else None
    problems += _model_problems(tracking_uri, models)
    metrics = {key: float(value) for key, value in run.data.metrics.items()}
    problems += _metric_problems(metrics, gate_metric)
    if problems:
        error = TrainingContractError(problems, run_id)
        fail_run(tracking_uri, run_id, str(error))
        raise error
    assert model is not None
    if run.info.status == "RUNNING":
        client.set_terminated(run_id, status="FINISHED")
    log.info("run %s logged %s; %s = %s", run_id, model.model_uri, gate_metric, metrics[gate_metric])
    return Outcome(run_id=run_id, model_uri=str(model.model_uri), metrics=metrics, model_id=str(model.model_id))


def _model_problems(tracking_uri: str, models: list[Any]) -> list[str]:
    """Exactly one logged model, READY, with an MLmodel file, a signature and an input example."""
    problems: list[str] = []
    if not models:
        problems.append(
            "no model was logged in the run: log exactly one with mlflow.<flavor>.log_model(..., signature=..., "
            "input_example=...) inside `with mlflow.start_run():` (which resumes the platform's run)"
        )
    elif len(models) > 1:
        listed = ", ".join(f"{m.name!r} ({m.model_id})" for m in models)
        problems.append(f"{len(models)} models were logged in the run ({listed}); log exactly one")
    else:
        model = models[0]
        label = f"the model {model.name!r} ({model.model_id})"
        if str(model.status) != "READY":
            problems.append(f"{label} is {model.status}, not READY: logging it did not finish")
        else:
            mlmodel = _mlmodel(tracking_uri, model.artifact_location)
            if mlmodel is None:
                problems.append(f"{label} has no MLmodel file: it is not an MLflow model")
            else:
                missing = [
                    what
                    for what, present in (
                        ("a signature", mlmodel.signature is not None),
                        ("an input example", mlmodel.saved_input_example_info is not None),
                    )
                    if not present
                ]
                if missing:
                    problems.append(f"{label} was logged without {' and without '.join(missing)}")
    return problems


def _metric_problems(metrics: dict[str, float], gate_metric: str) -> list[str]:
    """The gate metric logged, and a number."""
    problems: list[str] = []
    if gate_metric not in metrics:
        logged = ", ".join(sorted(metrics)) or "none"
        problems.append(f"the gate metric {gate_metric!r} was not logged in the run (logged metrics: {logged})")
    elif math.isnan(metrics[gate_metric]):
        problems.append(f"the gate metric {gate_metric!r} is NaN")
    return problems


# --- the whole sequence ----------------------------------------------------------------------------
def train(
    model: str,
    spec: ModelSpec,
    params: Mapping[str, Any] | None,
    tracking_uri: str,
    *,
    dag_run_id: str,
    workdir: str | os.PathLike[str],
    dataset: str | None = None,
    champion_model_uri: str | None = None,
    timeout: float | None = None,
    base_env: Mapping[str, str] | None = None,
) -> Outcome:
    """Train `model` from the checkout at `workdir`: start_run, training_env, run_entrypoint, check_outcome.

    `params` are the run's overrides of the catalog's params, `dataset` overrides the catalog's dataset,
    `champion_model_uri` names the version the run may replace (the code scores it: `champion.<gate metric>`),
    `timeout` (seconds) the catalog's timeoutMinutes. Raises ValueError for bad params (no run created) and
    TrainingContractError for a broken contract (the run is marked FAILED with the reason)."""
    folder = Path(workdir) / spec.training.source.subdir
    run_id = start_run(
        tracking_uri,
        model,
        spec,
        params,
        dag_run_id,
        commit=source_commit(folder),
        champion_model_uri=champion_model_uri,
    )
    output_dir = tempfile.mkdtemp(prefix=f"mlops-train-{names(model)['slug']}-")
    try:
        env = training_env(
            tracking_uri=tracking_uri,
            model=model,
            spec=spec,
            run_id=run_id,
            params=params,
            output_dir=output_dir,
            dataset=dataset,
            champion_model_uri=champion_model_uri,
            base_env=base_env,
        )
        seconds = timeout if timeout is not None else spec.training.timeout_minutes * 60.0
        run_entrypoint(spec, env, workdir, seconds)
        return check_outcome(tracking_uri, run_id, spec.gate.metric)
    except TrainingContractError as exc:
        exc.with_run(run_id)
        fail_run(tracking_uri, run_id, str(exc))
        raise
    except BaseException as exc:
        fail_run(tracking_uri, run_id, f"the platform's runner failed: {type(exc).__name__}: {exc}")
        raise
    finally:
        shutil.rmtree(output_dir, ignore_errors=True)
