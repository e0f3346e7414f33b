"""The real service speaks the protocols inference clients already use, to their own client libraries: Triton's
V2 client (`tritonclient.http`: health, readiness, metadata, inference with binary and JSON tensors, one loaded
version by number, errors), the exact bodies KServe's SDK sends (`model_name` in them; a `model_name` of
another model is a 400 naming both) and MLflow's scoring client (`ScoringServerClient`: ping, version, DataFrame and
array inputs) plus the serving example MLflow logged with the model and CSV; every answer equals `/predict`'s for
the same rows, is routed and counted like it, and every bad request is refused naming the field."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton
from mlflow.pyfunc.scoring_server.client import ScoringServerClient
from tritonclient.utils import InferenceServerException

from devstack.models import iris_rows, train_and_register
from devstack.serving import ServingProcess, serving_service
from devstack.stack import MlflowStack
from tests.services.serving.conftest import kserve_v2_request, metric_value

pytestmark = [pytest.mark.servers, pytest.mark.slow]

MODEL = "protocols-iris"
ROWS = iris_rows(30, offset=35)  # classes 0 and 1
NAMES = list(ROWS[0])
MATRIX = np.array([[r[n] for n in NAMES] for r in ROWS], dtype=np.float64)


@pytest.fixture(scope="module")
def service(stack: MlflowStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServingProcess]:
    train_and_register(stack.tracking_uri, MODEL, alias="champion", C=1.0)
    train_and_register(stack.tracking_uri, MODEL, alias="challenger", C=0.01)
    logs = tmp_path_factory.mktemp("protocols")
    with serving_service(
        stack.tracking_uri,
        MODEL,
        aliases=("champion", "challenger"),
        max_batch=40,
        log_dir=logs,
        log_path=logs / "service.out",
    ) as svc:
        yield svc


def reference(svc: ServingProcess, alias: str | None = None) -> tuple[str, list[int]]:
    """(version, predictions) of `/predict` (or one alias) for ROWS."""
    path = "/predict" if alias is None else f"/variants/{alias}/predict"
    answer = httpx.post(f"{svc.base_url}{path}", json={"rows": ROWS}, timeout=30).json()
    return answer["version"], answer["predictions"]


@pytest.fixture(scope="module")
def client(service: ServingProcess) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(url=f"127.0.0.1:{service.port}") as c:
        yield c


def columns(binary: bool = True) -> list[triton.InferInput]:
    inputs = []
    for j, name in enumerate(NAMES):
        item = triton.InferInput(name, [len(ROWS)], "FP64")
        item.set_data_from_numpy(MATRIX[:, j].copy(), binary_data=binary)
        inputs.append(item)
    return inputs


# --- Open Inference Protocol v2 through tritonclient -------------------------------------------------------------
def test_v2_health_readiness_and_metadata(service: ServingProcess, client: triton.InferenceServerClient) -> None:
    champion, _ = reference(service, "champion")
    challenger, _ = reference(service, "challenger")
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(MODEL)
    assert client.is_model_ready(MODEL, champion) and client.is_model_ready(MODEL, challenger)
    assert not client.is_model_ready(MODEL, "999")
    assert client.get_server_metadata()["extensions"] == ["binary_tensor_data"]
    meta = client.get_model_metadata(MODEL)
    assert meta["name"] == MODEL and set(meta["versions"]) == {champion, challenger}
    assert [(t["name"], t["datatype"]) for t in meta["inputs"]] == [(n, "FP64") for n in NAMES]
    assert meta["outputs"] == [{"name": "predict", "datatype": "INT64", "shape": [-1]}]
    with pytest.raises(InferenceServerException) as err:
        client.get_model_metadata("no-such-model")
    assert err.value.status() == "404" and "no-such-model" in err.value.message()


@pytest.mark.parametrize("binary", [True, False], ids=["binary tensors", "json tensors"])
def test_v2_infer_per_column_equals_predict(
    service: ServingProcess, client: triton.InferenceServerClient, binary: bool
) -> None:
    version, expected = reference(service)
    outputs = None if binary else [triton.InferRequestedOutput("predict", binary_data=False)]
    result = client.infer(MODEL, columns(binary), outputs=outputs, request_id="client-id-1")
    assert result.as_numpy("predict").tolist() == expected
    response = result.get_response()
    assert (response["model_version"], response["id"], response["parameters"]["alias"]) == (
        version,
        "client-id-1",
        "champion",
    )


def test_v2_infer_one_2d_tensor_and_one_version(service: ServingProcess, client: triton.InferenceServerClient) -> None:
    challenger, expected = reference(service, "challenger")
    matrix = triton.InferInput("input-0", list(MATRIX.shape), "FP64")
    matrix.set_data_from_numpy(MATRIX)
    result = client.infer(MODEL, [matrix], model_version=challenger)
    assert result.as_numpy("predict").tolist() == expected
    assert result.get_response()["model_version"] == challenger


def test_v2_errors_name_the_field(service: ServingProcess, client: triton.InferenceServerClient) -> None:
    strings = triton.InferInput(NAMES[0], [len(ROWS)], "BYTES")
    strings.set_data_from_numpy(np.array([b"x"] * len(ROWS), dtype=np.object_))
    with pytest.raises(InferenceServerException) as err:
        client.infer(MODEL, [strings, *columns()[1:]])
    assert err.value.status() == "400" and err.value.message().startswith("inputs[0].data[0]")
    with pytest.raises(InferenceServerException) as err:
        client.infer(MODEL, columns()[:3])
    assert err.value.status() == "400" and NAMES[3] in err.value.message()
    with pytest.raises(InferenceServerException) as err:
        client.infer(MODEL, columns(), model_version="999")
    assert err.value.status() == "404" and err.value.message().startswith("version")
    url = f"{service.base_url}/v2/models/{MODEL}/infer"
    nan = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, "NaN"]}]}
    answer = httpx.post(url, content=json.dumps(nan).replace('"NaN"', "NaN"), timeout=30)
    assert answer.status_code == 400 and answer.json()["error"].startswith("inputs[0].data[3]")
    malformed = httpx.post(url, content=b"{", timeout=30)
    assert malformed.status_code == 400 and malformed.json()["error"].startswith("malformed JSON")
    too_many = {"inputs": [{"name": "x", "shape": [41, 4], "datatype": "FP64", "data": [1.0] * 164}]}
    assert httpx.post(url, json=too_many, timeout=30).status_code == 413
    unknown = httpx.post(f"{service.base_url}/v2/models/other/infer", json=nan, timeout=30)
    assert unknown.status_code == 404 and set(unknown.json()) == {"error"}


@pytest.mark.parametrize("binary", [False, True], ids=["json tensors", "binary tensors"])
def test_v2_kserve_sdk_requests_equal_predict(service: ServingProcess, binary: bool) -> None:
    champion, expected = reference(service)
    challenger, expected_challenger = reference(service, "challenger")
    columns = [(name, MATRIX[:, j].copy(), "FP64") for j, name in enumerate(NAMES)]
    for path, version, predictions in (
        (f"/v2/models/{MODEL}/infer", champion, expected),
        (f"/v2/models/{MODEL}/versions/{challenger}/infer", challenger, expected_challenger),
    ):
        body, headers = kserve_v2_request(MODEL, columns, binary=binary, request_id="kserve-7")
        answer = httpx.post(f"{service.base_url}{path}", content=body, headers=headers, timeout=30)
        assert answer.status_code == 200, answer.text
        result = answer.json()
        assert (result["model_name"], result["model_version"], result["id"]) == (MODEL, version, "kserve-7")
        assert result["outputs"][0]["data"] == predictions
    body, headers = kserve_v2_request("other-model", columns)
    refused = httpx.post(f"{service.base_url}/v2/models/{MODEL}/infer", content=body, headers=headers, timeout=30)
    assert refused.status_code == 400 and refused.json()["error"].startswith("model_name: 'other-model'")
    assert repr(MODEL) in refused.json()["error"]


# --- MLflow's scoring protocol through MLflow's own client -----------------------------------------------------
def test_mlflow_scoring_client_ping_version_and_invoke(service: ServingProcess) -> None:
    _, expected = reference(service)
    scoring = ScoringServerClient("127.0.0.1", service.port)
    scoring.wait_server_ready(timeout=30)
    assert scoring.get_version() == mlflow.__version__
    frame = pd.DataFrame(ROWS)[NAMES[::-1]]  # column order is the client's
    assert scoring.invoke(frame).get_predictions(predictions_format="ndarray").tolist() == expected
    assert scoring.invoke(MATRIX).get_predictions(predictions_format="ndarray").tolist() == expected
    with pytest.raises(Exception, match="error code 400") as err:
        scoring.invoke(frame.assign(**{NAMES[1]: "not a number"}))
    assert f"dataframe_split.data[0][{NAMES[::-1].index(NAMES[1])}]" in str(err.value)
    assert httpx.get(f"{service.base_url}/health", timeout=30).status_code == 200


def test_mlflow_logged_serving_example_and_csv(service: ServingProcess, stack: MlflowStack, tmp_path: Path) -> None:
    client = mlflow.MlflowClient(stack.tracking_uri)
    version = client.get_model_version_by_alias(MODEL, "champion").version
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=client.get_model_version_download_uri(MODEL, version),
        dst_path=str(tmp_path),
        tracking_uri=stack.tracking_uri,
    )
    example = (Path(local) / "serving_input_example.json").read_bytes()
    url = f"{service.base_url}/invocations"
    answer = httpx.post(url, content=example, headers={"Content-Type": "application/json"}, timeout=30)
    rows = json.loads(example)["dataframe_split"]["data"]
    assert answer.status_code == 200 and len(answer.json()["predictions"]) == len(rows)
    assert answer.headers["x-model-alias"] == "champion" and answer.headers["x-model-version"] == version
    _, expected = reference(service)
    csv = pd.DataFrame(ROWS).to_csv(index=False)
    answer = httpx.post(url, content=csv, headers={"Content-Type": "text/csv"}, timeout=30)
    assert answer.json() == {"predictions": expected}
    refused = httpx.post(url, content="<rows/>", headers={"Content-Type": "application/xml"}, timeout=30)
    assert refused.status_code == 415 and refused.json()["error_code"] == "BAD_REQUEST"
    tolerated = {**json.loads(example), "params": {"threshold": 0.5}, "client": "notebook"}  # as MLflow ignores them
    answer = httpx.post(url, json=tolerated, timeout=30)
    assert answer.status_code == 200 and len(answer.json()["predictions"]) == len(rows)


def test_protocol_requests_are_counted_and_logged_like_predict(service: ServingProcess) -> None:
    version, _ = reference(service)
    before = metric_value(service.base_url, "serving_requests_total", alias="champion", version=version, status="200")
    body: dict[str, Any] = {"dataframe_records": ROWS[:2]}
    for _ in range(3):
        answer = httpx.post(f"{service.base_url}/invocations", json=body, headers={"X-Request-Id": "proto-rid"})
        assert answer.status_code == 200 and answer.headers["x-request-id"] == "proto-rid"
    after = metric_value(service.base_url, "serving_requests_total", alias="champion", version=version, status="200")
    assert after == before + 3
    assert service.log_dir is not None
    lines = [json.loads(line) for f in service.log_dir.glob("serving-*.log") for line in f.read_text().splitlines()]
    mine = [r for r in lines if r.get("request_id") == "proto-rid" and r.get("logger") == "mlops.serving.access"]
    assert [(r["path"], r["status"], r["alias"], r["version"]) for r in mine] == [
        ("/invocations", 200, "champion", version)
    ] * 3
