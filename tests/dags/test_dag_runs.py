"""Real runs of the catalog's DAGs with `airflow dags test` (SQLite metadata DB) against a real MLflow server
(PostgreSQL + S3 artifacts on moto) and one real serving process per model, alerts going to a local webhook.

One journey through a catalog of three models (the two examples and a model that breaks the contract on demand),
with a snapshot of every model's alias, versions and served version after each DAG run. The serving processes start
before any version exists (as on a fresh platform) and are ready all the same (`/readyz`, the champion missing);
both examples train through the runner as separate processes, pass their gates and are served by their own
serving processes; a worse run of the regression model (direction min) is rejected against the champion scored on
the same held-out data and changes nothing; a failure after promotion rolls that model back and leaves the other
alone; a crashing entrypoint and one that logs neither a model nor the gate metric fail the run naming each problem,
alert once (no retry), mark the MLflow run FAILED and promote nothing; a manual rollback works on its own model
only. (The runner's own tests name every other broken contract one by one.)"""

from __future__ import annotations

import contextlib
import json
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlops_tasks import registry
from mlops_tasks import serving as serving_client
from mlops_tasks.pipelines import PREVIOUS_VERSION_XCOM_KEY

from devstack.catalog import DIABETES, IRIS, catalog_env, extended, local_catalog, write_catalog
from devstack.models import RegisteredVersion, register_again
from services.common import contract, registry_tags
from services.common.catalog import names
from services.common.registry_tags import GATE_REASON_TAG, GATE_TAG, previous_tag
from tests.dags.conftest import (
    TRAINED_AND_SERVED,
    AirflowHome,
    DagRunResult,
    Recorded,
    ReloadProxy,
    WebhookReceiver,
    running_serving,
)

pytestmark = [pytest.mark.servers, pytest.mark.slow]

BROKEN = "broken-model"
BROKEN_ENTRY = {
    "training": {
        "source": {"subdir": "tests/dags/broken_model"},
        "entrypoint": "broken_model.train:train",
        "params": {"mode": "crash"},
        "timeoutMinutes": 10,
    },
    "gate": {"metric": "score", "direction": "max", "threshold": 0.5},
}
EXAMPLES = (IRIS, DIABETES)
NOWHERE = "http://127.0.0.1:9"  # the broken model never gets as far as its serving
# mode -> what the failure names (in the task log, the alert and the MLflow run)
BROKEN_MODES = {
    "crash": ("the entrypoint broken_model.train:train exited with code 1", "RuntimeError: boom: the data is bad"),
    "nothing": (  # neither a model nor the gate metric: one run names both problems
        "no model was logged in the run",
        "the gate metric 'score' was not logged in the run (logged metrics: other)",
    ),
}


@dataclass
class Snapshot:
    """One DAG run and the state of every model right after it."""

    run: DagRunResult
    holders: dict[str, str | None]  # model -> version under champion
    versions: dict[str, list[str]]  # model -> registered versions
    served: dict[str, tuple[str | None, str | None]]  # model -> (alias, version) its own serving answers with
    alerts: list[dict[str, Any]]  # webhook bodies posted during the run
    reloads: dict[str, list[Recorded]]  # model -> reload requests its serving received during the run

    def events(self, event: str) -> list[str]:
        """The whole alerts (headline, fields, details) of one event, as JSON text."""
        return [json.dumps(body) for body in self.alerts if f"*{event}*" in str(body.get("text", ""))]


@dataclass
class Journey:
    tracking_uri: str
    serving_models: dict[str, str]  # model -> the model its serving process says it serves (GET /models)
    ready_before: dict[str, dict[str, Any]]  # model -> its serving's /readyz before any version existed
    steps: dict[str, Snapshot] = field(default_factory=dict)


def _state(uri: str, servings: dict[str, Any]) -> tuple[dict[str, str | None], dict[str, list[str]], dict[str, Any]]:
    client = registry.client(uri)
    holders = {m: registry.alias_holder(client, m, "champion") for m in (*EXAMPLES, BROKEN)}
    versions = {
        m: sorted((v.version for v in client.search_model_versions(f"name = '{m}'")), key=int)
        for m in (*EXAMPLES, BROKEN)
    }
    served: dict[str, tuple[str | None, str | None]] = {}
    for model, serving in servings.items():
        holder = holders[model]
        rows = registry.example_rows(uri, model, holder, 2) if holder else []
        served[model] = (
            serving_client.served_version(serving_client.predict(serving.base_url, rows)) if rows else (None, None)
        )
    return holders, versions, served


@pytest.fixture(scope="module")
def journey(
    airflow_home: AirflowHome,
    mlflow_tracking_uri: str,
    webhook: WebhookReceiver,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Journey]:
    tmp = tmp_path_factory.mktemp("journey")
    uri = mlflow_tracking_uri
    token = secrets.token_urlsafe(18)
    with contextlib.ExitStack() as stack:
        servings = {  # each waits for /readyz: 200 with no version in the registry
            m: stack.enter_context(running_serving(uri, m, tmp / f"serving-{m}.log", reload_token=token))
            for m in EXAMPLES
        }
        ready_before = {m: httpx.get(f"{s.base_url}/readyz", timeout=30).json() for m, s in servings.items()}
        proxies = {m: stack.enter_context(ReloadProxy(servings[m].base_url)) for m in EXAMPLES}
        served_models = {m: httpx.get(f"{s.base_url}/models", timeout=30).json()["model"] for m, s in servings.items()}
        # The catalog as the program writes it: each model with its own serving (reloads through a recording proxy).
        path = write_catalog(
            extended(local_catalog(), {BROKEN: BROKEN_ENTRY}),
            tmp / "catalog.json",
            {**{m: s.base_url for m, s in servings.items()}, BROKEN: NOWHERE},
            {**{m: p.url for m, p in proxies.items()}, BROKEN: NOWHERE},
        )
        env = {
            contract.MLFLOW_TRACKING_URI.name: uri,
            contract.RELOAD_TOKEN.name: token,
            contract.SLACK_WEBHOOK_URL.name: webhook.url,
            **catalog_env(path),
        }
        result = Journey(uri, served_models, ready_before)

        def step(name: str, dag_id: str, conf: dict[str, Any]) -> None:
            webhook.clear()
            marks = {m: len(p.records) for m, p in proxies.items()}
            run = airflow_home.dags_test(dag_id, conf, env)
            holders, versions, served = _state(uri, servings)
            reloads = {m: p.records[marks[m] :] for m, p in proxies.items()}
            result.steps[name] = Snapshot(run, holders, versions, served, list(webhook.received), reloads)

        step("iris", "train_iris_classifier", {})
        step("diabetes", "train_diabetes_regression", {})
        step("diabetes_worse", "train_diabetes_regression", {"alpha": 10.0})  # a much stronger penalty: worse
        proxies[IRIS].refuse_left = 1  # the next reload reaches serving but is answered 403
        step("iris_rolled_back", "train_iris_classifier", {})
        for mode in BROKEN_MODES:
            step(mode, "train_broken_model", {"mode": mode})
        step("manual", "rollback_iris_classifier", {"target_version": "2"})
        yield result


def test_both_examples_are_trained_gated_promoted_and_served_by_their_own_serving(journey: Journey) -> None:
    import mlflow

    assert journey.serving_models == {IRIS: IRIS, DIABETES: DIABETES}  # one serving process per model
    for ready in journey.ready_before.values():  # ready before any version existed: nothing to load
        assert (ready["ready"], ready["missing"], ready["loaded"]) == (True, ["champion"], {}), ready
    for model, step in ((IRIS, journey.steps["iris"]), (DIABETES, journey.steps["diabetes"])):
        run = step.run
        assert run.returncode == 0 and run.state == "success", run.explain()
        assert run.task_states == TRAINED_AND_SERVED, run.explain()
        assert run.xcoms[("register", "return_value")] == "1"
        assert step.served[model] == ("champion", "1")
        # Trained by the runner: the entrypoint ran as its own process, in the model's MLflow run.
        spec = local_catalog().models[model]
        entrypoint = spec.training.entrypoint
        assert f"running {entrypoint} in" in run.output and f"{entrypoint} ended with exit code 0" in run.output
        trained = run.xcoms[("train", "return_value")]
        tags = registry.client(journey.tracking_uri).get_run(trained["run_id"]).data.tags
        assert tags[registry_tags.TAG_MODEL] == model and tags[registry_tags.TAG_DAG_ID] == names(model)["dag_id"]
        assert tags[registry_tags.TAG_DAG_RUN_ID] == run.run_id and tags[GATE_TAG] == "passed"
        gate = run.xcoms[("quality_gate", "gate")]
        assert gate["passed"] and gate["direction"] == spec.gate.direction
        assert "no champion to compare with yet" in gate["reason"]
        [promoted] = step.events("model.promoted")
        assert f"{model} version 1 is now champion" in promoted
        assert step.events("airflow.task_failed") == []
        # Only this model's serving was told to reload.
        assert [r.path for r in step.reloads[model]] == [contract.reload_path("champion")]
        assert all(not step.reloads[other] for other in EXAMPLES if other != model)
    # The first model stayed as it was while the second was trained.
    assert journey.steps["diabetes"].holders[IRIS] == "1" and journey.steps["diabetes"].served[IRIS] == (
        "champion",
        "1",
    )
    assert journey.steps["iris"].holders[DIABETES] is None

    mlflow.set_tracking_uri(journey.tracking_uri)
    iris = mlflow.models.get_model_info(f"models:/{IRIS}/1")
    assert iris.signature.inputs.input_names()[0] == "sepal length (cm)" and iris.saved_input_example_info
    diabetes = mlflow.models.get_model_info(f"models:/{DIABETES}/1")
    assert "python_function" in diabetes.flavors and "sklearn" not in diabetes.flavors  # a pyfunc PythonModel


def test_a_worse_regression_run_is_rejected_against_the_champion_and_changes_nothing(journey: Journey) -> None:
    before, step = journey.steps["diabetes"], journey.steps["diabetes_worse"]
    run = step.run
    assert run.returncode == 0 and run.state == "success", run.explain()  # a rejection is not an error
    assert run.task_states["quality_gate"] == "success"
    for task in ("register", "wait_until_ready", "promote", "reload_serving", "verify_serving", "rollback"):
        assert run.task_states[task] == "skipped", run.explain()
    gate = run.xcoms[("quality_gate", "gate")]
    champion_rmse = before.run.xcoms[("train", "return_value")]["metrics"]["test_rmse"]
    # The champion (version 1) was scored by the new run's own code on the same held-out rows: the same RMSE.
    assert gate["champion_version"] == "1" and gate["champion"] == pytest.approx(champion_rmse)
    assert gate["candidate"] > gate["champion"] and gate["candidate"] < 70.0  # below the threshold, but worse
    assert not gate["passed"] and "does not beat the champion" in gate["reason"] and "lower is better" in gate["reason"]
    assert gate["reason"] in run.output
    trained = run.xcoms[("train", "return_value")]
    assert trained["metrics"]["champion.test_rmse"] == gate["champion"]
    tags = registry.client(journey.tracking_uri).get_run(trained["run_id"]).data.tags
    assert tags[registry_tags.TAG_CHAMPION] == f"models:/{DIABETES}/1"
    assert tags[GATE_TAG] == "rejected" and tags[GATE_REASON_TAG] == gate["reason"]
    # Nothing changed: versions, aliases, what each serving answers; nobody was told to reload.
    assert (step.holders, step.versions, step.served) == (before.holders, before.versions, before.served)
    assert all(not reloads for reloads in step.reloads.values())
    [rejected] = step.events("model.rejected")
    assert f"candidate of {DIABETES} rejected, champion unchanged" in rejected
    assert step.events("model.promoted") == []


def test_a_failure_after_promotion_rolls_that_model_back_and_leaves_the_other_alone(journey: Journey) -> None:
    step = journey.steps["iris_rolled_back"]
    run = step.run
    assert run.returncode != 0 and run.state == "failed", run.explain()
    gate = run.xcoms[("quality_gate", "gate")]
    assert gate["passed"] and "improvement +0.0000" in gate["reason"]  # as good as the champion: minImprovement 0
    assert run.task_states["promote"] == "success"
    assert run.task_states["reload_serving"] == "failed"
    assert run.task_states["verify_serving"] == "upstream_failed"
    assert run.task_states["rollback"] == "success", run.explain()
    assert run.task_states["fail_run"] == "failed"
    assert run.xcoms[("promote", PREVIOUS_VERSION_XCOM_KEY)] == {
        "model": IRIS,
        "alias": "champion",
        "previous_version": "1",
        "new_version": "2",
    }
    # Serving really had switched to version 2 before the failure, and the rollback restored version 1.
    reloads = step.reloads[IRIS]
    assert [r.returned_status for r in reloads] == [403, 200], reloads
    assert reloads[0].upstream_status == 200 and '"2"' in reloads[0].upstream_body
    assert step.holders[IRIS] == "1" and step.versions[IRIS] == ["1", "2"] and step.served[IRIS] == ("champion", "1")
    client = registry.client(journey.tracking_uri)
    assert client.get_model_version(IRIS, "2").tags[previous_tag("champion")] == "1"
    # The other model: untouched.
    assert step.holders[DIABETES] == "1" and step.served[DIABETES] == ("champion", "1") and not step.reloads[DIABETES]
    assert any('"*task*\\nreload_serving"' in alert for alert in step.events("airflow.task_failed"))
    [rolled_back] = step.events("model.rolled_back")
    assert "rolled back to version 1" in rolled_back


@pytest.mark.parametrize("mode", sorted(BROKEN_MODES))
def test_a_broken_entrypoint_fails_the_run_naming_the_problem_alerts_and_promotes_nothing(
    journey: Journey, mode: str
) -> None:
    step, before = journey.steps[mode], journey.steps["iris_rolled_back"]
    run = step.run
    problem, detail = BROKEN_MODES[mode]
    assert run.returncode != 0 and run.state == "failed", run.explain()
    assert run.task_states["train"] == "failed" and run.task_states["fail_run"] == "failed", run.explain()
    for task in ("evaluate", "quality_gate", "register", "promote"):
        assert run.task_states[task] == "upstream_failed", run.explain()
    assert problem in run.output
    # One alert, for the first and only try (a broken contract is not retried), naming the problem.
    [alert] = step.events("airflow.task_failed")
    assert '"*task*\\ntrain"' in alert and '"*try*\\n1"' in alert
    assert problem in alert and detail in alert
    # The MLflow run is marked FAILED with the reason.
    client = registry.client(journey.tracking_uri)
    experiment = client.get_experiment_by_name(names(BROKEN)["experiment"])
    [mlflow_run] = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`{registry_tags.TAG_DAG_RUN_ID}` = '{run.run_id}'"
    )
    assert mlflow_run.info.status == "FAILED" and problem in mlflow_run.data.tags[registry_tags.TAG_FAILURE]
    # Nothing promoted, nothing else touched.
    assert step.versions[BROKEN] == [] and step.holders[BROKEN] is None
    assert (step.holders, step.served) == (before.holders, before.served)
    assert all(not reloads for reloads in step.reloads.values())


def test_manual_rollback_works_on_its_own_model_only(journey: Journey) -> None:
    step = journey.steps["manual"]
    run = step.run
    assert run.returncode == 0 and run.state == "success", run.explain()
    assert set(run.task_states.values()) == {"success"}, run.explain()
    assert step.holders[IRIS] == "2" and step.served[IRIS] == ("champion", "2")
    assert [r.path for r in step.reloads[IRIS]] == [contract.reload_path("champion")]
    assert step.holders[DIABETES] == "1" and step.served[DIABETES] == ("champion", "1") and not step.reloads[DIABETES]
    [announced] = step.events("model.manual_rollback")
    assert f"{IRIS}@champion manually rolled back from version 1 to version 2" in announced


def test_verification_sees_the_promoted_alias_whatever_the_routing(
    mlflow_tracking_uri: str, trained_iris: RegisteredVersion, tmp_path: Path
) -> None:
    """Under canary routing with 0 % to the challenger, the routed `/predict` never shows the
    challenger; the DAG's verification asks the variant itself and sees its new version."""
    from mlops_tasks.endpoints import Endpoints

    from devstack.serving import serving_service

    model = f"canary-{uuid.uuid4().hex[:6]}"
    register_again(mlflow_tracking_uri, trained_iris, model_name=model, alias="champion")
    challenger = register_again(mlflow_tracking_uri, trained_iris, model_name=model, alias="challenger")
    rows = registry.example_rows(mlflow_tracking_uri, model, challenger.version, 2)
    routing = {"mode": "canary", "primary": "champion", "challenger": "challenger", "percent": 0}
    with serving_service(
        mlflow_tracking_uri,
        model,
        aliases=("champion", "challenger"),
        routing=routing,
        poll_seconds=3600,
        log_path=tmp_path / "serving.log",
        start_timeout=180,
    ) as serving:
        routed = {
            serving_client.served_version(serving_client.predict(serving.base_url, rows[:1]))[0] for _ in range(20)
        }
        assert routed == {"champion"}
        endpoints = Endpoints(mlflow_tracking_uri, serving.base_url, serving.base_url, serving.reload_token)
        answer = serving_client.wait_until_served(
            endpoints, "challenger", challenger.version, rows, timeout_s=30, interval_s=0
        )
        assert serving_client.served_version(answer) == ("challenger", challenger.version)
