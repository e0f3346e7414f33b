"""Hostile requests and a hostile pod against the real service: integers with hundreds or thousands of digits
are 422 naming the field (never 500); an unexpected model error is a 500 naming the request's own id; a burst
beyond the concurrency limit is answered 429 with Retry-After while the admitted requests finish; and a log
directory that cannot be written does not stop the service (stdout only, reported by /readyz and a metric).

The model is a pyfunc whose rows say what to do: `ok` answers x, `boom` raises, `hold` waits until the test
creates a release file, so that the requests in flight are known without any timing."""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from devstack.models import pip_requirements
from devstack.serving import ServingProcess, serving_service
from devstack.stack import MlflowStack
from services.common import contract
from tests.services.serving.conftest import metric_value, wait_until

pytestmark = [pytest.mark.servers, pytest.mark.slow]

LIMIT = 2
PATHS = ("/predict", "/variants/champion/predict")

MODEL_CODE = """
import os
import time

import mlflow
import pandas as pd

RELEASE = {release!r}


class Hostile(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input: pd.DataFrame, params=None):
        out = []
        for action, x in zip(model_input["action"], model_input["x"]):
            if action == "boom":
                raise RuntimeError("the model failed")
            if action == "hold":
                deadline = time.monotonic() + 120
                while not os.path.exists(RELEASE) and time.monotonic() < deadline:
                    time.sleep(0.02)
            out.append(float(x))
        return out


mlflow.models.set_model(Hostile())
"""


def register_hostile(stack: MlflowStack, name: str, code_dir: Path, release: Path) -> None:
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    code = code_dir / "hostile.py"
    code.write_text(MODEL_CODE.format(release=str(release)))
    example = pd.DataFrame({"action": ["ok", "ok"], "x": [1.0, 2.0]})
    mlflow.set_tracking_uri(stack.tracking_uri)
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(code),
            input_example=example,
            signature=infer_signature(example, [1.0, 2.0]),
            pip_requirements=pip_requirements(),
            registered_model_name=name,
        )
    mlflow.MlflowClient(stack.tracking_uri).set_registered_model_alias(name, "champion", info.registered_model_version)


@dataclass
class Hostile:
    svc: ServingProcess
    release: Path
    output: Path
    log_dir: Path


@pytest.fixture(scope="module")
def hostile(stack: MlflowStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    tmp = tmp_path_factory.mktemp("hostile")
    release = tmp / "release"
    register_hostile(stack, "hostile-pyfunc", tmp, release)
    occupied = tmp / "volume"
    occupied.write_text("a file where the log volume should be\n")
    log_dir = occupied / "logs"  # cannot be created, whoever runs the tests (root included)
    output = tmp / "service.out"
    with serving_service(
        stack.tracking_uri,
        "hostile-pyfunc",
        log_dir=log_dir,
        log_path=output,
        extra_env={contract.SERVING_MAX_IN_FLIGHT.name: str(LIMIT)},
    ) as svc:
        try:
            yield Hostile(svc, release, output, log_dir)
        finally:
            release.touch()  # never leave a held request behind


def rows(action: str = "ok", x: str = "1.5") -> bytes:
    return f'{{"rows": [{{"action": "{action}", "x": {x}}}]}}'.encode()


def post(base: str, body: bytes, path: str = "/predict", headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(
        f"{base}{path}", content=body, headers={"Content-Type": "application/json", **(headers or {})}, timeout=150
    )


def test_an_unwritable_log_directory_does_not_stop_the_service(hostile: Hostile) -> None:
    base = hostile.svc.base_url
    ready = httpx.get(f"{base}/readyz", timeout=30)
    assert ready.status_code == 200, ready.text
    log_file = ready.json()["log_file"]
    assert log_file["directory"] == str(hostile.log_dir) and log_file["path"] is None
    assert "NotADirectoryError" in log_file["error"]
    assert metric_value(base, "serving_log_file_writable") == 0
    answer = post(base, rows(), headers={"X-Request-Id": "logs-to-stdout"})
    assert answer.status_code == 200 and answer.json()["predictions"] == [1.5]
    wait_until(lambda: "logs-to-stdout" in hostile.output.read_text(), 30, "the access line on stdout")
    assert "is not writable, logging to stdout only" in hostile.output.read_text()


@pytest.mark.parametrize("digits", [400, 5000])
@pytest.mark.parametrize("path", PATHS)
def test_integers_with_many_digits_are_422_naming_the_field(hostile: Hostile, path: str, digits: int) -> None:
    for number in ("1" + "0" * (digits - 1), "-" + "9" * digits):
        answer = post(hostile.svc.base_url, rows(x=number), path)
        assert answer.status_code == 422, answer.text[:300]
        body = answer.json()
        assert body["field"] == "rows[0].x" and "rows[0].x" in body["detail"] and "out of range" in body["detail"]


def test_an_unexpected_error_is_500_naming_the_request_id(hostile: Hostile) -> None:
    base = hostile.svc.base_url
    answer = post(base, rows("boom"), headers={"X-Request-Id": "hostile-rid-1"})
    assert answer.status_code == 500, answer.text
    assert answer.json()["detail"] == "internal error (RuntimeError); request id hostile-rid-1"
    assert answer.headers["x-request-id"] == "hostile-rid-1"
    generated = post(base, rows("boom"), "/variants/champion/predict")
    rid = generated.headers["x-request-id"]
    assert generated.status_code == 500 and len(rid) == 32
    assert generated.json()["detail"].endswith(f"request id {rid}") and "None" not in generated.text
    wait_until(lambda: "hostile-rid-1" in _errors_logged(hostile.output), 30, "the error logged with its request id")


def _errors_logged(output: Path) -> list[str]:
    """The request ids of the "unhandled error" lines the service wrote to stdout."""
    ids = []
    for line in output.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and str(record.get("msg", "")).startswith("unhandled error"):
            ids.append(str(record.get("request_id")))
    return ids


def test_a_burst_beyond_the_concurrency_limit_is_429_with_retry_after(hostile: Hostile) -> None:
    base = hostile.svc.base_url
    rejected_before = metric_value(base, "serving_rejected_requests_total", status="429")
    with concurrent.futures.ThreadPoolExecutor(max_workers=LIMIT) as pool:
        held = [pool.submit(post, base, rows("hold", str(i))) for i in range(LIMIT)]
        try:
            wait_until(lambda: metric_value(base, "serving_in_flight") == LIMIT, 60, f"{LIMIT} requests in flight")
            burst = [post(base, rows(), path) for path in PATHS * 3]
            assert [r.status_code for r in burst] == [429] * len(burst), [r.text for r in burst]
            assert {r.headers["retry-after"] for r in burst} == {"1"}
            assert "in flight" in burst[0].json()["detail"]
            assert httpx.get(f"{base}/healthz", timeout=30).status_code == 200  # probes are not limited
        finally:
            hostile.release.touch()
        answers = [f.result() for f in held]
    assert [a.status_code for a in answers] == [200] * LIMIT
    assert sorted(a.json()["predictions"][0] for a in answers) == [float(i) for i in range(LIMIT)]
    assert metric_value(base, "serving_in_flight") == 0
    assert post(base, rows()).status_code == 200
    assert metric_value(base, "serving_rejected_requests_total", status="429") == rejected_before + len(burst)
