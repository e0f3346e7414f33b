"""In-process tests of the serving service's pure parts: routing, settings, validation, batching, and the API's
wiring: one unknown-alias check and one body-size check answer for every path that needs them (each prediction
endpoint in its protocol's error shape), every request gets an id and one access-log line, the lean path matches
only its endpoints, and the OpenAPI document describes every endpoint."""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from services.common import contract
from services.common.serving_rules import (
    PROCESS_MEMORY_BYTES,
    ABRouting,
    BlueGreenRouting,
    CanaryRouting,
    FixedRouting,
    ShadowRouting,
    loader_process_fits,
)
from services.serving import SERVING_COMMAND
from services.serving.accesslog import AccessLog
from services.serving.app import ENDPOINTS, create_app
from services.serving.batching import MAX_TURNS, MicroBatcher
from services.serving.routes.deps import ServingState, known_alias
from services.serving.routes.lean import LeanPath, by_alias
from services.serving.routing import Router, client_point
from services.serving.schema import Column, InputValidator, RequestError
from services.serving.settings import Settings, SettingsError
from tests.services.serving.conftest import call

REPO = Path(__file__).resolve().parents[3]
Z = 4.5  # normal bound: a correct router falls outside with probability < 1e-5


def within_binomial(k: int, n: int, p: float) -> bool:
    sd = math.sqrt(n * p * (1 - p))
    return n * p - Z * sd <= k <= n * p + Z * sd


# --- routing ---------------------------------------------------------------------------------------
def test_canary_hash_shares_and_stickiness() -> None:
    router = Router(CanaryRouting(mode="canary", primary="champion", challenger="challenger", percent=10), lambda: None)
    ids = [f"client-{i}" for i in range(20000)]
    first = [router.choose(i).alias for i in ids]
    assert within_binomial(first.count("challenger"), len(ids), 0.10)
    assert [router.choose(i).alias for i in ids] == first  # same client, same variant
    # the choice is the documented pure function of the id (same in every worker and replica)
    assert all((client_point(i) >= 0.9) == (a == "challenger") for i, a in zip(ids, first, strict=True))


def test_ab_random_shares_without_client_id() -> None:
    router = Router(ABRouting(mode="ab", weights={"a": 5, "b": 3, "c": 2}), lambda: None)
    n = 20000
    picks = [router.choose(None).alias for _ in range(n)]
    for alias, p in {"a": 0.5, "b": 0.3, "c": 0.2}.items():
        assert within_binomial(picks.count(alias), n, p), (alias, picks.count(alias))
    assert router.weights() == pytest.approx({"a": 0.5, "b": 0.3, "c": 0.2})


def test_zero_weight_alias_never_chosen() -> None:
    router = Router(CanaryRouting(mode="canary", primary="p", challenger="c", percent=0), lambda: None)
    assert {router.choose(f"id{i}").alias for i in range(2000)} == {"p"}


def test_blue_green_follows_active_and_shadow_names_copy() -> None:
    active = {"alias": "blue"}
    router = Router(BlueGreenRouting(mode="blue-green", active="blue", standby="green"), lambda: active["alias"])
    assert router.choose("x").alias == "blue"
    active["alias"] = "green"
    assert router.choose("x").alias == "green"
    shadow = Router(ShadowRouting(mode="shadow", primary="champion", shadow="challenger"), lambda: None)
    decision = shadow.choose(None)
    assert (decision.alias, decision.shadow) == ("champion", "challenger")
    assert Router(FixedRouting(mode="fixed", alias="champion"), lambda: None).choose("x").alias == "champion"


# --- settings --------------------------------------------------------------------------------------
def test_settings_defaults_and_routing_aliases(env: pytest.MonkeyPatch) -> None:
    s = Settings.from_env()
    assert s.routing == FixedRouting(mode="fixed", alias="champion")
    assert s.aliases == ("champion",)
    assert s.port == contract.SERVING_PORT
    env.setenv(contract.SERVING_ALIASES.name, "champion,extra")
    env.setenv(
        contract.SERVING_ROUTING.name,
        '{"mode": "canary", "primary": "champion", "challenger": "challenger", "percent": 5}',
    )
    assert Settings.from_env().aliases == ("champion", "challenger", "extra")


@pytest.mark.parametrize(
    ("var", "value"),
    [
        (contract.SERVING_ROUTING, '{"mode": "canary", "primary": "a", "challenger": "a", "percent": 5}'),
        (contract.SERVING_ROUTING, '{"mode": "canary", "primary": "a", "challenger": "b", "percent": 150}'),
        (contract.SERVING_ROUTING, '{"mode": "weird"}'),
        (contract.SERVING_ROUTING, "not json"),
        (contract.SERVING_ROUTING, '{"mode": "ab", "weights": {}}'),
        (contract.SERVING_ALIASES, "champion,bad alias!"),
        (contract.SERVING_POLL_SECONDS, "soon"),
        (contract.SERVING_MAX_BATCH, "0"),
    ],
)
def test_invalid_settings_name_the_variable(env: pytest.MonkeyPatch, var: contract.EnvVar, value: str) -> None:
    env.setenv(var.name, value)
    with pytest.raises(SettingsError, match=var.name):
        Settings.from_env()


def test_start_command_exits_2_naming_a_missing_variable(tmp_path: Path) -> None:
    environ = {k: v for k, v in os.environ.items() if k not in {var.name for var in contract.ALL_VARS}}
    environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environ.get('PATH', '')}"
    done = subprocess.run(list(SERVING_COMMAND), cwd=REPO, env=environ, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert contract.MLFLOW_TRACKING_URI.name in done.stderr


# --- validation ------------------------------------------------------------------------------------
COLS = (Column("a", "double"), Column("b", "double"), Column("n", "long"))


def numeric() -> InputValidator:
    return InputValidator(COLS, max_batch=3)


def test_valid_rows_become_a_float_matrix() -> None:
    out = numeric().validate({"rows": [{"a": 1.5, "b": 2, "n": 3}, {"n": 4.0, "b": -1.0, "a": 0}]})
    assert isinstance(out, np.ndarray) and out.dtype == np.float64
    assert out.tolist() == [[1.5, 2.0, 3.0], [0.0, -1.0, 4.0]]


@pytest.mark.parametrize(
    ("payload", "status", "field"),
    [
        ({"rows": [{"a": 1.0, "b": 2.0}]}, 422, "rows[0].n"),
        ({"rows": [{"a": 1.0, "b": 2.0, "n": 1, "x": 1}]}, 422, "rows[0].x"),
        ({"rows": [{"a": "1", "b": 2.0, "n": 1}]}, 422, "rows[0].a"),
        ({"rows": [{"a": True, "b": 2.0, "n": 1}]}, 422, "rows[0].a"),
        ({"rows": [{"a": None, "b": 2.0, "n": 1}]}, 422, "rows[0].a"),
        ({"rows": [{"a": float("nan"), "b": 2.0, "n": 1}]}, 422, "rows[0].a"),
        ({"rows": [{"a": 1.0, "b": float("-inf"), "n": 1}]}, 422, "rows[0].b"),
        ({"rows": [{"a": 1.0, "b": 2.0, "n": 1.5}]}, 422, "rows[0].n"),
        ({"rows": [{"a": 1.0, "b": 2.0, "n": 10**400}]}, 422, "rows[0].n"),
        ({"rows": [{"a": 1.0, "b": [2.0], "n": 1}]}, 422, "rows[0].b"),
        ({"rows": [{"a": 1.0, "b": 2.0, "n": 1}, 7]}, 422, "rows[1]"),
        ({"rows": []}, 422, "rows"),
        ({"rows": [{"a": 1.0, "b": 2.0, "n": 1}] * 4}, 413, "rows"),
        ({"rows": {"a": 1}}, 422, "rows"),
        ({"data": []}, 422, "rows"),
        ({"rows": [{"a": 1.0, "b": 2.0, "n": 1}], "extra": 1}, 422, "extra"),
        ([1, 2], 422, "body"),
    ],
)
def test_bad_rows_are_4xx_naming_the_field(payload: Any, status: int, field: str) -> None:
    with pytest.raises(RequestError) as err:
        numeric().validate(payload)
    assert (err.value.status, err.value.field) == (status, field)
    assert field.split(".")[-1] in err.value.message or field in err.value.message


def test_mixed_schema_uses_a_frame_and_checks_types() -> None:
    v = InputValidator((Column("x", "double"), Column("s", "string"), Column("o", "double", required=False)), 10)
    assert not v.numeric
    frame = v.validate({"rows": [{"x": 1.0, "s": "a"}, {"x": 2, "s": "b", "o": None}]})
    assert not isinstance(frame, np.ndarray)
    assert list(frame.columns) == ["x", "s", "o"] and len(frame) == 2
    for bad, field in (
        ({"x": 1.0, "s": 3}, "rows[0].s"),
        ({"s": "a"}, "rows[0].x"),
        ({"x": float("inf"), "s": "a"}, "rows[0].x"),
    ):
        with pytest.raises(RequestError) as err:
            v.validate({"rows": [bad]})
        assert err.value.field == field


# --- micro-batching --------------------------------------------------------------------------------
def test_micro_batcher_shares_one_call_and_isolates_failures() -> None:
    calls: list[int] = []

    def predict(matrix: np.ndarray) -> list[Any]:
        calls.append(len(matrix))
        if np.isnan(matrix).any():
            raise ValueError("nan")
        return matrix[:, 0].tolist()

    async def run() -> list[Any]:
        batcher = MicroBatcher(predict)
        inputs = [np.array([[float(i)], [float(i) + 0.5]]) for i in range(5)] + [np.array([[np.nan]])]
        return await asyncio.gather(*(batcher.predict(m) for m in inputs), return_exceptions=True)

    results = asyncio.run(run())
    assert results[:5] == [[float(i), float(i) + 0.5] for i in range(5)]
    assert isinstance(results[5], ValueError)
    assert calls[0] == 11  # all six requests were stacked into one call first; it failed...
    assert sorted(calls[1:]) == [1, 2, 2, 2, 2, 2]  # ...so each was predicted on its own


def test_micro_batcher_waits_while_requests_keep_joining() -> None:
    def stream(requests: int) -> tuple[list[int], list[Any]]:
        """`requests` requests, one per loop turn; the sizes of the model calls and the answers."""
        calls: list[int] = []

        def predict(matrix: np.ndarray) -> list[Any]:
            calls.append(len(matrix))
            return matrix[:, 0].tolist()

        async def run() -> list[Any]:
            batcher = MicroBatcher(predict)
            tasks = []
            for i in range(requests):
                tasks.append(asyncio.ensure_future(batcher.predict(np.array([[float(i)]]))))
                await asyncio.sleep(0)  # one turn of the loop
            return list(await asyncio.gather(*tasks))

        return calls, asyncio.run(run())

    assert stream(1) == ([1], [[0.0]])  # a lone request is not held back
    calls, answers = stream(5)
    assert calls == [5] and answers == [[float(i)] for i in range(5)]  # joining every turn: one call
    calls, answers = stream(3 * MAX_TURNS)
    assert len(calls) > 1 and max(calls) <= MAX_TURNS and sum(calls) == 3 * MAX_TURNS  # but not forever
    assert answers == [[float(i)] for i in range(3 * MAX_TURNS)]


def test_micro_batcher_serves_one_event_loop_after_another() -> None:
    batcher = MicroBatcher(lambda matrix: matrix[:, 0].tolist())

    async def run(offset: float) -> list[Any]:
        return list(await asyncio.gather(*(batcher.predict(np.array([[offset + i]])) for i in range(3))))

    for offset in (0.0, 10.0, 20.0):  # a new loop each time (as in tests; a served process has one)
        assert asyncio.run(run(offset)) == [[offset], [offset + 1], [offset + 2]]


def test_native_predictions_skip_only_the_checks_the_service_made() -> None:
    """In the loop's thread scikit-learn trusts the validated matrix; every other thread keeps its defaults."""
    import threading

    import sklearn

    from services.serving.loader import trust_validated_inputs

    seen: dict[str, dict[str, Any]] = {}

    def loop_thread() -> None:
        trust_validated_inputs()
        seen["loop"] = sklearn.get_config()

    thread = threading.Thread(target=loop_thread)
    thread.start()
    thread.join()
    other = threading.Thread(target=lambda: seen.__setitem__("other", sklearn.get_config()))
    other.start()
    other.join()
    assert seen["loop"]["assume_finite"] is True and seen["loop"]["skip_parameter_validation"] is True
    assert seen["other"]["assume_finite"] is False and seen["other"]["skip_parameter_validation"] is False
    # what the model is spared is refused before it: a non-finite value never reaches a native model
    validator = InputValidator((Column("x", "double", True),), 10)
    with pytest.raises(RequestError) as err:
        validator.validate({"rows": [{"x": math.inf}]})
    assert err.value.status == 422 and err.value.field == "rows[0].x"


def test_dataframe_sniffing_of_a_matrix_is_remembered_with_the_same_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """scikit-learn's dataframe detection (narwhals) answers as before for every kind of input, and for a numpy
    matrix or None it no longer walks the type with `inspect.getattr_static` after the first time."""
    import inspect

    import narwhals._utils as nw_utils
    import narwhals.stable.v2 as nw
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from services.serving.loader import remember_dataframe_sniffing

    class Protocol:  # an object that says it is a narwhals dataframe
        def __narwhals_dataframe__(self) -> None: ...

    samples = [np.zeros((2, 2)), None, pd.DataFrame({"a": [1.0]}), pd.Series([1.0]), [[1.0]], Protocol()]

    def answers() -> list[tuple[bool, bool]]:
        return [(nw.dependencies.is_into_dataframe(x), nw.dependencies.is_into_series(x)) for x in samples]

    matrix = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0], [3.0, 1.0]])
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(matrix, [0, 0, 1, 1])
    before, predicted = answers(), model.predict(matrix).tolist()
    assert before == [(False, False), (False, False), (True, False), (False, True), (False, False), (True, False)]
    names = ((nw_utils, "_hasattr_static"), (nw.dependencies, "is_into_dataframe"), (nw.dependencies, "is_into_series"))
    for module, name in names:
        monkeypatch.setattr(module, name, getattr(module, name))  # undone after the test
    assert remember_dataframe_sniffing()
    wrapped = [getattr(module, name) for module, name in names]
    assert remember_dataframe_sniffing() and [getattr(module, name) for module, name in names] == wrapped  # once
    assert answers() == before and model.predict(matrix).tolist() == predicted
    walks: list[type] = []
    real = inspect.getattr_static

    def counting(obj: Any, attr: str, default: Any = None) -> Any:
        walks.append(type(obj))
        return real(obj, attr, default)

    monkeypatch.setattr(nw_utils, "getattr_static", counting)
    model.predict(matrix)
    nw.dependencies.is_into_dataframe(samples[2])
    assert np.ndarray not in walks and type(None) not in walks and pd.DataFrame in walks
    # a narwhals without these functions: nothing is changed
    for module, name in ((nw.dependencies, "is_into_dataframe"), (nw.dependencies, "is_into_series")):
        monkeypatch.setattr(module, name, getattr(module, name))
        monkeypatch.delattr(module, name)
    monkeypatch.delattr(nw_utils, "_hasattr_static")
    assert remember_dataframe_sniffing() is False and not hasattr(nw_utils, "_hasattr_static")


def test_answers_are_counted_in_bulk_as_observe_and_inc_would_count_them() -> None:
    """A variant's 200 answers are added to the request counter and the latency histogram at the end of the loop
    turn, with exactly the samples one `observe` and one `inc` per answer give (bucket edges included)."""
    from prometheus_client import generate_latest

    from services.serving.observability import Metrics
    from services.serving.variants import VariantMeters, observe_all

    bounds = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
    latencies = [0.0, 0.0004, *bounds, 0.0031, 0.0049, 0.005, 3.0, 120.0, 0.0031]

    def exposition(metrics: Metrics) -> list[str]:
        lines = generate_latest(metrics.registry).decode().splitlines()
        return [line for line in lines if "_created" not in line and line.startswith("serving_request")]

    reference, bulk = Metrics(), Metrics()
    one_by_one = reference.latency.labels("champion", "3")
    for seconds in latencies:
        one_by_one.observe(seconds)
        reference.requests.labels("champion", "3", "200").inc()
    meters = VariantMeters(bulk, "champion", "3")

    async def answer_in_one_turn() -> list[str]:
        for seconds in latencies:
            meters.answered(seconds)
        counted_before_the_turn_ends = exposition(bulk)
        await asyncio.sleep(0)
        return counted_before_the_turn_ends

    assert "200" not in "".join(asyncio.run(answer_in_one_turn()))
    assert exposition(bulk) == exposition(reference)
    assert 'serving_requests_total{alias="champion",status="200",version="3"} 20.0' in exposition(bulk)
    meters.answered(0.002)  # no running loop: counted at once
    assert 'serving_requests_total{alias="champion",status="200",version="3"} 21.0' in exposition(bulk)

    class Plain:  # a histogram without prometheus_client's internals: observed value by value
        def __init__(self) -> None:
            self.seen: list[float] = []

        def observe(self, value: float) -> None:
            self.seen.append(value)

    plain = Plain()
    observe_all(plain, latencies)
    assert plain.seen == latencies


# --- loader process policy -------------------------------------------------------------------------
def test_loader_process_only_when_memory_allows(tmp_path: Path) -> None:
    from services.serving.loader import memory_limit_bytes

    v2 = tmp_path / "memory.max"
    v2.write_text("max\n")
    assert memory_limit_bytes((str(v2),)) is None
    v2.write_text(f"{512 * 2**20}\n")
    assert memory_limit_bytes((str(tmp_path / "absent"), str(v2))) == 512 * 2**20
    v1 = tmp_path / "limit_in_bytes"
    v1.write_text("9223372036854771712\n")  # cgroup v1 "unlimited"
    assert memory_limit_bytes((str(v1),)) is None
    assert loader_process_fits(2, None)
    assert not loader_process_fits(1, 512 * 2**20)  # a 512Mi limit: threads
    assert not loader_process_fits(2, 1 * 2**30)  # the "small" profile (1Gi, two workers): threads
    assert loader_process_fits(1, 2 * PROCESS_MEMORY_BYTES)
    assert not loader_process_fits(2, 2 * PROCESS_MEMORY_BYTES)


# --- API wiring --------------------------------------------------------------------------------------
@pytest.fixture
def offline_app(env: pytest.MonkeyPatch) -> Iterator[FastAPI]:
    """The application with the state its lifespan builds, but nothing loaded (no registry is reached)."""
    env.setenv(contract.SERVING_ALIASES.name, "champion,challenger")
    env.setenv(contract.RELOAD_TOKEN.name, "token")
    env.setenv(contract.SERVING_MAX_BATCH.name, "1")
    app = create_app()
    app.state.serving = ServingState.build(app.state.settings)
    yield app
    app.state.serving.manager.close()


def _calls(dependant: Dependant) -> set[Any]:
    return {dependant.call} | {call for sub in dependant.dependencies for call in _calls(sub)}


def test_unknown_alias_is_one_404_on_every_alias_path(offline_app: FastAPI) -> None:
    app = offline_app
    routes = [r for r in app.routes if isinstance(r, APIRoute) and "{alias}" in r.path]
    assert {r.path for r in routes} == {"/variants/{alias}/reload"}
    assert all(known_alias in _calls(r.dependant) for r in routes)
    lean = [e for e in ENDPOINTS if "{alias}" in e.path]
    assert [(e.path, e.choose) for e in lean] == [("/variants/{alias}/predict", by_alias)]
    expected = {"detail": "unknown alias 'nope'; this service serves ['challenger', 'champion']", "field": "alias"}
    for method, path in [("POST", r.path) for r in routes] + [(e.method, e.path) for e in lean]:
        path = path.replace("{alias}", "nope")
        response = call(app, method, path, json={"rows": [{"x": 1.0}]}, headers={"Authorization": "Bearer token"})
        assert (response.status_code, response.json()) == (404, expected), path
    # the admin token is checked before the alias: no alias is revealed without it
    assert call(app, "POST", "/variants/nope/reload").status_code == 401


def test_oversized_body_is_one_413_on_every_prediction_endpoint(offline_app: FastAPI) -> None:
    app = offline_app
    limit = 1 * 4096 + 65536  # max_batch 1
    paths = {e.path: e.path.format(alias="champion", model="iris", version="1") for e in ENDPOINTS}
    assert set(paths) == {
        "/predict",
        "/variants/{alias}/predict",
        "/v2/models/{model}/infer",
        "/v2/models/{model}/versions/{version}/infer",
        "/invocations",
    }
    shapes = {
        "native": {"detail": f"request body larger than {limit} bytes", "field": "body"},
        "v2": {"error": f"request body larger than {limit} bytes"},
        "mlflow": {"error_code": "BAD_REQUEST", "message": f"request body larger than {limit} bytes"},
    }
    for endpoint in ENDPOINTS:
        path = paths[endpoint.path]
        response = call(app, "POST", path, content=b" " * (limit + 1), headers={"Content-Type": "application/json"})
        assert response.status_code == 413, path
        assert response.json() == shapes[endpoint.codec.name], path
    rejected = f'serving_rejected_requests_total{{status="413"}} {float(len(ENDPOINTS))}'
    assert rejected in call(app, "GET", "/metrics").text


def test_every_request_gets_an_id_and_one_access_log_line(
    offline_app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("INFO", logger="mlops.serving.access"):
        given = call(offline_app, "POST", "/predict", json={"rows": []}, headers={"X-Request-Id": "rid-7"})
        made = call(offline_app, "GET", "/healthz")
    assert given.headers["x-request-id"] == "rid-7" and given.status_code == 503
    assert len(made.headers["x-request-id"]) == 32
    lines = [r for r in caplog.records if r.name == "mlops.serving.access"]
    assert [(r.request_id, r.path, r.status) for r in lines] == [  # type: ignore[attr-defined]
        ("rid-7", "/predict", 503),
        (made.headers["x-request-id"], "/healthz", 200),
    ]


def test_lean_path_matches_exact_paths_and_templates_only() -> None:
    lean = LeanPath(lambda *a: None, ENDPOINTS, AccessLog("test"))  # type: ignore[arg-type, return-value]
    assert lean.match("POST", "/predict") == (ENDPOINTS[0], {})
    matched = lean.match("POST", "/v2/models/iris/versions/3/infer")
    assert matched is not None and matched[1] == {"model": "iris", "version": "3"}
    assert lean.match("POST", "/variants/a-b_1/predict")[1] == {"alias": "a-b_1"}  # type: ignore[index]
    for method, path in [
        ("GET", "/predict"),
        ("POST", "/predict/"),
        ("POST", "/variants//predict"),
        ("POST", "/v2/models/iris/infer/x"),
        ("POST", "/v2/models/iris/versions/3/ready"),
    ]:
        assert lean.match(method, path) is None, (method, path)


def test_openapi_describes_every_endpoint(offline_app: FastAPI) -> None:
    document = call(offline_app, "GET", "/openapi.json").json()
    for endpoint in ENDPOINTS:
        operation = document["paths"][endpoint.path][endpoint.method.lower()]
        assert operation["requestBody"]["required"] is True
        assert {"200", "401", "403", "413", "429", "503"} <= set(operation["responses"]), endpoint.path
        assert [p["name"] for p in operation.get("parameters", [])] == [
            s[1:-1] for s in endpoint.segments if s.startswith("{")
        ]
    for path in ("/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/{model}", "/ping", "/version"):
        assert "get" in document["paths"][path], path
    schemas = document["components"]["schemas"]
    assert {"PredictRequest", "PredictResponse", "V2InferenceRequest", "V2InferenceResponse", "V2Error"} <= set(schemas)


def test_the_service_serves_every_protocol_path_the_ingress_exposes(offline_app: FastAPI) -> None:
    """The contract's inference-protocol paths (`components.serving` exposes them) are the service's routes."""
    served = {r.path for r in offline_app.routes if isinstance(r, APIRoute)} | {e.path for e in ENDPOINTS}
    assert {*contract.V2_SERVER_PATHS, *contract.MLFLOW_SCORING_PATHS} <= served
    model_paths = {p for p in served if p.startswith("/v2/models/")}
    under_prefix = contract.V2_MODEL_PATH
    assert under_prefix in model_paths and all(
        p.startswith(under_prefix + "/") or p == under_prefix for p in model_paths
    )
    assert {
        f"{under_prefix}/ready",
        f"{under_prefix}/infer",
        f"{under_prefix}/versions/{{version}}/infer",
    } <= model_paths
