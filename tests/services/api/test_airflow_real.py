"""Acceptance with the real components, all started here on loopback: a real Airflow (API server, scheduler and DAG
processor, LocalExecutor, metadata on the local PostgreSQL) running the DAGs generated from the catalog, a real
MLflow on PostgreSQL with moto S3, the model's real serving process, and API processes on their own database.

One training requested through the API runs the model's `train_<model>` DAG to the promoted version; the same
Idempotency-Key sent to the other API process returns the same training and Airflow holds exactly one DAG run; a
client following events on one process sees the training created on the other; both API processes are stopped
mid-run and a new one reports the right final state; resuming its stream with Last-Event-ID loses and repeats
nothing; scopes are enforced; an unknown model and a param of the wrong type are 4xx naming the field."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from devstack.airflow_services import AIRFLOW_USER, airflow_services
from devstack.api import api_process, token_for
from devstack.catalog import IRIS, local_catalog, write_catalog
from devstack.postgres import fresh_database
from devstack.procs import DevstackError, http_ok
from devstack.serving import serving_service
from devstack.stack import mlflow_stack
from services.common import contract
from services.common.catalog import names
from tests.services.api.conftest import SseReader, read_events, start_training, wait_until

pytestmark = [pytest.mark.servers, pytest.mark.slow]

DAG_TIMEOUT = 900.0


@dataclass(frozen=True)
class RealStack:
    tracking_uri: str
    serving_url: str
    catalog: Path
    airflow_url: str
    airflow_password: str
    api_database: str
    logs: Path


@pytest.fixture(scope="module")
def real_stack(tmp_path_factory: pytest.TempPathFactory, postgres_available: tuple[str, int]) -> Iterator[RealStack]:
    logs = tmp_path_factory.mktemp("real-stack")
    catalog = local_catalog()
    selected = catalog.model_copy(update={"models": {IRIS: catalog.models[IRIS]}})
    spec = selected.models[IRIS]
    token = secrets.token_urlsafe(18)
    try:
        with contextlib.ExitStack() as stack:
            mlflow = stack.enter_context(mlflow_stack(log_dir=logs, db_prefix="api_accept"))
            serving = stack.enter_context(
                serving_service(
                    mlflow.tracking_uri,
                    IRIS,
                    aliases=spec.serving.aliases,
                    routing=spec.serving.routing.model_dump(mode="json"),
                    reload_token=token,
                    log_path=logs / "serving.log",
                    wait_for="healthz",
                    start_timeout=240,
                )
            )
            catalog_path = write_catalog(selected, logs / "catalog.json", {IRIS: serving.base_url})
            extra = {
                contract.MLFLOW_TRACKING_URI.name: mlflow.tracking_uri,
                contract.RELOAD_TOKEN.name: token,
                contract.MODEL_CATALOG.name: str(catalog_path),
            }
            services = stack.enter_context(airflow_services(logs / "airflow-home", logs, extra))
            airflow_url, password = services.url, services.password
            api_db = stack.enter_context(fresh_database("api_accept_api")).rsplit("/", 1)[1]
            yield RealStack(mlflow.tracking_uri, serving.base_url, catalog_path, airflow_url, password, api_db, logs)
    except DevstackError as exc:
        pytest.fail(f"the real stack could not start: {exc}")


def _airflow_runs(stack: RealStack, dag_id: str) -> list[dict[str, object]]:
    with httpx.Client(base_url=stack.airflow_url, timeout=30) as client:
        token = client.post("/auth/token", json={"username": AIRFLOW_USER, "password": stack.airflow_password})
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        answer = client.get(f"/api/v2/dags/{dag_id}/dagRuns", headers=headers)
    assert answer.status_code == 200, answer.text
    return list(answer.json()["dag_runs"])


def test_a_training_requested_through_the_api_runs_the_dag_to_the_promoted_version(real_stack: RealStack) -> None:
    settings = {
        "database": real_stack.api_database,
        "airflow_url": real_stack.airflow_url,
        "tracking_uri": real_stack.tracking_uri,
        "catalog": real_stack.catalog,
        "airflow_user": (AIRFLOW_USER, real_stack.airflow_password),
        "reconcile_seconds": 1.0,
    }
    admin_token = secrets.token_urlsafe(32)
    logs = real_stack.logs
    dag_id = names(IRIS)["dag_id"]
    wait_until(lambda: http_ok(f"{real_stack.airflow_url}/api/v2/monitor/health"), what="Airflow healthy")
    with (
        api_process(logs / "api-a.log", admin_token=admin_token, **settings) as first,
        api_process(logs / "api-b.log", admin_token=admin_token, **settings) as second,
    ):
        trainer, reader = token_for(first, "train", "read"), token_for(first, "read", name="reader")
        with first.client(reader) as read_only:
            assert start_training(read_only).status_code == 403
        with first.client(trainer) as one, second.client(trainer) as two:
            unknown = start_training(one, "no-such-model")
            assert unknown.status_code == 404 and unknown.json()["field"] == "model"
            wrong = start_training(one, params={"C": "strong"})
            assert wrong.status_code == 422 and wrong.json()["field"] == "params.C"
            # the DAG processor must have parsed the generated DAGs before a run can start
            wait_until(lambda: start_training(one, key="probe", params={"C": "x"}).status_code == 422, what="API up")
            follower = SseReader(one, "/v1/events")
            key = secrets.token_hex(8)
            created = wait_until(
                lambda: (r := start_training(two, key=key, params={"C": 0.5})).status_code == 202 and r,
                timeout=180,
                what="the DAG known to Airflow",
            ).json()
            again = start_training(one, key=key, params={"C": 0.5})
            assert again.status_code == 202 and again.json()["id"] == created["id"]
            assert again.headers["idempotent-replayed"] == "true"
            seen = follower.wait_for(lambda ev: any(e["data"]["run_id"] == created["id"] for e in ev))
            follower.close()
            mine = [e for e in seen if e["data"]["run_id"] == created["id"]]
            assert mine[0]["event"] == "training.queued"
            wait_until(
                lambda: one.get(f"/v1/trainings/{created['id']}").json()["state"] == "running",
                timeout=300,
                what="the training running",
            )
            last_seen = mine[0]["id"]
    # both API processes are gone while the DAG runs; a new one takes over from the database
    with api_process(logs / "api-c.log", admin_token=admin_token, **settings) as third, third.client(trainer) as client:
        final = wait_until(
            lambda: (
                (b := client.get(f"/v1/trainings/{created['id']}").json())["state"]
                in ("success", "failed", "cancelled")
                and b
            ),
            timeout=DAG_TIMEOUT,
            what="the training's final state",
        )
        assert final["state"] == "success", (final, third.process.log_tail())
        assert final["promoted"] and final["registered_version"] == "1" and "champion" in final["aliases"]
        assert final["gate"]["decision"] == "passed" and "test_accuracy" in final["metrics"]
        assert final["mlflow_run_id"]
        resumed = read_events(client, f"/v1/trainings/{created['id']}/events", after=last_seen)
        everything = read_events(client, f"/v1/trainings/{created['id']}/events")
        models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert [e["id"] for e in everything] == [mine[0]["id"]] + [e["id"] for e in resumed]
    types = [e["event"] for e in everything]
    assert types[0] == "training.queued" and "training.running" in types and types[-1] == "training.success"
    assert everything[-1]["data"]["run"]["promoted"] is True
    runs = _airflow_runs(real_stack, dag_id)
    assert [r["dag_run_id"] for r in runs] == [created["airflow"]["dag_run_id"]]
    assert runs[0]["state"] == "success" and runs[0]["conf"] == {"C": 0.5}
    assert models[IRIS]["aliases"]["champion"] == "1" and models[IRIS]["serving"]["ready"] is True
