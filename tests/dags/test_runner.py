"""The training runner against a real MLflow (PostgreSQL + moto S3): both example models train through the
runner as separate processes (bundled data, a file:// dataset, an s3:// dataset on moto), keep the contract and
give models that load with pyfunc and predict on their input example; a command entrypoint works and sees only
the contract's environment; every broken entrypoint (crash, missing function, no model, two models, no
signature, no input example, no gate metric, timeout) fails the run with a message naming the problem, the
MLflow run marked FAILED with that reason, the timed-out process group gone; bad params create no run."""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlops_tasks import runner

from devstack.catalog import local_catalog
from services.common import catalog_file, contract, registry_tags
from services.common import training_contract as tc
from services.common.catalog import ModelSpec, names

pytestmark = [pytest.mark.servers, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
CATALOG = local_catalog()  # the examples as the dev stack, `make demo` and the DAG tests run them

# Entrypoints that break the contract, each in its own way. `score` is their gate metric.
BROKEN = '''
import os
import signal
import subprocess
import sys
import time

import mlflow
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types import ColSpec, Schema

import pandas as pd

EXAMPLE = pd.DataFrame({"x": [1.0, 2.0]})
SIGNATURE = ModelSignature(inputs=Schema([ColSpec("double", "x")]), outputs=Schema([ColSpec("double")]))


class Double(PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input["x"] * 2


def log(**kwargs):
    return mlflow.pyfunc.log_model(python_model=Double(), pip_requirements=["mlflow"], **kwargs)


def crash():
    print("loading the data", flush=True)
    raise RuntimeError("boom: the data is bad")


def no_model(ctx):
    with mlflow.start_run():
        mlflow.log_metric(ctx.gate_metric, 1.0)


def two_models(ctx):
    with mlflow.start_run():
        log(name="first", signature=SIGNATURE, input_example=EXAMPLE)
        log(name="second", signature=SIGNATURE, input_example=EXAMPLE)
        mlflow.log_metric(ctx.gate_metric, 1.0)


def no_signature(ctx):
    with mlflow.start_run():
        log(name="model")
        mlflow.log_metric(ctx.gate_metric, 1.0)


def no_input_example(ctx):
    with mlflow.start_run():
        log(name="model", signature=SIGNATURE)
        mlflow.log_metric(ctx.gate_metric, 1.0)


def no_metric(ctx):
    with mlflow.start_run():
        log(name="model", signature=SIGNATURE, input_example=EXAMPLE)
        mlflow.log_metric("other", 1.0)


def sleeper(ctx):
    """Starts a child that ignores SIGTERM, writes both pids, and never ends."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"]
    )
    with open(ctx.param("pid_file"), "w") as f:
        f.write(f"{os.getpid()} {child.pid}")
    time.sleep(600)
'''

# A command entrypoint: reads the contract with the SDK, records what it was given, keeps the contract.
COMMAND = """
import json
import os
import sys

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

from services.common.training_sdk import context


class Double(PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input["x"] * 2


ctx = context()
print(f"training {ctx.model_name} with {sorted(ctx.params)}")
print("a warning on stderr", file=sys.stderr)
with open(sys.argv[1], "w") as f:
    json.dump({"argv": sys.argv[1:], "cwd": os.getcwd(), "env": sorted(os.environ), "params": dict(ctx.params),
               "output_dir_exists": ctx.output_dir.is_dir()}, f)
with mlflow.start_run():
    example = pd.DataFrame({"x": [1.0, 2.0]})
    mlflow.pyfunc.log_model(name="model", python_model=Double(), input_example=example, pip_requirements=["mlflow"])
    mlflow.log_metric(ctx.gate_metric, 0.5)
"""


@pytest.fixture(scope="module")
def broken_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkout whose `broken/` folder holds the package `broken_model` and the script `train_cmd.py`."""
    root = tmp_path_factory.mktemp("checkout")
    package = root / "broken" / "broken_model"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "steps.py").write_text(textwrap.dedent(BROKEN))
    (root / "broken" / "train_cmd.py").write_text(textwrap.dedent(COMMAND))
    return root


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[dict[str, str]]:
    """moto's S3 in this process (a dataset bucket of its own); the AWS variables a client of it needs."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": f"http://{host}:{port}",
    }
    server.stop()


def _spec(entrypoint: str | list[str], params: dict[str, Any] | None = None) -> ModelSpec:
    return ModelSpec.model_validate(
        {
            "training": {"source": {"subdir": "broken"}, "entrypoint": entrypoint, "params": params or {}},
            "gate": {"metric": "score"},
        }
    )


def _client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(uri)


def _predict_on_input_example(uri: str, model_uri: str) -> Any:
    import mlflow

    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(model_uri)
    assert model.input_example is not None
    return model.predict(model.input_example)


def _check_example_run(uri: str, model: str, outcome: runner.Outcome, dag_run_id: str) -> Any:
    spec = CATALOG.models[model]
    run = _client(uri).get_run(outcome.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.experiment_id == _client(uri).get_experiment_by_name(names(model)["experiment"]).experiment_id
    assert run.data.tags[registry_tags.TAG_MODEL] == model
    assert run.data.tags[registry_tags.TAG_DAG_ID] == names(model)["dag_id"]
    assert run.data.tags[registry_tags.TAG_DAG_RUN_ID] == dag_run_id
    assert registry_tags.TAG_FAILURE not in run.data.tags
    assert spec.gate.passes_threshold(outcome.metrics[spec.gate.metric])
    assert outcome.metrics == run.data.metrics
    assert outcome.model_uri == f"models:/{outcome.model_id}"
    logged = _client(uri).get_logged_model(outcome.model_id)
    assert logged.source_run_id == outcome.run_id
    assert logged.metrics and {m.key for m in logged.metrics} >= {spec.gate.metric}
    return run


def test_iris_example_trains_through_the_runner(mlflow_tracking_uri: str) -> None:
    outcome = runner.train(
        "iris-classifier",
        CATALOG.models["iris-classifier"],
        {"C": 2},  # an int for a float param is that float
        mlflow_tracking_uri,
        dag_run_id="manual__iris",
        workdir=REPO,
    )
    run = _check_example_run(mlflow_tracking_uri, "iris-classifier", outcome, "manual__iris")
    assert run.data.params["C"] == "2.0"
    assert run.data.params["max_iter"] == "200"
    assert run.data.params["train_rows"] == "105"  # 70 % of the bundled 150 rows
    assert run.data.tags.get(registry_tags.TAG_GIT_COMMIT)  # the examples live in this git checkout
    predictions = _predict_on_input_example(mlflow_tracking_uri, outcome.model_uri)
    assert len(predictions) == 3 and set(predictions) <= {0, 1, 2}


def test_diabetes_example_trains_through_the_runner(mlflow_tracking_uri: str) -> None:
    import importlib.util

    outcome = runner.train(
        "diabetes-regression",
        # the catalog's JSON form, read as the DAGs read it (the one catalog reader)
        catalog_file.parse(CATALOG.for_airflow(serving_url={m: "http://serving" for m in CATALOG.models}))[
            "diabetes-regression"
        ].spec,
        None,
        mlflow_tracking_uri,
        dag_run_id="manual__diabetes",
        workdir=REPO,
    )
    run = _check_example_run(mlflow_tracking_uri, "diabetes-regression", outcome, "manual__diabetes")
    assert run.data.params["alpha"] == "0.1"
    assert outcome.metrics["test_r2"] > 0  # better than predicting the mean
    # The model carries its own code: it loads where the example's package is not importable (as in serving).
    assert importlib.util.find_spec("diabetes_model") is None
    predictions = _predict_on_input_example(mlflow_tracking_uri, outcome.model_uri)
    assert len(predictions) == 3 and all(math.isfinite(float(p)) for p in predictions)


def test_examples_read_a_file_and_an_s3_dataset(
    mlflow_tracking_uri: str, tmp_path: Path, s3_endpoint: dict[str, str]
) -> None:
    import boto3
    from sklearn.datasets import load_diabetes, load_iris

    iris = load_iris(as_frame=True).frame.head(140)  # fewer rows than the bundled data: proves the CSV was read
    iris.to_csv(tmp_path / "iris.csv", index=False)
    iris_uri = (tmp_path / "iris.csv").as_uri()
    spec = CATALOG.models["iris-classifier"]
    outcome = runner.train(
        "iris-classifier", spec, {}, mlflow_tracking_uri, dag_run_id="file", workdir=REPO, dataset=iris_uri
    )
    run = _client(mlflow_tracking_uri).get_run(outcome.run_id)
    assert run.data.params["train_rows"] == "98"  # 70 % of 140
    assert [json.loads(d.dataset.source)["uri"] for d in run.inputs.dataset_inputs] == [iris_uri]

    s3 = boto3.client(
        "s3",
        endpoint_url=s3_endpoint["AWS_ENDPOINT_URL_S3"],
        aws_access_key_id=s3_endpoint["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=s3_endpoint["AWS_SECRET_ACCESS_KEY"],
        region_name=s3_endpoint["AWS_DEFAULT_REGION"],
    )
    s3.create_bucket(Bucket="datasets")
    diabetes = load_diabetes(as_frame=True).frame.head(400)
    s3.put_object(Bucket="datasets", Key="diabetes/train.csv", Body=diabetes.to_csv(index=False).encode())
    s3_uri = "s3://datasets/diabetes/train.csv"
    outcome = runner.train(
        "diabetes-regression",
        CATALOG.models["diabetes-regression"],
        {"alpha": 0.5},
        mlflow_tracking_uri,
        dag_run_id="s3",
        workdir=REPO,
        dataset=s3_uri,
        base_env={**os.environ, **s3_endpoint},
    )
    run = _client(mlflow_tracking_uri).get_run(outcome.run_id)
    assert run.data.params["train_rows"] == "300"  # 75 % of 400
    assert run.data.params["alpha"] == "0.5"
    assert [json.loads(d.dataset.source)["uri"] for d in run.inputs.dataset_inputs] == [s3_uri]


def test_a_command_entrypoint_runs_with_the_contract_environment_only(
    mlflow_tracking_uri: str, broken_source: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=runner.log.name)
    record = tmp_path / "record.json"
    spec = _spec(["python", "train_cmd.py", str(record)], params={"lr": 0.1, "tag": None})
    base_env = {
        **os.environ,
        contract.RELOAD_TOKEN.name: "not-for-model-code",
        contract.SLACK_WEBHOOK_URL.name: "https://hooks.example/secret",
        contract.MLFLOW_TRACKING_USERNAME.name: "trainer",
        "AWS_REGION": "eu-west-1",
    }
    outcome = runner.train(
        "runner-command",
        spec,
        {"tag": "x"},
        mlflow_tracking_uri,
        dag_run_id="cmd",
        workdir=broken_source,
        base_env=base_env,
    )
    seen = json.loads(record.read_text())
    assert seen["argv"] == [str(record)]
    assert seen["cwd"] == str(broken_source / "broken")
    assert seen["params"] == {"lr": 0.1, "tag": "x"}
    assert seen["output_dir_exists"] is True
    env = set(seen["env"])
    assert {var.name for var in tc.TRAINING_VARS if var not in tc.OPTIONAL_VARS} <= env
    assert {contract.MLFLOW_TRACKING_USERNAME.name, "AWS_REGION", "PATH", "PYTHONPATH"} <= env
    # no dataset and no champion were given: their variables are unset
    assert not env & {contract.RELOAD_TOKEN.name, contract.SLACK_WEBHOOK_URL.name, *(v.name for v in tc.OPTIONAL_VARS)}
    assert outcome.metrics == {"score": 0.5}
    streamed = [r.getMessage() for r in caplog.records if r.name == runner.log.name]
    assert "stdout | training runner-command with ['lr', 'tag']" in streamed  # the output reaches the task log
    assert "stderr | a warning on stderr" in streamed
    run = _client(mlflow_tracking_uri).get_run(outcome.run_id)
    assert run.info.status == "FINISHED" and run.data.params == {"lr": "0.1", "tag": "x"}


def _failed_run(uri: str, model: str) -> Any:
    """The one run of `model`'s experiment: FAILED, with the reason tag."""
    client = _client(uri)
    experiment = client.get_experiment_by_name(names(model)["experiment"])
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    assert runs[0].info.status == "FAILED"
    return runs[0]


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        ("crash", ["exited with code 1", "last lines of stderr", "RuntimeError: boom: the data is bad"]),
        ("missing", ["exited with code 2", "module 'broken_model.steps' has no function 'missing'"]),
        ("no_model", ["no model was logged in the run"]),
        ("two_models", ["2 models were logged in the run", "'first'", "'second'", "log exactly one"]),
        ("no_signature", ["was logged without a signature and without an input example"]),
        ("no_input_example", ["was logged without an input example"]),
        ("no_metric", ["the gate metric 'score' was not logged in the run (logged metrics: other)"]),
    ],
)
def test_a_broken_entrypoint_fails_the_run_naming_the_problem(
    mlflow_tracking_uri: str, broken_source: Path, function: str, expected: list[str]
) -> None:
    model = f"runner-{function.replace('_', '-')}"
    with pytest.raises(runner.TrainingContractError) as info:
        runner.train(
            model,
            _spec(f"broken_model.steps:{function}"),
            None,
            mlflow_tracking_uri,
            dag_run_id="x",
            workdir=broken_source,
        )
    message = str(info.value)
    for text in expected:
        assert text in message
    if function == "no_input_example":
        assert "signature" not in message
    run = _failed_run(mlflow_tracking_uri, model)
    assert info.value.run_id == run.info.run_id
    assert message.startswith(f"training run {run.info.run_id}: ")
    assert run.data.tags[registry_tags.TAG_FAILURE] == message


def test_a_timeout_kills_the_whole_process_group(
    mlflow_tracking_uri: str, broken_source: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pid_file = tmp_path / "pids"
    spec = _spec("broken_model.steps:sleeper", params={"pid_file": str(pid_file)})
    with pytest.raises(runner.TrainingContractError) as info:
        runner.train(
            "runner-sleeper", spec, None, mlflow_tracking_uri, dag_run_id="x", workdir=broken_source, timeout=20
        )
    assert "did not finish within 20 s and its process group was killed" in str(info.value)
    leader, child = (int(pid) for pid in pid_file.read_text().split())
    for pid in (leader, child):  # the child ignored SIGTERM: SIGKILL ended it
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not [r for r in caplog.records if "still there after SIGKILL" in r.getMessage()]
    run = _failed_run(mlflow_tracking_uri, "runner-sleeper")
    assert "did not finish within 20 s" in run.data.tags[registry_tags.TAG_FAILURE]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"C": "high"}, "param 'C' must be float like its default 1.0; got str 'high'"),
        ({"max_iter": 2.5}, "param 'max_iter' must be int like its default 200; got float 2.5"),
        ({"max_iter": True}, "param 'max_iter' must be int like its default 200; got bool True"),
        ({"c": 1.0}, "param 'c' is not one of the model's params (known: C, max_iter)"),
        ({"C": [1.0]}, "param 'C' must be a string, number or boolean; got list"),
    ],
)
def test_bad_params_fail_before_any_run(mlflow_tracking_uri: str, params: dict[str, Any], expected: str) -> None:
    model = "runner-params"
    with pytest.raises(ValueError) as info:
        runner.train(
            model, CATALOG.models["iris-classifier"], params, mlflow_tracking_uri, dag_run_id="x", workdir=REPO
        )
    assert expected in str(info.value)
    assert _client(mlflow_tracking_uri).get_experiment_by_name(names(model)["experiment"]) is None


def test_the_runner_module_imports_no_airflow() -> None:
    import subprocess

    code = (
        "import sys; import mlops_tasks.runner; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('airflow', 'mlflow')))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "dags")])}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"
