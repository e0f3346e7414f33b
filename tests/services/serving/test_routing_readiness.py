"""Readiness as "ready to serve what exists" and the shares of aliases with nothing loaded, in this process:

- the effective shares of every routing mode: the share of an alias with nothing loaded goes to the first loaded
  candidate (the primary, or the other side of a blue-green pair), a shadow never answers, nothing loaded is none;
- the router routes only to loaded aliases, and once every alias is loaded, by the configured shares and the same
  client hash as before;
- a process whose routed aliases have no version in the registry is ready (`/readyz`, MLflow's `/ping`, V2 server
  readiness) and every prediction endpoint, in every protocol, answers 503 with Retry-After naming the model and the
  missing aliases (never 500); the missing alias is logged once and shown in `/models` and the metrics; a version
  that appears takes its share;
- an alias whose version failed to load is not "nothing to load": a process that never was ready stays not ready,
  one that was ready stays ready with what it has loaded;
- an unreachable registry is not "nothing to load" either: the process is not ready and says why;
- a watcher pass that comes while an alias is being looked up (a slow registry at start) leaves it to that look-up.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI

from services.common import contract
from services.common.serving_rules import (
    ABRouting,
    BlueGreenRouting,
    CanaryRouting,
    FixedRouting,
    RoutingConfig,
    ShadowRouting,
)
from services.serving.app import ENDPOINTS, create_app
from services.serving.routes.deps import ServingState
from services.serving.routing import Router, client_point, effective_shares
from services.serving.schema import Column, InputValidator
from services.serving.settings import Settings
from services.serving.variants import Variant, VariantManager
from tests.services.serving.conftest import call

CANARY = CanaryRouting(primary="champion", challenger="challenger", percent=10)


# --- effective shares and the router -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("routing", "loaded", "shares"),
    [
        (CANARY, {"champion", "challenger"}, {"champion": 0.9, "challenger": 0.1}),
        (CANARY, {"champion"}, {"champion": 1.0}),
        (CANARY, {"challenger"}, {"challenger": 1.0}),
        (CANARY, set(), {}),
        (ABRouting(weights={"a": 5, "b": 3, "c": 2}), {"a", "b"}, {"a": 0.7, "b": 0.3}),
        (ABRouting(weights={"a": 5, "b": 3, "c": 2}), {"b", "c"}, {"b": 0.8, "c": 0.2}),
        (BlueGreenRouting(active="blue", standby="green"), {"blue", "green"}, {"blue": 1.0}),
        (BlueGreenRouting(active="blue", standby="green"), {"green"}, {"green": 1.0}),
        (ShadowRouting(primary="champion", shadow="challenger"), {"challenger"}, {}),
        (ShadowRouting(primary="champion", shadow="challenger"), {"champion"}, {"champion": 1.0}),
        (FixedRouting(alias="champion"), set(), {}),
    ],
)
def test_the_share_of_an_alias_with_nothing_loaded_goes_to_the_first_loaded_candidate(
    routing: RoutingConfig, loaded: set[str], shares: dict[str, float]
) -> None:
    assert effective_shares(routing, None, loaded) == pytest.approx(shares)


def test_the_router_routes_only_to_loaded_aliases_and_by_the_configured_hash_once_all_are_loaded() -> None:
    loaded: set[str] = set()
    router = Router(CANARY, lambda: None, lambda: loaded)
    ids = [f"client-{i}" for i in range(2000)]
    assert router.effective() == {} and router.candidates() == ("champion", "challenger")
    loaded.add("champion")
    router.refresh()
    assert {router.choose(i).alias for i in ids} == {"champion"} and router.effective() == {"champion": 1.0}
    loaded.add("challenger")
    router.refresh()
    assert router.effective() == pytest.approx({"champion": 0.9, "challenger": 0.1})
    assert all((client_point(i) >= 0.9) == (router.choose(i).alias == "challenger") for i in ids)
    # blue-green whose active side has nothing: the standby answers
    standby_only = Router(BlueGreenRouting(active="blue", standby="green"), lambda: "blue", lambda: {"green"})
    assert {standby_only.choose(i).alias for i in ids[:50]} == {"green"}


# --- a process -----------------------------------------------------------------------------------------------
def numbers_variant(alias: str, version: str) -> Variant:
    """A loaded version whose model adds up its one column `x` (as the loader builds them: a validator and a
    predict callable)."""
    return Variant(
        alias=alias,
        version=version,
        run_id=None,
        source=f"models:/m-{alias}",
        flavor="pyfunc",
        loaded_at=0.0,
        load_seconds=0.0,
        validator=InputValidator((Column("x", "double"),), max_batch=10),
        predict=lambda matrix: np.asarray(matrix).sum(axis=1).tolist(),
    )


@pytest.fixture
def canary_app(env: pytest.MonkeyPatch) -> Iterator[FastAPI]:
    """The application of a model routed as a canary (10% to challenger), its state as the lifespan builds it,
    before the first registry answer."""
    env.setenv(contract.SERVING_ROUTING.name, CANARY.env_value())
    env.setenv(contract.SERVING_POLL_SECONDS.name, "7.5")
    app = create_app()
    app.state.serving = ServingState.build(app.state.settings)
    yield app
    app.state.serving.manager.close()


def predictions(app: FastAPI) -> dict[str, Any]:
    """Every prediction endpoint's answer, by path (one row, x = 1.0, in each protocol's layout)."""
    bodies: dict[str, dict[str, Any]] = {
        "native": {"json": {"rows": [{"x": 1.0}]}},
        "v2": {"json": {"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1.0]}]}},
        "mlflow": {"json": {"dataframe_records": [{"x": 1.0}]}},
    }
    answers = {}
    for endpoint in ENDPOINTS:
        path = endpoint.path.format(alias="challenger", model="iris", version="1")
        answers[path] = call(app, endpoint.method, path, **bodies[endpoint.codec.name])
    return answers


def message(response: Any) -> str:
    body = response.json()
    return str(body.get("detail") or body.get("error") or body.get("message"))


def metric(app: FastAPI, name: str, **labels: str) -> float:
    text = call(app, "GET", "/metrics").text
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    match = re.search(rf"^{name}{{{wanted}}} (\S+)$", text, re.MULTILINE)
    assert match, f"no {name}{{{wanted}}} in /metrics"
    return float(match.group(1))


def test_nothing_in_the_registry_is_ready_and_every_protocol_answers_503_naming_what_is_missing(
    canary_app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    app, manager = canary_app, canary_app.state.serving.manager
    assert call(app, "GET", "/readyz").status_code == 503  # the registry has not answered yet
    with caplog.at_level(logging.INFO, logger="mlops.serving.variants"):
        for _ in range(3):  # the startup load, then every watcher pass: the registry has no version under either
            for alias in ("champion", "challenger"):
                manager._nothing_to_load(alias, "watcher", None)
    ready = call(app, "GET", "/readyz")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert (body["ready"], body["missing"], body["not_loaded"], body["traffic"]) == (
        True,
        ["challenger", "champion"],
        {},
        {},
    )
    assert call(app, "GET", "/ping").status_code == 200 and call(app, "GET", "/v2/health/ready").status_code == 200
    assert call(app, "GET", "/v2/models/iris/ready").status_code == 400  # the model cannot infer yet
    answers = predictions(app)
    assert len(answers) == len(ENDPOINTS) == 5
    for path, response in answers.items():
        assert response.status_code == 503, (path, response.text)
        assert response.headers["retry-after"] == "8", path  # the watcher's interval, rounded up
        assert "iris@challenger has no version in the registry yet" in message(response), path
        if path != "/variants/challenger/predict":  # routed: the whole routing is named
            assert "iris@champion has no version in the registry yet" in message(response), path
    assert metric(app, "serving_rejected_requests_total", status="503") == len(ENDPOINTS)
    assert metric(app, "serving_alias_missing", alias="challenger") == 1
    assert metric(app, "serving_traffic_share", alias="champion") == 0
    models = call(app, "GET", "/models").json()
    assert models["missing"] == ["champion", "challenger"] and models["traffic"] == {}
    assert models["not_loaded"] == dict.fromkeys(("champion", "challenger"), "no version in the registry")
    said = [r.getMessage() for r in caplog.records if "has no version in the registry" in r.getMessage()]
    assert len(said) == 2, said  # once per alias, not once per pass
    assert "its 10% of the routed traffic goes to the first loaded of ['champion']" in said[1]


def test_a_version_that_appears_takes_its_share_and_is_logged_once(
    canary_app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    app, manager = canary_app, canary_app.state.serving.manager
    for alias in ("champion", "challenger"):
        manager._nothing_to_load(alias, "startup", None)
    with caplog.at_level(logging.INFO):
        manager._mark_missing("champion", False, "1")
        manager._swap(numbers_variant("champion", "1"))
        ids = [f"client-{i}" for i in range(200)]
        answers = [call(app, "POST", "/predict", json={"rows": [{"x": 2.0}]}, headers={"X-Client-Id": i}) for i in ids]
        assert {(a.status_code, a.json()["alias"], a.json()["predictions"][0]) for a in answers} == {
            (200, "champion", 2.0)
        }
        assert call(app, "GET", "/readyz").json()["traffic"] == {"champion": 1.0}
        assert metric(app, "serving_traffic_share", alias="champion") == 1
        # the challenger appears: it takes its 10%, by the client hash
        manager._mark_missing("challenger", False, "2")
        manager._swap(numbers_variant("challenger", "2"))
        answers = [call(app, "POST", "/predict", json={"rows": [{"x": 2.0}]}, headers={"X-Client-Id": i}) for i in ids]
    assert [a.json()["alias"] for a in answers] == ["challenger" if client_point(i) >= 0.9 else "champion" for i in ids]
    assert call(app, "GET", "/models").json()["traffic"] == pytest.approx({"champion": 0.9, "challenger": 0.1})
    assert metric(app, "serving_traffic_share", alias="challenger") == pytest.approx(0.1)
    assert metric(app, "serving_alias_missing", alias="challenger") == 0
    appeared = [r.getMessage() for r in caplog.records if "now has version" in r.getMessage()]
    assert appeared == [
        "iris@champion now has version 1 in the registry: loading it",
        "iris@challenger now has version 2 in the registry: loading it",
    ]
    shares = [r.getMessage() for r in caplog.records if r.getMessage().startswith("traffic shares of iris now")]
    assert len(shares) == 2, shares  # once when the champion took everything, once when the challenger took 10%


def test_a_version_that_fails_to_load_is_not_nothing_to_load(canary_app: FastAPI) -> None:
    app, manager = canary_app, canary_app.state.serving.manager
    manager._swap(numbers_variant("champion", "1"))
    manager._failed("challenger", "startup", None, "2", "check prediction on the input example failed")
    readyz = call(app, "GET", "/readyz")
    assert readyz.status_code == 503  # never ready: the challenger has a version this process cannot load
    assert readyz.json()["not_loaded"] == {"challenger": "check prediction on the input example failed"}
    manager._nothing_to_load("challenger", "watcher", None)  # then the alias is deleted: nothing to load
    assert call(app, "GET", "/readyz").status_code == 200
    manager._mark_missing("challenger", False, "3")
    manager._failed("challenger", "watcher", None, "3", "loading version 3 failed")
    # once ready, a version that fails to load keeps what is loaded serving (and is alerted), not out of service
    readyz = call(app, "GET", "/readyz")
    assert readyz.status_code == 200 and readyz.json()["not_loaded"] == {"challenger": "loading version 3 failed"}
    answer = call(app, "POST", "/variants/challenger/predict", json={"rows": [{"x": 1.0}]})
    assert (
        answer.status_code == 503
        and "iris@challenger is not loaded yet (last error: loading version 3" in (answer.json()["detail"])
    )
    assert {call(app, "POST", "/predict", json={"rows": [{"x": 1.0}]}).json()["alias"] for _ in range(30)} == {
        "champion"
    }


def test_an_unreachable_registry_is_not_nothing_to_load(env: pytest.MonkeyPatch) -> None:
    env.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    env.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    settings = Settings.from_env()  # the tracking URI is a port nobody listens on
    state = ServingState.build(settings)
    manager: VariantManager = state.manager
    try:
        asyncio.run(manager.start())
        assert not manager.ready and manager.missing == frozenset()
        assert manager.pending()["champion"].startswith("cannot resolve iris@champion: ")
    finally:
        manager.close()


class SlowEmptyRegistry:
    """A registry with no version under any alias whose alias lookups wait until released (a slow MLflow)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.resolves: list[str] = []

    def resolve(self, alias: str) -> tuple[str, str | None, str]:
        self.resolves.append(alias)
        self.release.wait(10)
        raise LookupError(f"no alias {alias}")

    def snapshot(self) -> tuple[dict[str, str], dict[str, str]]:
        return {}, {}


def test_a_watcher_pass_during_a_reload_of_the_same_alias_leaves_it_to_that_reload(canary_app: FastAPI) -> None:
    state = canary_app.state.serving
    registry = SlowEmptyRegistry()
    manager = VariantManager(state.settings, state.metrics, state.manager.alerter, registry=registry)  # type: ignore[arg-type]

    async def scenario() -> None:
        start = asyncio.create_task(manager.reload_all("startup"))
        while len(registry.resolves) < 2:  # both aliases are being looked up
            await asyncio.sleep(0.01)
        await manager.poll_once()  # the poll comes while the start-up lookups are still under way
        registry.release.set()
        await start
        await manager.poll_once()  # and after them: both are known to have no version, nothing to do

    try:
        asyncio.run(scenario())
    finally:
        manager.close()
    assert sorted(registry.resolves) == ["challenger", "champion"]  # each looked up once, not again by the watcher
    assert manager.missing == {"champion", "challenger"}
    for alias in ("champion", "challenger"):
        assert metric(canary_app, "serving_reloads_total", alias=alias, outcome="absent", trigger="startup") == 1
    assert 'trigger="watcher"' not in call(canary_app, "GET", "/metrics").text  # the watcher reloaded nothing
