"""The API's tokens as a real process on PostgreSQL: every token expires (the default and the maximum are settings;
asking above the maximum is 400 naming `expires_in`), an expired token is 401 on every route and stream with a
message saying so, `last_used_at` is recorded and listed but written at most once a minute; a token limited to
some models (checked against the catalog: 400 naming `models`) acts on those only on every /v1 route that
touches a model (403 naming the model) and sees only their events on every stream; a token over its rate limit
gets 429 with a truthful Retry-After; the previous admin token is accepted during a rotation."""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from devstack.postgres import PostgresServer
from services.common import contract
from tests.services.api.conftest import ApiProcess, SseReader, read_events, start_training, token_for, wait_until
from tests.services.api.fakes import FakeAirflow, FakeMlflow

pytestmark = [pytest.mark.servers]

IRIS, DIABETES = "iris-classifier", "diabetes-regressor"
HOUR = 3600


@contextlib.contextmanager
def sql(database: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(PostgresServer().conninfo(database), autocommit=True) as conn:
        yield conn


def token_row(database: str, token: str) -> dict[str, Any]:
    with sql(database) as conn:
        cur = conn.execute(
            "SELECT expires_at, last_used_at, created_at FROM api_tokens WHERE id = %s", (token.split("_")[1],)
        )
        row = cur.fetchone()
    assert row is not None
    return {"expires_at": row[0], "last_used_at": row[1], "created_at": row[2]}


def listed(api: ApiProcess, token: str) -> dict[str, Any]:
    with api.admin() as admin:
        tokens = admin.get("/v1/tokens").json()["tokens"]
    return next(t for t in tokens if t["id"] == token.split("_")[1])


def key() -> dict[str, str]:
    return {"Idempotency-Key": secrets.token_hex(8)}


# Every /v1 operation that reads or acts on a model, called for a run or a model of `other` (the model the token
# may NOT use). `ids` holds the ids of that model's training and rollback. Each entry: (method, path, call).
Call = Callable[[httpx.Client, dict[str, str]], httpx.Response]
MODEL_ROUTES: dict[tuple[str, str], Call] = {
    ("post", "/v1/trainings"): lambda c, ids: c.post("/v1/trainings", json={"model": ids["model"]}, headers=key()),
    ("get", "/v1/trainings"): lambda c, ids: c.get("/v1/trainings", params={"model": ids["model"]}),
    ("get", "/v1/trainings/{id}"): lambda c, ids: c.get(f"/v1/trainings/{ids['training']}"),
    ("post", "/v1/trainings/{id}/cancel"): lambda c, ids: c.post(f"/v1/trainings/{ids['training']}/cancel"),
    ("get", "/v1/trainings/{id}/events"): lambda c, ids: c.get(f"/v1/trainings/{ids['training']}/events"),
    ("post", "/v1/models/{model}/rollback"): lambda c, ids: c.post(
        f"/v1/models/{ids['model']}/rollback", json={}, headers=key()
    ),
    ("get", "/v1/rollbacks/{id}"): lambda c, ids: c.get(f"/v1/rollbacks/{ids['rollback']}"),
    ("get", "/v1/rollbacks/{id}/events"): lambda c, ids: c.get(f"/v1/rollbacks/{ids['rollback']}/events"),
    ("get", "/v1/events"): lambda c, ids: c.get("/v1/events", params={"model": ids["model"], "follow": "false"}),
    ("get", "/v1/models/{model}/routing"): lambda c, ids: c.get(f"/v1/models/{ids['model']}/routing"),
    ("put", "/v1/models/{model}/routing"): lambda c, ids: c.put(
        f"/v1/models/{ids['model']}/routing",
        json={"routing": {"mode": "fixed", "alias": "champion"}, "reason": "scoping test"},
    ),
    ("delete", "/v1/models/{model}/routing"): lambda c, ids: c.delete(f"/v1/models/{ids['model']}/routing"),
}
# Listings without a model in the request: a scoped token gets only its models (checked separately).
LISTINGS = {("get", "/v1/models")}
ADMIN_ONLY = {("post", "/v1/tokens"), ("get", "/v1/tokens"), ("delete", "/v1/tokens/{token_id}")}


def v1_operations(api: ApiProcess) -> set[tuple[str, str]]:
    with api.client() as client:
        doc = client.get("/openapi.json").json()
    return {(method, path) for path, item in doc["paths"].items() if path.startswith("/v1") for method in item}


def test_the_route_tables_cover_every_v1_operation(start_api: Callable[..., ApiProcess]) -> None:
    """A new route must be added to one of these tables, so its model scoping and expiry get tested."""
    assert v1_operations(start_api()) == set(MODEL_ROUTES) | LISTINGS | ADMIN_ONLY


def _runs_of(api: ApiProcess, model: str, fake_mlflow: FakeMlflow) -> dict[str, str]:
    """A training and a rollback of `model`, started with the admin token."""
    fake_mlflow.register(model, None)
    with api.admin() as admin:
        training = start_training(admin, model)
        rollback = admin.post(f"/v1/models/{model}/rollback", json={"version": "1"}, headers=key())
    assert training.status_code == rollback.status_code == 202, (training.text, rollback.text)
    return {"model": model, "training": training.json()["id"], "rollback": rollback.json()["id"]}


def test_every_token_expires_default_maximum_and_per_request(
    start_api: Callable[..., ApiProcess], database: str
) -> None:
    api = start_api(
        token_settings={
            contract.API_TOKEN_TTL: str(HOUR),
            contract.API_TOKEN_MAX_TTL: str(2 * HOUR),
            contract.API_RATE_LIMIT_PER_SECOND: "10000",
            contract.API_RATE_LIMIT_BURST: "10000",
        }
    )
    with api.admin() as admin:
        too_long = admin.post("/v1/tokens", json={"name": "x", "scopes": ["read"], "expires_in": 2 * HOUR + 1})
        assert too_long.status_code == 400 and too_long.json()["field"] == "expires_in"
        assert "7200" in too_long.json()["detail"]
        assert admin.post("/v1/tokens", json={"name": "x", "scopes": ["read"], "expires_in": 0}).status_code == 422
        default = admin.post("/v1/tokens", json={"name": "default", "scopes": ["read"]}).json()
        longest = admin.post("/v1/tokens", json={"name": "max", "scopes": ["read"], "expires_in": 2 * HOUR}).json()
    for created, seconds in ((default, HOUR), (longest, 2 * HOUR)):
        lifetime = datetime.fromisoformat(created["expires_at"]) - datetime.fromisoformat(created["created_at"])
        assert lifetime == timedelta(seconds=seconds)
        assert created["last_used_at"] is None and created["models"] is None
    # a token asked to live one second: valid, then refused as expired
    short = token_for(api, "read", expires_in=1)
    with api.client(short) as client:
        answer = wait_until(lambda: (r := client.get("/v1/trainings")).status_code == 401 and r, what="expiry")
    assert "expired" in answer.json()["detail"] and answer.json()["field"] == "Authorization"
    assert answer.headers["www-authenticate"] == "Bearer"


def test_an_expired_token_is_refused_on_every_route_and_stream(
    start_api: Callable[..., ApiProcess], database: str, fake_mlflow: FakeMlflow
) -> None:
    api = start_api()
    ids = _runs_of(api, IRIS, fake_mlflow)
    token = token_for(api, "read", "train", "deploy", "admin", name="soon expired")
    with api.client(token) as client:
        assert client.get("/v1/trainings").status_code == 200
        with sql(database) as conn:
            conn.execute("UPDATE api_tokens SET expires_at = now() WHERE id = %s", (token.split("_")[1],))
        for (method, path), call in MODEL_ROUTES.items():
            answer = call(client, ids)
            assert answer.status_code == 401, (method, path, answer.text)
            assert "expired at" in answer.json()["detail"], (method, path)
        assert client.get("/v1/models").status_code == 401
        assert client.get("/v1/tokens").status_code == 401
        assert client.post("/v1/tokens", json={"name": "x", "scopes": ["read"]}).status_code == 401
        assert client.delete(f"/v1/tokens/{token.split('_')[1]}").status_code == 401
    assert listed(api, token)["revoked_at"] is None  # the expired token could not revoke itself


def test_last_used_at_is_listed_and_written_at_most_once_a_minute(
    start_api: Callable[..., ApiProcess], database: str
) -> None:
    api = start_api()
    token = token_for(api, "read")
    assert listed(api, token)["last_used_at"] is None
    with api.client(token) as client:
        assert client.get("/v1/trainings").status_code == 200
        first = token_row(database, token)["last_used_at"]
        assert first is not None
        assert listed(api, token)["last_used_at"] == first.isoformat()
        for _ in range(5):
            assert client.get("/v1/trainings").status_code == 200
        assert token_row(database, token)["last_used_at"] == first  # no write per request
        with sql(database) as conn:  # a minute and more later
            conn.execute(
                "UPDATE api_tokens SET last_used_at = last_used_at - interval '61 seconds' WHERE id = %s",
                (token.split("_")[1],),
            )
        assert client.get("/v1/trainings").status_code == 200
    assert token_row(database, token)["last_used_at"] >= first  # written again once the last write was old


def test_a_model_scoped_token_acts_on_its_models_only_on_every_route(
    start_api: Callable[..., ApiProcess], fake_airflow: FakeAirflow, fake_mlflow: FakeMlflow
) -> None:
    api = start_api()
    other = _runs_of(api, DIABETES, fake_mlflow)
    with api.admin() as admin:
        unknown = admin.post("/v1/tokens", json={"name": "x", "scopes": ["read"], "models": [IRIS, "no-such-model"]})
        assert unknown.status_code == 400 and unknown.json()["field"] == "models"
        assert "no-such-model" in unknown.json()["detail"]
    token = token_for(api, "read", "train", "deploy", name="iris only", models=[IRIS])
    assert listed(api, token)["models"] == [IRIS]
    with api.client(token) as client:
        for (method, path), call in MODEL_ROUTES.items():
            answer = call(client, other)
            assert answer.status_code == 403, (method, path, answer.text)
            assert DIABETES in answer.json()["detail"], (method, path)
        # nothing happened to the other model's runs: no cancel, no new DAG run
        with api.admin() as admin:
            assert admin.get(f"/v1/trainings/{other['training']}").json()["state"] == "queued"
        assert len(fake_airflow.triggered()) == 2
        # its own model: allowed everywhere, listings show only it
        own = _runs_for_token(client, IRIS)
        assert [t["model"] for t in client.get("/v1/trainings").json()["items"]] == [IRIS]
        assert [m["name"] for m in client.get("/v1/models").json()["models"]] == [IRIS]
        assert client.get(f"/v1/trainings/{own['training']}").status_code == 200
        assert client.get(f"/v1/rollbacks/{own['rollback']}").status_code == 200
        assert read_events(client, f"/v1/rollbacks/{own['rollback']}/events", follow="false")
        assert client.post(f"/v1/trainings/{own['training']}/cancel").json()["state"] == "cancelled"
        events = read_events(client, "/v1/events", after=0, follow="false")
    assert {e["data"]["model"] for e in events} == {IRIS} and len(events) >= 3
    with api.admin() as admin:
        everything = read_events(admin, "/v1/events", after=0, follow="false")
    assert {e["data"]["model"] for e in everything} == {IRIS, DIABETES}


def _runs_for_token(client: httpx.Client, model: str) -> dict[str, str]:
    training = start_training(client, model)
    rollback = client.post(f"/v1/models/{model}/rollback", json={}, headers=key())
    assert training.status_code == rollback.status_code == 202, (training.text, rollback.text)
    return {"training": training.json()["id"], "rollback": rollback.json()["id"]}


def test_a_scoped_token_follows_only_its_models_events_live(start_api: Callable[..., ApiProcess]) -> None:
    api = start_api()
    token = token_for(api, "read", "train", name="iris only", models=[IRIS])
    with api.client(token) as client, api.admin() as admin:
        follower = SseReader(client, "/v1/events")
        hidden = start_training(admin, DIABETES).json()  # committed before the next one: an earlier event id
        mine = start_training(client, IRIS).json()
        events = follower.wait_for(lambda ev: any(e["data"]["run_id"] == mine["id"] for e in ev))
        follower.close()
    assert hidden["id"] not in {e["data"]["run_id"] for e in events}
    assert {e["data"]["model"] for e in events} == {IRIS}


def test_an_open_stream_ends_when_its_token_is_revoked(start_api: Callable[..., ApiProcess]) -> None:
    api = start_api()
    token = token_for(api, "read", "train", name="follower")
    with api.client(token) as client, api.admin() as admin:
        follower = SseReader(client, "/v1/events")
        mine = start_training(client).json()
        follower.wait_for(lambda ev: any(e["data"]["run_id"] == mine["id"] for e in ev))
        assert admin.delete(f"/v1/tokens/{token.split('_')[1]}").status_code == 200
        wait_until(lambda: not follower._thread.is_alive(), what="the stream ended after the revocation")
        start_training(admin)  # nothing more reaches the revoked token
        assert [e["data"]["run_id"] for e in follower.events] == [mine["id"]]
        follower.close()


def test_a_model_scoped_admin_token_creates_only_tokens_within_its_models(
    start_api: Callable[..., ApiProcess],
) -> None:
    api = start_api()
    scoped_admin = token_for(api, "admin", name="iris admin", models=[IRIS])
    with api.client(scoped_admin) as client:
        wider = client.post("/v1/tokens", json={"name": "x", "scopes": ["read"], "models": [DIABETES]})
        assert wider.status_code == 403 and DIABETES in wider.json()["detail"]
        inherited = client.post("/v1/tokens", json={"name": "y", "scopes": ["read"]})
        assert inherited.status_code == 201 and inherited.json()["models"] == [IRIS]


def test_a_token_over_its_rate_limit_gets_429_with_a_truthful_retry_after(
    start_api: Callable[..., ApiProcess],
) -> None:
    api = start_api(
        token_settings={contract.API_RATE_LIMIT_PER_SECOND: "0.2", contract.API_RATE_LIMIT_BURST: "3"},
    )
    limited, other = token_for(api, "read", name="busy"), token_for(api, "read", name="calm")
    with api.client(limited) as client:
        answers = [client.get("/v1/trainings") for _ in range(4)]
        assert [a.status_code for a in answers[:3]] == [200, 200, 200]
        refused = answers[3]
        assert refused.status_code == 429 and refused.json()["field"] == "Authorization"
        retry_after = int(refused.headers["retry-after"])
        assert 1 <= retry_after <= 5  # one request refills in 5 s at 0.2/s
        with api.client(other) as calm:
            assert calm.get("/v1/trainings").status_code == 200  # one bucket per token
        time.sleep(retry_after)
        assert client.get("/v1/trainings").status_code == 200


def test_the_previous_admin_token_is_accepted_during_a_rotation(start_api: Callable[..., ApiProcess]) -> None:
    previous = secrets.token_urlsafe(32)
    api = start_api(
        token_settings={
            contract.API_ADMIN_TOKEN_PREVIOUS: previous,
            contract.API_RATE_LIMIT_PER_SECOND: "10000",
            contract.API_RATE_LIMIT_BURST: "10000",
        }
    )
    for admin_token in (api.admin_token, previous):
        with api.client(admin_token) as client:
            created = client.post("/v1/tokens", json={"name": "ci", "scopes": ["read"]})
            assert created.status_code == 201 and created.json()["created_by"] == "admin"
    with api.client(secrets.token_urlsafe(32)) as stranger:
        assert stranger.get("/v1/tokens").status_code == 401
