"""The API as a real process on PostgreSQL against stand-ins for Airflow and MLflow: tokens and scopes are
enforced, requests are checked against the catalog (4xx naming the field), an Idempotency-Key starts one DAG run,
the reconciler carries a training through its states to the promoted version with one event per change, cancel
and rollback run through Airflow, an unreachable dependency is a 503 naming it, and state survives restarts
and is shared by two API processes (events too, resumable with Last-Event-ID)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import pytest

from tests.services.api.conftest import (
    ApiProcess,
    SseReader,
    read_events,
    start_training,
    token_for,
    wait_until,
)
from tests.services.api.fakes import FakeAirflow, FakeMlflow

pytestmark = [pytest.mark.servers]

IRIS_DAG = "train_iris_classifier"


def _dag_run(fake: FakeAirflow, training: dict[str, Any]) -> str:
    return str(training["airflow"]["dag_run_id"])


def test_tokens_and_scopes_are_enforced(start_api: Callable[..., ApiProcess]) -> None:
    api = start_api()
    with api.client() as anonymous:
        answer = anonymous.get("/v1/trainings")
        assert answer.status_code == 401 and answer.json()["field"] == "Authorization"
        assert answer.headers["www-authenticate"] == "Bearer"
    with api.client("mlops_0123456789ab_" + "x" * 43) as forged:
        assert forged.get("/v1/trainings").status_code == 401
    reader = token_for(api, "read", name="reader")
    with api.client(reader) as client:
        assert client.get("/v1/trainings").status_code == 200
        refused = start_training(client)
        assert refused.status_code == 403 and "'train'" in refused.json()["detail"]
        assert client.post("/v1/tokens", json={"name": "x", "scopes": ["read"]}).status_code == 403
    with api.admin() as admin:
        listed = admin.get("/v1/tokens").json()["tokens"]
        assert [t["name"] for t in listed] == ["reader"] and "token" not in listed[0]
        assert "hash" not in str(listed)
        bad = admin.post("/v1/tokens", json={"name": "x", "scopes": ["root"]})
        assert bad.status_code == 422 and bad.json()["field"] == "scopes.0"
        token_id = reader.split("_")[1]
        assert admin.delete(f"/v1/tokens/{token_id}").json()["revoked_at"] is not None
        assert admin.delete("/v1/tokens/000000000000").status_code == 404
    with api.client(reader) as client:
        assert client.get("/v1/trainings").status_code == 401  # revoked at once


def test_requests_are_checked_against_the_catalog(
    start_api: Callable[..., ApiProcess], fake_airflow: FakeAirflow
) -> None:
    api = start_api()
    with api.client(token_for(api, "train", "read")) as client:
        unknown = start_training(client, "no-such-model")
        assert unknown.status_code == 404 and unknown.json()["field"] == "model"
        assert "iris-classifier" in unknown.json()["detail"]
        wrong_type = start_training(client, params={"C": "strong"})
        assert wrong_type.status_code == 422 and wrong_type.json()["field"] == "params.C"
        assert "float" in wrong_type.json()["detail"]
        unknown_param = start_training(client, params={"gamma": 1})
        assert unknown_param.status_code == 422 and unknown_param.json()["field"] == "params.gamma"
        nested = start_training(client, params={"C": [1]})
        assert nested.status_code == 422 and nested.json()["field"].startswith("params.C")
        profile = start_training(client, profile="huge")
        assert profile.status_code == 422 and profile.json()["field"] == "profile"
        no_key = client.post("/v1/trainings", json={"model": "iris-classifier"})
        assert no_key.status_code == 422 and no_key.json()["field"] == "Idempotency-Key"
        bad_key = start_training(client, key="has space")
        assert bad_key.status_code == 400 and bad_key.json()["field"] == "Idempotency-Key"
        malformed = client.post(
            "/v1/trainings", content=b"{", headers={"Idempotency-Key": "k", "Content-Type": "application/json"}
        )
        assert malformed.status_code == 400 and malformed.json()["field"] == "body"
        assert client.get("/v1/trainings/not-a-uuid").json()["field"] == "id"
        assert client.get(f"/v1/trainings/{'0' * 8}-0000-0000-0000-{'0' * 12}").status_code == 404
    assert fake_airflow.triggered() == []


def test_idempotency_key_starts_one_run(start_api: Callable[..., ApiProcess], fake_airflow: FakeAirflow) -> None:
    api = start_api()
    key = secrets.token_hex(8)
    with api.client(token_for(api, "train", "read")) as client:
        first = start_training(client, key=key, params={"C": 2})
        assert first.status_code == 202, first.text
        body = first.json()
        assert first.headers["location"] == f"/v1/trainings/{body['id']}"
        assert body["state"] == "queued" and body["params"] == {"C": 2}
        again = start_training(client, key=key, params={"C": 2})
        assert again.status_code == 202 and again.json()["id"] == body["id"]
        assert again.headers["idempotent-replayed"] == "true"
        other = start_training(client, key=key, params={"C": 3})
        assert other.status_code == 409 and other.json()["field"] == "Idempotency-Key"
    runs = fake_airflow.triggered()
    assert len(runs) == 1
    assert (runs[0].dag_id, runs[0].dag_run_id) == (IRIS_DAG, body["airflow"]["dag_run_id"])
    assert runs[0].conf == {"C": 2.0}  # the model's params as the DAG's params, typed like their defaults
    # another caller's same key is another run
    with api.client(token_for(api, "train", name="other")) as client:
        assert start_training(client, key=key, params={"C": 2}).json()["id"] != body["id"]
    assert len(fake_airflow.triggered()) == 2


def test_training_goes_through_its_states_to_the_promoted_version(
    start_api: Callable[..., ApiProcess], fake_airflow: FakeAirflow, fake_mlflow: FakeMlflow
) -> None:
    api = start_api()
    with api.client(token_for(api, "train", "read")) as client:
        training = start_training(client).json()
        dag_run = _dag_run(fake_airflow, training)
        follow = SseReader(client, f"/v1/trainings/{training['id']}/events")
        follow.wait_for(lambda ev: [e["event"] for e in ev] == ["training.queued"])
        fake_airflow.set_state(dag_run, "running")
        follow.wait_for(lambda ev: ev[-1]["event"] == "training.running")
        run_id = fake_mlflow.training_run("iris-classifier", dag_run, {"test_accuracy": 0.97}, gate="passed")
        follow.wait_for(lambda ev: ev[-1]["data"]["run"]["mlflow_run_id"] == run_id)
        version = fake_mlflow.register("iris-classifier", run_id, alias="champion")
        follow.wait_for(lambda ev: ev[-1]["data"]["run"]["promoted"])
        fake_airflow.set_state(dag_run, "success")
        events = follow.wait_for(lambda ev: ev[-1]["event"] == "training.success")
        follow.close()
        final = client.get(f"/v1/trainings/{training['id']}").json()
    assert [e["event"] for e in events][:2] == ["training.queued", "training.running"]
    assert set(e["event"] for e in events[2:-1]) == {"training.updated"}
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    assert final["state"] == "success" and final["registered_version"] == version
    assert final["aliases"] == ["champion"] and final["promoted"] is True
    assert final["metrics"] == {"test_accuracy": 0.97} and final["gate"]["decision"] == "passed"
    assert final["started_at"] and final["finished_at"]
    assert events[-1]["data"]["run"] == final
    # the run's stream ends after its final state, also when read again later
    with api.client(token_for(api, "read")) as reader:
        again = read_events(reader, f"/v1/trainings/{training['id']}/events")
        assert [e["id"] for e in again] == [e["id"] for e in events]
        assert read_events(reader, f"/v1/trainings/{training['id']}/events", after=events[-1]["id"]) == []


def test_failure_cancel_and_listing(start_api: Callable[..., ApiProcess], fake_airflow: FakeAirflow) -> None:
    api = start_api()
    with api.client(token_for(api, "train", "read")) as client:
        failing = start_training(client).json()
        fake_airflow.set_state(_dag_run(fake_airflow, failing), "failed", failed_tasks=["train"])
        failed = wait_until(
            lambda: (b := client.get(f"/v1/trainings/{failing['id']}").json())["state"] == "failed" and b,
            what="the training failed",
        )
        assert "failed tasks: train" in failed["error"]
        cancelled_run = start_training(client, "diabetes-regressor").json()
        cancelled = client.post(f"/v1/trainings/{cancelled_run['id']}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
        assert next(r for r in fake_airflow.triggered() if r.dag_id == "train_diabetes_regressor").state == "failed"
        again = client.post(f"/v1/trainings/{cancelled_run['id']}/cancel")
        assert again.status_code == 409 and "cancelled" in again.json()["detail"]
        third = start_training(client).json()
        # the listing: newest first, paginated, filtered
        page = client.get("/v1/trainings", params={"limit": 2}).json()
        assert [t["id"] for t in page["items"]] == [third["id"], cancelled_run["id"]]
        rest = client.get("/v1/trainings", params={"limit": 2, "cursor": page["next_cursor"]}).json()
        assert [t["id"] for t in rest["items"]] == [failing["id"]] and rest["next_cursor"] is None
        by_model = client.get("/v1/trainings", params={"model": "diabetes-regressor"}).json()["items"]
        assert [t["id"] for t in by_model] == [cancelled_run["id"]]
        by_state = client.get("/v1/trainings", params={"state": "failed"}).json()["items"]
        assert [t["id"] for t in by_state] == [failing["id"]]
        assert client.get("/v1/trainings", params={"state": "done"}).json()["field"] == "state"
        assert client.get("/v1/trainings", params={"cursor": "garbage"}).json()["field"] == "cursor"
    # a cancelled run stays cancelled whatever Airflow says later
    fake_airflow.set_state(cancelled_run["airflow"]["dag_run_id"], "success")
    with api.admin() as admin:
        events = read_events(admin, f"/v1/trainings/{cancelled_run['id']}/events")
    assert [e["event"] for e in events] == ["training.queued", "training.cancelled"]


def test_rollback_needs_deploy_and_runs_the_rollback_dag(
    start_api: Callable[..., ApiProcess], fake_airflow: FakeAirflow, fake_mlflow: FakeMlflow
) -> None:
    api = start_api()
    fake_mlflow.register("iris-classifier", None)
    fake_mlflow.register("iris-classifier", None, alias="champion")
    with api.client(token_for(api, "train", "read")) as trainer:
        denied = trainer.post("/v1/models/iris-classifier/rollback", json={}, headers={"Idempotency-Key": "r1"})
        assert denied.status_code == 403
    with api.client(token_for(api, "deploy", "read")) as deployer:
        answer = deployer.post(
            "/v1/models/iris-classifier/rollback", json={"version": "1"}, headers={"Idempotency-Key": "r1"}
        )
        assert answer.status_code == 202, answer.text
        rollback = answer.json()
        assert answer.headers["location"] == f"/v1/rollbacks/{rollback['id']}"
        (run,) = fake_airflow.triggered()
        assert run.dag_id == "rollback_iris_classifier"
        assert run.conf == {"alias": "champion", "target_version": "1"}
        fake_mlflow.model_aliases["iris-classifier"]["champion"] = "1"
        fake_airflow.set_state(run.dag_run_id, "success")
        events = read_events(deployer, f"/v1/rollbacks/{rollback['id']}/events")
        assert [e["event"] for e in events] == ["rollback.queued", "rollback.success"]
        assert events[-1]["data"]["run"]["version"] == "1"
        bad = deployer.post(
            "/v1/models/iris-classifier/rollback", json={"version": "one"}, headers={"Idempotency-Key": "r2"}
        )
        assert bad.status_code == 422 and bad.json()["field"] == "version"
        assert deployer.post("/v1/models/nope/rollback", headers={"Idempotency-Key": "r3"}).status_code == 404
        models = {m["name"]: m for m in deployer.get("/v1/models").json()["models"]}
    iris = models["iris-classifier"]
    assert iris["aliases"] == {"champion": "1"} and [v["version"] for v in iris["versions"]] == ["2", "1"]
    assert iris["dag_id"] == IRIS_DAG and iris["routing"]["mode"] == "fixed" and iris["serving"]["ready"] is None
    assert models["diabetes-regressor"]["versions"] == []


def test_unreachable_dependencies_are_503_naming_them(
    start_api: Callable[..., ApiProcess], fake_airflow: FakeAirflow, fake_mlflow: FakeMlflow
) -> None:
    api = start_api()
    with api.client(token_for(api, "train", "read")) as client:
        fake_airflow.expire_tokens()  # Airflow restarted: the API logs in again by itself
        assert start_training(client).status_code == 202
        fake_airflow.stop()
        key = secrets.token_hex(8)
        down = start_training(client, key=key)
        assert down.status_code == 503 and down.json()["dependency"] == "airflow"
        assert "airflow is unavailable" in down.json()["detail"]
        fake_mlflow.stop()
        models = client.get("/v1/models")
        assert models.status_code == 503 and models.json()["dependency"] == "mlflow"
        assert client.get("/v1/trainings").status_code == 200  # the API's own state needs neither
        ready = client.get("/readyz").json()
        assert ready["ready"] and not ready["airflow"] and not ready["mlflow"]
        fake_airflow.start()
        # the failed request left nothing behind: the same key now starts the run
        assert start_training(client, key=key).headers.get("idempotent-replayed") is None


def test_state_survives_restarts_and_is_shared_by_two_processes(
    start_api: Callable[..., ApiProcess], fake_airflow: FakeAirflow, fake_mlflow: FakeMlflow
) -> None:
    first, second = start_api(), start_api()
    token = token_for(first, "train", "read")
    with first.client(token) as one, second.client(token) as two:
        follower = SseReader(one, "/v1/events")
        created = start_training(two).json()
        events = follower.wait_for(lambda ev: any(e["data"]["run_id"] == created["id"] for e in ev))
        assert events[-1]["event"] == "training.queued"
        follower.close()
        seen = events[-1]["id"]
        dag_run = created["airflow"]["dag_run_id"]
        fake_airflow.set_state(dag_run, "running")
        wait_until(lambda: two.get(f"/v1/trainings/{created['id']}").json()["state"] == "running", what="running")
        # resume on the other process after the disconnect: exactly the missed events
        resumed = SseReader(two, "/v1/events", headers={"Last-Event-ID": str(seen)})
        missed = resumed.wait_for(lambda ev: bool(ev))
        resumed.close()
        assert [e["event"] for e in missed] == ["training.running"] and missed[0]["id"] > seen
    # both processes stop mid-run; the run ends meanwhile; a new process reports the right final state
    first.process.stop()
    second.process.stop()
    run_id = fake_mlflow.training_run("iris-classifier", dag_run, {"test_accuracy": 0.95}, gate="passed")
    fake_mlflow.register("iris-classifier", run_id, alias="champion")
    fake_airflow.set_state(dag_run, "success")
    third = start_api()
    with third.client(token) as client:
        final = wait_until(
            lambda: (b := client.get(f"/v1/trainings/{created['id']}").json())["state"] == "success" and b,
            what="the final state after the restart",
        )
        assert final["promoted"] and final["registered_version"] == "1"
        events = read_events(client, f"/v1/trainings/{created['id']}/events")
    assert [e["event"] for e in events] == ["training.queued", "training.running", "training.success"]
