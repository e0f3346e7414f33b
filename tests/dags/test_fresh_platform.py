"""The first training on a fresh platform: the real training DAGs (`airflow dags test`, SQLite metadata DB) against a
real MLflow server (PostgreSQL + S3 artifacts on moto) and serving processes started BEFORE any version of their
model existed, as the pods of a first `pulumi up` are.

Two models that have never been registered, trained from the iris example: one routed `fixed` to champion, one
routed as the prod stack routes iris, a canary with 10% to `challenger`. Each serving process is ready with nothing
in the registry (what the Kubernetes readiness probe, hence the rollout and `pulumi up`, waits for) and answers
predictions 503 naming the missing aliases; the DAG run promotes version 1, reloads serving (which loads it from
nothing) and verifies it, and announces it. The canary's challenger is never promoted: after the training every
request is answered by the champion. Then a challenger version is registered and its alias set: within a few of
the watcher's polls it takes its 10% (the clients the canary's hash sends to it), and nothing else changes.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
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
from tests.dags.conftest import AirflowHome, DagRunResult, Recorded, ReloadProxy, WebhookReceiver, running_serving

pytestmark = [pytest.mark.servers, pytest.mark.slow]

SUFFIX = secrets.token_hex(3)
FIXED = f"fresh-fixed-{SUFFIX}"
CANARY = f"fresh-canary-{SUFFIX}"
ROUTINGS: dict[str, dict[str, Any]] = {
    FIXED: {"mode": "fixed", "alias": "champion"},
    CANARY: {"mode": "canary", "primary": "champion", "challenger": "challenger", "percent": 10},  # as prod's iris
}
ROUTED = {FIXED: ("champion",), CANARY: ("champion", "challenger")}
# The canary's watcher polls often enough for the challenger step; the fixed model's never polls, so only the
# DAG's reload can load its first version.
POLL_SECONDS = {FIXED: 3600.0, CANARY: 2.0}
CLIENTS = [f"client-{i}" for i in range(100)]
TRAIN_TASKS = ("train", "evaluate", "quality_gate", "register", "wait_until_ready", "promote")


@dataclass
class Before:
    """A serving process before any version of its model exists."""

    readyz_status: int
    readyz: dict[str, Any]
    predict_status: int
    predict_retry_after: str | None
    predict_detail: str


@dataclass
class Trained:
    run: DagRunResult
    reloads: list[Recorded]
    routed: dict[str, tuple[str | None, str | None]]  # client id -> (alias, version) answering POST /predict
    readyz: dict[str, Any]
    alerts: list[str]


@dataclass
class Platform:
    before: dict[str, Before] = field(default_factory=dict)
    trained: dict[str, Trained] = field(default_factory=dict)
    challenger_version: str | None = None
    challenger_routed: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    challenger_readyz: dict[str, Any] = field(default_factory=dict)
    fixed_after_challenger: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)


def _catalog() -> Catalog:
    iris = local_catalog().models[IRIS].model_dump(mode="json", by_alias=True, exclude_none=True)
    entries = {m: {**iris, "serving": {**iris["serving"], "routing": routing}} for m, routing in ROUTINGS.items()}
    catalog = extended(local_catalog(), entries)
    return catalog.model_copy(update={"models": {m: catalog.models[m] for m in ROUTINGS}})


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
    result = Platform()
    with contextlib.ExitStack() as stack:
        servings = {
            model: stack.enter_context(
                running_serving(
                    uri,
                    model,
                    tmp / f"serving-{model}.log",
                    reload_token=token,
                    aliases=tuple(catalog.models[model].serving.aliases),
                    routing=routing,
                    poll_seconds=POLL_SECONDS[model],
                )  # waits for /readyz: 200
            )
            for model, routing in ROUTINGS.items()
        }
        proxies = {m: stack.enter_context(ReloadProxy(servings[m].base_url)) for m in ROUTINGS}
        path = write_catalog(
            catalog,
            tmp / "catalog.json",
            {m: s.base_url for m, s in servings.items()},
            {m: p.url for m, p in proxies.items()},
        )
        env = {
            contract.MLFLOW_TRACKING_URI.name: uri,
            contract.RELOAD_TOKEN.name: token,
            contract.SLACK_WEBHOOK_URL.name: webhook.url,
            **catalog_env(path),
        }
        for model, serving in servings.items():
            readyz = httpx.get(f"{serving.base_url}/readyz", timeout=30)
            predicted = httpx.post(f"{serving.base_url}/predict", json={"rows": [{"x": 1.0}]}, timeout=30)
            result.before[model] = Before(
                readyz.status_code,
                readyz.json(),
                predicted.status_code,
                predicted.headers.get("retry-after"),
                str(predicted.json().get("detail")),
            )
        for model, serving in servings.items():
            webhook.clear()
            mark = len(proxies[model].records)
            run = airflow_home.dags_test(names(model)["dag_id"], {}, env)
            holder = registry.alias_holder(registry.client(uri), model, "champion")
            rows = registry.example_rows(uri, model, holder, 1) if holder else [{"x": 1.0}]
            result.trained[model] = Trained(
                run,
                proxies[model].records[mark:],
                _routed(serving.base_url, rows),
                httpx.get(f"{serving.base_url}/readyz", timeout=30).json(),
                [json.dumps(body) for body in webhook.received],
            )

        # A challenger appears for the canary (a second version of the trained model): the watcher picks it up.
        client = registry.client(uri)
        first = client.get_model_version(CANARY, "1")
        trained = RegisteredVersion(CANARY, "1", str(first.run_id), str(first.source), str(first.source))
        rows = registry.example_rows(uri, CANARY, "1", 1)
        challenger = register_again(uri, trained, alias="challenger")
        result.challenger_version = challenger.version
        set_at = time.monotonic()
        expected = {cid: "challenger" if client_point(cid) >= 0.9 else "champion" for cid in CLIENTS}
        deadline = set_at + 120  # a liveness bound only: the watcher polls every 2 s
        while True:
            routed = _routed(servings[CANARY].base_url, rows)
            if {cid: alias for cid, (alias, _) in routed.items()} == expected or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        print(f"the challenger took its share {time.monotonic() - set_at:.1f} s after its alias was set")
        result.challenger_routed = routed
        result.challenger_readyz = httpx.get(f"{servings[CANARY].base_url}/readyz", timeout=30).json()
        fixed_rows = registry.example_rows(uri, FIXED, "1", 1)
        result.fixed_after_challenger = _routed(servings[FIXED].base_url, fixed_rows)
        yield result


@pytest.mark.parametrize("model", list(ROUTINGS))
def test_serving_is_ready_before_any_version_exists_and_refuses_predictions_with_503(
    platform: Platform, model: str
) -> None:
    before = platform.before[model]
    assert before.readyz_status == 200, before.readyz
    assert before.readyz["ready"] is True and before.readyz["loaded"] == {} and before.readyz["not_loaded"] == {}
    assert before.readyz["missing"] == ["challenger", "champion"]  # both served aliases, routed or not
    assert before.predict_status == 503 and before.predict_retry_after is not None
    for alias in ROUTED[model]:  # the routed predictions name the aliases that may answer them
        assert f"{model}@{alias} has no version in the registry yet" in before.predict_detail


@pytest.mark.parametrize("model", list(ROUTINGS))
def test_the_first_training_promotes_reloads_and_verifies_on_a_serving_that_started_empty(
    platform: Platform, model: str
) -> None:
    step = platform.trained[model]
    run = step.run
    assert run.returncode == 0 and run.state == "success", run.explain()
    assert run.task_states == {
        **dict.fromkeys((*TRAIN_TASKS, "reload_serving", "verify_serving"), "success"),
        "rollback": "skipped",
        "fail_run": "skipped",
    }, run.explain()
    assert run.xcoms[("register", "return_value")] == "1"
    [reload] = step.reloads
    assert (reload.path, reload.upstream_status) == (contract.reload_path("champion"), 200)
    answer = json.loads(reload.upstream_body)
    assert answer["version"] == "1"
    if model == FIXED:  # its watcher never polls: the DAG's reload loaded the first version from nothing
        assert answer["outcome"] == "reloaded" and "previous_version" not in answer, answer
    assert run.xcoms[("verify_serving", "return_value")]["version"] == "1"
    assert any(f"{model} version 1 is now champion and served" in alert for alert in step.alerts), step.alerts
    assert not any("airflow.task_failed" in alert for alert in step.alerts)


def test_a_canary_whose_challenger_was_never_promoted_serves_everything_from_the_champion(platform: Platform) -> None:
    step = platform.trained[CANARY]
    assert set(step.routed.values()) == {("champion", "1")}
    assert step.readyz["ready"] is True and step.readyz["missing"] == ["challenger"]
    assert step.readyz["traffic"] == {"champion": 1.0}


def test_a_challenger_that_appears_takes_its_share_within_a_few_polls(platform: Platform) -> None:
    routed = platform.challenger_routed
    assert routed == {
        cid: ("challenger", platform.challenger_version) if client_point(cid) >= 0.9 else ("champion", "1")
        for cid in CLIENTS
    }
    assert ("challenger", platform.challenger_version) in routed.values()
    assert platform.challenger_readyz["missing"] == []
    assert platform.challenger_readyz["traffic"] == pytest.approx({"champion": 0.9, "challenger": 0.1})
    # the other model is untouched
    assert set(platform.fixed_after_challenger.values()) == {("champion", "1")}
