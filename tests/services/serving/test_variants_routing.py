"""The routing as data, in this process with a registry stand-in:

- `PUT /admin/routing` applies a routing here at once and records it (who, when, why) as the registered-model tag
  every replica follows; `/models`, `serving_routing_weight` and the logs show it; `DELETE` goes back to the
  stack's routing;
- a routing that names an alias the deployment does not load is refused (409 naming `routing`), a malformed one
  is a 4xx naming the field, a registry that refuses leaves everything as it was (502);
- another replica's change (the tag) is applied on the next watcher pass; a tag that cannot be applied is logged
  once and the routing in force keeps routing; a deleted tag brings the stack's routing back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI

from services.common import contract
from services.common.registry_tags import ROUTING_TAG
from services.common.serving_rules import CanaryRouting, FixedRouting, RoutingRecord, parse_routing_record
from services.serving.app import create_app
from services.serving.routes.deps import ServingState
from tests.services.serving.conftest import call
from tests.services.serving.test_routing_readiness import client_point, metric, numbers_variant

AUTH = {"Authorization": "Bearer token"}
CANARY_25 = {"mode": "canary", "primary": "champion", "challenger": "challenger", "percent": 25}


class FakeRegistry:
    """The registered model's aliases and tags, as `Registry` reads and writes them."""

    def __init__(self) -> None:
        self.tags: dict[str, str] = {}
        self.fail: Exception | None = None

    def snapshot(self) -> tuple[dict[str, str], dict[str, str]]:
        return {"champion": "1", "challenger": "2"}, dict(self.tags)

    def set_routing(self, record: RoutingRecord | None) -> None:
        if self.fail is not None:
            raise self.fail
        if record is None:
            self.tags.pop(ROUTING_TAG, None)
        else:
            self.tags[ROUTING_TAG] = record.tag_value()


@pytest.fixture
def app(env: pytest.MonkeyPatch) -> Iterator[FastAPI]:
    """A model routed `fixed` on the champion by its stack, loading champion and challenger, both loaded."""
    env.setenv(contract.SERVING_ROUTING.name, FixedRouting(alias="champion").env_value())
    env.setenv(contract.SERVING_ALIASES.name, "champion,challenger")
    env.setenv(contract.RELOAD_TOKEN.name, "token")
    app = create_app()
    state = app.state.serving = ServingState.build(app.state.settings)
    state.manager._registry = FakeRegistry()  # type: ignore[assignment]
    for alias, version in (("champion", "1"), ("challenger", "2")):
        state.manager._mark_missing(alias, False, version)
        state.manager._swap(numbers_variant(alias, version))
    yield app
    state.manager.close()


def registry(app: FastAPI) -> FakeRegistry:
    fake: FakeRegistry = app.state.serving.manager._registry
    return fake


def routed(app: FastAPI, clients: list[str]) -> list[str]:
    return [
        call(app, "POST", "/predict", json={"rows": [{"x": 1.0}]}, headers={"X-Client-Id": c}).json()["alias"]
        for c in clients
    ]


def poll(app: FastAPI) -> None:
    asyncio.run(app.state.serving.manager.poll_once())


CLIENTS = [f"client-{i}" for i in range(200)]


def test_a_routing_put_applies_here_at_once_and_is_recorded_for_every_replica(
    app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    assert set(routed(app, CLIENTS)) == {"champion"}
    with caplog.at_level(logging.INFO):
        answer = call(
            app, "PUT", "/admin/routing", json={"routing": CANARY_25, "reason": "step 2", "by": "ci"}, headers=AUTH
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["weights"] == {"champion": 0.75, "challenger": 0.25}
    assert routed(app, CLIENTS) == ["challenger" if client_point(c) >= 0.75 else "champion" for c in CLIENTS]
    record = parse_routing_record(registry(app).tags[ROUTING_TAG])
    assert (record.routing, record.by, record.reason) == (CanaryRouting(**CANARY_25), "ci", "step 2")
    models = call(app, "GET", "/models").json()
    assert models["routing"] == CANARY_25
    assert models["routing_source"] == {"source": "registry", "by": "ci", "at": record.at, "reason": "step 2"}
    assert metric(app, "serving_routing_weight", alias="challenger") == pytest.approx(0.25)
    assert metric(app, "serving_traffic_share", alias="challenger") == pytest.approx(0.25)
    [changed] = [r for r in caplog.records if getattr(r, "event", None) == "model.routing_changed"]
    assert "set by ci" in changed.getMessage() and "step 2" in changed.getMessage()
    # the watcher's next pass finds its own record: nothing changes, nothing is logged again
    caplog.clear()
    with caplog.at_level(logging.INFO):
        poll(app)
    assert not [r for r in caplog.records if getattr(r, "event", None) == "model.routing_changed"]
    # back to the stack's routing
    answer = call(app, "DELETE", "/admin/routing", headers=AUTH)
    assert answer.json()["routing_source"] == {"source": "stack"}
    assert ROUTING_TAG not in registry(app).tags
    assert set(routed(app, CLIENTS)) == {"champion"}
    assert metric(app, "serving_routing_weight", alias="challenger") == 0


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"routing": {"mode": "fixed", "alias": "blue"}, "reason": "r"}, 409, "routing"),
        ({"routing": {**CANARY_25, "percent": 120}, "reason": "r"}, 422, "percent"),
        ({"routing": CANARY_25}, 422, "reason"),
        ({"routing": CANARY_25, "reason": "r", "extra": 1}, 422, "extra"),
    ],
)
def test_a_routing_that_cannot_apply_is_refused_naming_the_field_and_nothing_changes(
    app: FastAPI, body: dict[str, Any], status: int, field: str
) -> None:
    answer = call(app, "PUT", "/admin/routing", json=body, headers=AUTH)
    assert answer.status_code in {status, 400} and answer.status_code < 500, answer.text
    assert field in answer.text
    assert ROUTING_TAG not in registry(app).tags
    assert call(app, "GET", "/models").json()["routing_source"] == {"source": "stack"}


def test_without_the_token_nobody_changes_the_routing(app: FastAPI) -> None:
    assert call(app, "PUT", "/admin/routing", json={"routing": CANARY_25, "reason": "r"}).status_code == 401


def test_a_registry_that_refuses_leaves_the_routing_as_it_was(app: FastAPI) -> None:
    registry(app).fail = RuntimeError("permission denied")
    answer = call(app, "PUT", "/admin/routing", json={"routing": CANARY_25, "reason": "r"}, headers=AUTH)
    assert answer.status_code == 502 and "permission denied" in answer.text
    assert set(routed(app, CLIENTS)) == {"champion"}


def test_another_replicas_change_is_followed_on_the_next_pass_and_a_bad_tag_is_logged_once(
    app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    record = RoutingRecord(routing=CanaryRouting(**CANARY_25), by="api:deployer", at="2026-12-07T20:00:00Z", reason="r")
    registry(app).tags[ROUTING_TAG] = record.tag_value()
    poll(app)
    assert call(app, "GET", "/models").json()["routing_source"]["by"] == "api:deployer"
    assert routed(app, CLIENTS) == ["challenger" if client_point(c) >= 0.75 else "champion" for c in CLIENTS]
    # a tag naming an alias this deployment does not load, then one that is not a routing at all
    for bad in (
        RoutingRecord(routing=FixedRouting(alias="blue"), by="x", at="t", reason="r").tag_value(),
        '{"routing": {"mode": "fixed"}}',
    ):
        registry(app).tags[ROUTING_TAG] = bad
        caplog.clear()
        with caplog.at_level(logging.INFO):
            poll(app)
            poll(app)
        refused = [r for r in caplog.records if getattr(r, "event", None) == "model.routing_refused"]
        assert len(refused) == 1, [r.getMessage() for r in caplog.records]
        assert call(app, "GET", "/models").json()["routing"] == CANARY_25  # the routing in force keeps routing
    del registry(app).tags[ROUTING_TAG]
    poll(app)
    assert call(app, "GET", "/models").json()["routing_source"] == {"source": "stack"}
    assert set(routed(app, CLIENTS)) == {"champion"}
