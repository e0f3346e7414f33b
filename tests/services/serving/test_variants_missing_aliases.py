"""A serving process started on a fresh registry (real MLflow on PostgreSQL + moto S3, the real process), routed as
the prod stack routes iris: a canary with 10% to `challenger`. One process, one journey, a snapshot after each step:

1. the registered model does not exist: the process becomes ready (`/readyz`, `/ping`, V2 server readiness) and
   every prediction endpoint of every protocol answers 503 (never 500) with Retry-After, naming the model and both
   missing aliases; `/models` and the metrics say what is missing;
2. a champion version is registered, the challenger never promoted: the watcher loads the champion, which answers
   every request (whatever the client id), and the challenger stays missing without a failure, an alert or another
   log line however many polls go by;
3. a challenger version appears: within a few polls it is loaded and takes its share (the clients the configured
   canary hash sends to it), logged once when it appears.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from devstack.models import iris_rows, register_again, train_and_register
from devstack.procs import DevstackError
from devstack.serving import ServingProcess, serving_service
from devstack.stack import MlflowStack
from services.common.serving_rules import CanaryRouting
from services.serving.app import ENDPOINTS
from services.serving.routing import client_point
from tests.services.serving.conftest import metric_value, wait_until

pytestmark = [pytest.mark.servers, pytest.mark.slow]

CANARY = CanaryRouting(primary="champion", challenger="challenger", percent=10)
ALIASES = ("champion", "challenger")
POLL_SECONDS = 1
CLIENTS = [f"client-{i}" for i in range(150)]
ROW = iris_rows(1)[0]


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any

    @property
    def message(self) -> str:
        body = self.body if isinstance(self.body, dict) else {}
        return str(body.get("detail") or body.get("error") or body.get("message"))


@dataclass
class Snapshot:
    readyz: Answer
    status: dict[str, int]  # other readiness paths -> status
    models: dict[str, Any]
    metrics: dict[str, float]
    predictions: dict[str, Answer] = field(default_factory=dict)  # endpoint path -> answer
    routed: dict[str, str] = field(default_factory=dict)  # client id -> answering alias of POST /predict


@dataclass
class Journey:
    model: str
    serving: ServingProcess
    started_seconds: float
    steps: dict[str, Snapshot] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    def log(self) -> str:
        return self.serving.process.log_tail(50_000_000)


def _answer(response: httpx.Response) -> Answer:
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    return Answer(response.status_code, dict(response.headers), body)


def _bodies(model: str) -> dict[str, dict[str, Any]]:
    columns = list(ROW)
    return {
        "native": {"rows": [ROW]},
        "v2": {"inputs": [{"name": "x", "shape": [1, len(columns)], "datatype": "FP64", "data": list(ROW.values())}]},
        "mlflow": {"dataframe_records": [ROW]},
    }


def _snapshot(client: httpx.Client, base: str, model: str, every_endpoint: bool) -> Snapshot:
    metrics = {
        f"{name}:{alias}" + (f":{labels['outcome']}" if "outcome" in labels else ""): metric_value(base, name, **labels)
        for alias in ALIASES
        for name, labels in (
            ("serving_alias_missing", {"alias": alias}),
            ("serving_traffic_share", {"alias": alias}),
            ("serving_reloads_total", {"alias": alias, "outcome": "absent"}),
            ("serving_reloads_total", {"alias": alias, "outcome": "reloaded"}),
            ("serving_reloads_total", {"alias": alias, "outcome": "failed"}),
            ("serving_reload_failures_total", {"alias": alias}),
        )
    }
    snapshot = Snapshot(
        readyz=_answer(client.get("/readyz")),
        status={p: client.get(p).status_code for p in ("/ping", "/v2/health/ready", f"/v2/models/{model}/ready")},
        models=client.get("/models").json(),
        metrics=metrics,
    )
    if every_endpoint:
        bodies = _bodies(model)
        for endpoint in ENDPOINTS:
            path = endpoint.path.format(alias="challenger", model=model, version="1")
            snapshot.predictions[path] = _answer(client.post(path, json=bodies[endpoint.codec.name]))
    for cid in CLIENTS:
        answer = client.post("/predict", json={"rows": [ROW]}, headers={"X-Client-Id": cid})
        snapshot.routed[cid] = answer.json().get("alias") if answer.status_code == 200 else str(answer.status_code)
    return snapshot


@pytest.fixture(scope="module")
def journey(stack: MlflowStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journey]:
    tmp = tmp_path_factory.mktemp("missing-aliases")
    model = f"fresh-canary-{secrets.token_hex(3)}"  # never registered: the registry has no such model
    started = time.monotonic()
    try:
        cm = serving_service(
            stack.tracking_uri,
            model,
            aliases=ALIASES,
            routing=CANARY.model_dump(mode="json"),
            poll_seconds=POLL_SECONDS,
            log_path=tmp / "serving.out",
            start_timeout=180,
        )
        serving = cm.__enter__()  # waits for /readyz: 200
    except DevstackError as exc:
        pytest.fail(f"the serving service could not start (or never became ready): {exc}")
    try:
        result = Journey(model, serving, time.monotonic() - started)
        print(f"ready {result.started_seconds:.1f} s after the start, with nothing in the registry")
        with httpx.Client(base_url=serving.base_url, timeout=60) as client:
            result.steps["empty"] = _snapshot(client, serving.base_url, model, every_endpoint=True)

            champion = train_and_register(stack.tracking_uri, model, alias="champion")
            result.versions["champion"] = champion.version
            wait_until(
                lambda: client.post("/predict", json={"rows": [ROW]}).status_code == 200, 120, "the champion to serve"
            )
            time.sleep(5 * POLL_SECONDS)  # several more watcher passes with the challenger still missing
            result.steps["champion"] = _snapshot(client, serving.base_url, model, every_endpoint=False)

            challenger = register_again(stack.tracking_uri, champion, alias="challenger")
            result.versions["challenger"] = challenger.version
            appeared = time.monotonic()
            wait_until(
                lambda: "challenger" in {v["alias"] for v in client.get("/models").json()["variants"]},
                120,
                "the challenger to be loaded by the watcher",
            )
            print(f"challenger loaded {time.monotonic() - appeared:.1f} s after its alias was set")
            result.steps["challenger"] = _snapshot(client, serving.base_url, model, every_endpoint=False)
        yield result
    finally:
        cm.__exit__(None, None, None)


def test_a_fresh_registry_is_ready_and_every_protocol_answers_503_naming_the_missing_aliases(
    journey: Journey,
) -> None:
    step, model = journey.steps["empty"], journey.model
    assert step.readyz.status == 200, step.readyz.body
    assert step.readyz.body["missing"] == ["challenger", "champion"] and step.readyz.body["traffic"] == {}
    assert step.status == {"/ping": 200, "/v2/health/ready": 200, f"/v2/models/{model}/ready": 400}
    assert len(step.predictions) == len(ENDPOINTS)
    for path, answer in step.predictions.items():
        assert answer.status == 503, (path, answer.body)
        assert answer.headers["retry-after"] == str(POLL_SECONDS), path
        assert f"{model}@challenger has no version in the registry yet" in answer.message, (path, answer.body)
        if "/variants/" not in path:
            assert f"{model}@champion has no version in the registry yet" in answer.message, (path, answer.body)
    assert set(step.routed.values()) == {"503"}
    assert step.models["missing"] == list(ALIASES) and step.models["variants"] == []
    for alias in ALIASES:
        assert step.metrics[f"serving_alias_missing:{alias}"] == 1
        assert step.metrics[f"serving_traffic_share:{alias}"] == 0
        assert step.metrics[f"serving_reload_failures_total:{alias}"] == 0
        assert step.metrics[f"serving_reloads_total:{alias}:absent"] == 1  # found missing once, at start
        assert step.metrics[f"serving_reloads_total:{alias}:failed"] == 0


def test_a_challenger_never_promoted_leaves_everything_to_the_champion(journey: Journey) -> None:
    step = journey.steps["champion"]
    assert step.readyz.status == 200 and step.readyz.body["missing"] == ["challenger"]
    assert step.readyz.body["loaded"] == {"champion": journey.versions["champion"]}
    assert step.status["/ping"] == 200 and step.status[f"/v2/models/{journey.model}/ready"] == 200
    assert set(step.routed.values()) == {"champion"}
    assert step.models["traffic"] == {"champion": 1.0}
    assert step.models["weights"] == pytest.approx({"champion": 0.9, "challenger": 0.1})
    assert step.metrics["serving_traffic_share:champion"] == 1 and step.metrics["serving_alias_missing:champion"] == 0
    assert step.metrics["serving_alias_missing:challenger"] == 1
    # loaded once, by the watcher; the challenger was found missing once, at start: the watcher passes since did not
    # try it again, nor count a failure
    assert step.metrics["serving_reloads_total:champion:reloaded"] == 1
    assert step.metrics["serving_reloads_total:challenger:absent"] == 1
    assert step.metrics["serving_reloads_total:challenger:failed"] == 0
    assert step.metrics["serving_reload_failures_total:challenger"] == 0


def test_a_challenger_that_appears_takes_its_share_and_each_change_is_logged_once(journey: Journey) -> None:
    step, model = journey.steps["challenger"], journey.model
    assert step.readyz.status == 200 and step.readyz.body["missing"] == []
    assert step.models["traffic"] == pytest.approx({"champion": 0.9, "challenger": 0.1})
    assert step.routed == {cid: "challenger" if client_point(cid) >= 0.9 else "champion" for cid in CLIENTS}
    assert "challenger" in step.routed.values()
    assert step.metrics["serving_traffic_share:challenger"] == pytest.approx(0.1)
    assert step.metrics["serving_alias_missing:challenger"] == 0
    log = journey.log()
    for alias in ALIASES:
        assert log.count(f"{model}@{alias} has no version in the registry: nothing to load") == 1, alias
        version = journey.versions[alias]
        assert log.count(f"{model}@{alias} now has version {version} in the registry") == 1, alias
    assert '"level":"error"' not in log
