"""The first training on a fresh platform for a model routed as the prod stack routes iris: a canary with 10% to
`challenger`, which no training ever promotes. The real training DAG (`airflow dags test`, SQLite metadata DB) runs
against a real MLflow server (PostgreSQL + S3 artifacts on moto) and a serving process started BEFORE any version of
the model existed, as the pods of a first `pulumi up` are. (The fixed-routing examples go the same way in the
journey of `test_dag_runs`, whose serving processes also start before any version and only load on the DAG's
reload.)

The serving process is ready with nothing in the registry (what the Kubernetes readiness probe, hence the rollout
and `pulumi up`, waits for) and answers predictions 503 with Retry-After naming both missing aliases; the DAG run
promotes version 1, reloads serving and verifies it, and announces it; after it every request is answered by the
champion, the challenger still missing. Then a challenger version is registered and its alias set: within a few of
the watcher's polls it takes its 10% (exactly the clients the canary's hash sends to it).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from mlops_tasks import registry
from mlops_tasks import serving as serving_client

from devstack.catalog import IRIS, catalog_env, extended, local_catalog, write_catalog
from devstack.models import RegisteredVersion, register_again
from services.common import contract
from services.common.catalog import Catalog, names
from services.serving.routing import client_point
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

MODEL = f"fresh-canary-{secrets.token_hex(3)}"  # never registered before this module
ROUTING: dict[str, Any] = {"mode": "canary", "primary": "champion", "challenger": "challenger", "percent": 10}
POLL_SECONDS = 2.0  # the watcher, for the challenger that appears
CLIENTS = [f"client-{i}" for i in range(100)]


@dataclass
class Platform:
    ready_before: dict[str, Any]  # /readyz before any version existed
    ready_before_status: int
    refused: httpx.Response  # POST /predict before any version existed
    run: DagRunResult
    reloads: list[Recorded]  # what the DAG's reload got from serving
    alerts: list[str]
    routed: dict[str, tuple[str | None, str | None]]  # client id -> (alias, version) of POST /predict after the run
    ready_after: dict[str, Any]
    challenger: str  # the challenger's version
    routed_with_challenger: dict[str, tuple[str | None, str | None]]
    ready_with_challenger: dict[str, Any]


def _catalog() -> Catalog:
    iris = local_catalog().models[IRIS].model_dump(mode="json", by_alias=True, exclude_none=True)
    catalog = extended(local_catalog(), {MODEL: {**iris, "serving": {**iris["serving"], "routing": ROUTING}}})
    return catalog.model_copy(update={"models": {MODEL: catalog.models[MODEL]}})


def _routed(base_url: str, rows: list[dict[str, Any]]) -> dict[str, tuple[str | None, str | None]]:
    """The (alias, version) answering each client's `POST /predict`, as any client calls it."""
    with httpx.Client(timeout=30) as client:
        return {
            cid: serving_client.served_version(
                client.post(f"{base_url}/predict", json={"rows": rows}, headers={"X-Client-Id": cid}).json()
            )
            for cid in CLIENTS
        }


@pytest.fixture(scope="module")
def platform(
    airflow_home: AirflowHome,
    mlflow_tracking_uri: str,
    webhook: WebhookReceiver,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Platform]:
    tmp = tmp_path_factory.mktemp("fresh-platform")
    uri, token = mlflow_tracking_uri, secrets.token_urlsafe(18)
    catalog = _catalog()
    with (
        running_serving(  # waits for /readyz: 200
            uri,
            MODEL,
            tmp / "serving.log",
            reload_token=token,
            aliases=tuple(catalog.models[MODEL].serving.aliases),
            routing=ROUTING,
            poll_seconds=POLL_SECONDS,
        ) as serving,
        ReloadProxy(serving.base_url) as proxy,
    ):
        base = serving.base_url
        ready_before = httpx.get(f"{base}/readyz", timeout=30)
        refused = httpx.post(f"{base}/predict", json={"rows": [{"x": 1.0}]}, timeout=30)
        path = write_catalog(catalog, tmp / "catalog.json", {MODEL: base}, {MODEL: proxy.url})
        env = {
            contract.MLFLOW_TRACKING_URI.name: uri,
            contract.RELOAD_TOKEN.name: token,
            contract.SLACK_WEBHOOK_URL.name: webhook.url,
            **catalog_env(path),
        }
        webhook.clear()
        run = airflow_home.dags_test(names(MODEL)["dag_id"], {}, env)
        alerts = [json.dumps(body) for body in webhook.received]
        rows = registry.example_rows(uri, MODEL, "1", 1)
        routed = _routed(base, rows)
        ready_after = httpx.get(f"{base}/readyz", timeout=30).json()

        # A challenger appears (a second version of the trained model, its alias set): the watcher picks it up.
        first = registry.client(uri).get_model_version(MODEL, "1")
        trained = RegisteredVersion(MODEL, "1", str(first.run_id), str(first.source), str(first.source))
        challenger = register_again(uri, trained, alias="challenger")
        set_at = time.monotonic()
        expected = {cid: "challenger" if client_point(cid) >= 0.9 else "champion" for cid in CLIENTS}
        deadline = set_at + 120  # a liveness bound only
        while True:
            with_challenger = _routed(base, rows)
            if {cid: alias for cid, (alias, _) in with_challenger.items()} == expected or time.monotonic() > deadline:
                break
            time.sleep(POLL_SECONDS / 4)
        print(f"the challenger took its share {time.monotonic() - set_at:.1f} s after its alias was set")
        yield Platform(
            ready_before.json(),
            ready_before.status_code,
            refused,
            run,
            list(proxy.records),
            alerts,
            routed,
            ready_after,
            challenger.version,
            with_challenger,
            httpx.get(f"{base}/readyz", timeout=30).json(),
        )


def test_serving_is_ready_before_any_version_exists_and_refuses_predictions_with_503(platform: Platform) -> None:
    ready = platform.ready_before
    assert platform.ready_before_status == 200, ready
    assert (ready["ready"], ready["missing"], ready["loaded"], ready["not_loaded"]) == (
        True,
        ["challenger", "champion"],
        {},
        {},
    )
    refused = platform.refused
    assert refused.status_code == 503 and refused.headers["retry-after"] == str(round(POLL_SECONDS)), refused.text
    for alias in ("champion", "challenger"):
        assert f"{MODEL}@{alias} has no version in the registry yet" in refused.json()["detail"]


def test_the_first_training_promotes_reloads_and_verifies_on_a_serving_that_started_empty(platform: Platform) -> None:
    run = platform.run
    assert run.returncode == 0 and run.state == "success", run.explain()
    assert run.task_states == TRAINED_AND_SERVED, run.explain()
    assert run.xcoms[("register", "return_value")] == "1"
    [reload] = platform.reloads
    assert (reload.path, reload.upstream_status) == (contract.reload_path("champion"), 200)
    # loaded by this reload, or already by the watcher (it polls every 2 s): version 1 either way
    assert json.loads(reload.upstream_body)["version"] == "1"
    assert run.xcoms[("verify_serving", "return_value")]["version"] == "1"
    assert any(f"{MODEL} version 1 is now champion and served" in alert for alert in platform.alerts), platform.alerts
    assert not any("airflow.task_failed" in alert for alert in platform.alerts)


def test_a_canary_whose_challenger_was_never_promoted_serves_everything_from_the_champion(platform: Platform) -> None:
    assert set(platform.routed.values()) == {("champion", "1")}
    ready = platform.ready_after
    assert (ready["ready"], ready["missing"], ready["traffic"]) == (True, ["challenger"], {"champion": 1.0})


def test_a_challenger_that_appears_takes_its_share_within_a_few_polls(platform: Platform) -> None:
    challenger = ("challenger", platform.challenger)
    routed = platform.routed_with_challenger
    assert routed == {cid: challenger if client_point(cid) >= 0.9 else ("champion", "1") for cid in CLIENTS}
    assert challenger in routed.values()
    ready = platform.ready_with_challenger
    assert ready["missing"] == [] and ready["traffic"] == pytest.approx({"champion": 0.9, "challenger": 0.1})
