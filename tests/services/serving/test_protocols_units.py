"""In-process tests of the protocol codecs, no server: requests built by the protocols' own client libraries
(tritonclient's V2 request bodies, binary tensors included; MLflow's `dump_input_data` and CSV from pandas) decode
to exactly the matrix `/predict` gives for the same rows, in any column order and layout; answers parse with the
clients' own parsers; every malformed request is a 4xx naming its field in the protocol's terms; and the
validator's fast path agrees with the value-by-value walk (same matrix, or an error at the corrupted cell)."""

from __future__ import annotations

import json
import random
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton
from mlflow.utils.proto_json_utils import dump_input_data

from services.serving.protocols import Answered, Request
from services.serving.protocols.mlflow import MLFLOW
from services.serving.protocols.native import NATIVE
from services.serving.protocols.open_inference import V2, model_metadata
from services.serving.schema import Column, Fields, InputValidator, Output, RequestError

NAMES = ("sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)")
VALIDATOR = InputValidator(tuple(Column(n, "double") for n in NAMES), 50, (Output(None, "INT64"),))
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3, 4.2, 1]]
EXPECTED = np.array(ROWS, dtype=np.float64)
WHO = Answered("iris", "champion", "7", "rid-1")


def req(body: bytes | str | dict[str, Any], **headers: str) -> Request:
    raw = body if isinstance(body, bytes) else (body if isinstance(body, str) else json.dumps(body)).encode()
    return Request(raw, {k.lower().replace("_", "-"): v for k, v in headers.items()})


def refused(codec: Any, request: Request, validator: InputValidator = VALIDATOR) -> RequestError:
    with pytest.raises(RequestError) as err:
        codec.decode(request, validator)
    return err.value


# --- the native layout (reference) --------------------------------------------------------------------------
def test_native_rows_are_the_reference_matrix() -> None:
    decoded = NATIVE.decode(req({"rows": [dict(zip(NAMES, r, strict=True)) for r in ROWS]}), VALIDATOR)
    assert np.array_equal(decoded.inputs, EXPECTED)
    answer = NATIVE.answer([0, 2, 1], decoded, WHO)
    assert json.loads(answer.body) == {
        "alias": "champion",
        "version": "7",
        "predictions": [0, 2, 1],
        "request_id": "rid-1",
    }


# --- Open Inference Protocol v2 --------------------------------------------------------------------------------
def triton_request(inputs: list[triton.InferInput], outputs: list[Any] | None = None) -> Request:
    body, json_size = triton.InferenceServerClient.generate_request_body(inputs, outputs=outputs, request_id="r-9")
    headers = {} if json_size is None else {"inference-header-content-length": str(json_size)}
    return Request(body, headers)


def tensor(name: str, data: np.ndarray, datatype: str = "FP64", binary: bool = False) -> triton.InferInput:
    item = triton.InferInput(name, list(data.shape), datatype)
    item.set_data_from_numpy(data, binary_data=binary)
    return item


@pytest.mark.parametrize("binary", [False, True])
def test_v2_per_column_tensors_in_any_order_from_tritonclient(binary: bool) -> None:
    order = [3, 0, 2, 1]
    inputs = [tensor(NAMES[j], EXPECTED[:, j], binary=binary) for j in order]
    decoded = V2.decode(triton_request(inputs), VALIDATOR)
    assert np.array_equal(decoded.inputs, EXPECTED)
    column = [tensor(NAMES[j], EXPECTED[:, j : j + 1]) for j in range(4)]  # [N, 1] tensors too
    assert np.array_equal(V2.decode(triton_request(column), VALIDATOR).inputs, EXPECTED)


@pytest.mark.parametrize("binary", [False, True])
def test_v2_one_2d_tensor_flat_nested_or_binary(binary: bool) -> None:
    decoded = V2.decode(triton_request([tensor("input-0", EXPECTED, binary=binary)]), VALIDATOR)
    assert np.array_equal(decoded.inputs, EXPECTED)
    flat = {"inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP64", "data": EXPECTED.ravel().tolist()}]}
    assert np.array_equal(V2.decode(req(flat), VALIDATOR).inputs, EXPECTED)
    ints = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "INT32", "data": [[5, 3, 1, 0]]}]}
    assert V2.decode(req(ints), VALIDATOR).inputs.tolist() == [[5.0, 3.0, 1.0, 0.0]]


@pytest.mark.parametrize("binary_output", [False, True])
def test_v2_answer_parses_with_tritonclient(binary_output: bool) -> None:
    outputs = [triton.InferRequestedOutput("predict", binary_data=binary_output)]
    decoded = V2.decode(triton_request([tensor("x", EXPECTED)], outputs), VALIDATOR)
    reply = V2.answer([0, 2, 1], decoded, WHO)
    header = dict(reply.headers).get(b"inference-header-content-length")
    assert (header is not None) == binary_output
    result = triton.InferenceServerClient.parse_response_body(reply.body, header_length=int(header) if header else None)
    assert result.as_numpy("predict").tolist() == [0, 2, 1] and result.as_numpy("predict").dtype == np.int64
    response = result.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == ("iris", "7", "r-9")
    assert response["parameters"] == {"alias": "champion", "request_id": "rid-1"}


def test_v2_default_tritonclient_request_asks_binary_outputs() -> None:
    decoded = V2.decode(triton_request([tensor("x", EXPECTED, binary=True)]), VALIDATOR)
    reply = V2.answer([0.5, 1.5, 2.5], decoded, WHO)  # floats where the signature says INT64: FP64 then
    header = int(dict(reply.headers)[b"inference-header-content-length"])
    result = triton.InferenceServerClient.parse_response_body(reply.body, header_length=header)
    assert result.as_numpy("predict").tolist() == [0.5, 1.5, 2.5]
    assert result.get_output("predict")["datatype"] == "FP64"


def test_v2_outputs_of_tables_lists_and_strings() -> None:
    decoded = V2.decode(
        req({"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP64", "data": ROWS[:2]}]}), VALIDATOR
    )
    table = json.loads(V2.answer([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}], decoded, WHO).body)["outputs"]
    assert table == [
        {"name": "a", "datatype": "INT64", "shape": [2], "data": [1, 2]},
        {"name": "b", "datatype": "BYTES", "shape": [2], "data": ["x", "y"]},
    ]
    probabilities = json.loads(V2.answer([[0.1, 0.9], [0.8, 0.2]], decoded, WHO).body)["outputs"][0]
    assert (probabilities["shape"], probabilities["datatype"]) == ([2, 2], "FP64")
    assert probabilities["data"] == [0.1, 0.9, 0.8, 0.2]
    with pytest.raises(RequestError) as err:
        asked = {
            "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": ROWS[0]}],
            "outputs": [{"name": "p"}],
        }
        V2.answer([1], V2.decode(req(asked), VALIDATOR), WHO)
    assert (err.value.status, err.value.field) == (400, "outputs[0].name")


def test_v2_strings_and_booleans_reach_a_dataframe() -> None:
    mixed = InputValidator((Column("name", "string"), Column("ok", "boolean"), Column("x", "long")), 10)
    name = tensor("name", np.array([b"ab", b"c"], dtype=np.object_), "BYTES", binary=True)
    ok = tensor("ok", np.array([True, False]), "BOOL")
    x = tensor("x", np.array([3, 4], dtype=np.int64), "INT64", binary=True)
    frame = V2.decode(triton_request([x, name, ok]), mixed).inputs
    assert frame.to_dict(orient="records") == [{"name": "ab", "ok": True, "x": 3}, {"name": "c", "ok": False, "x": 4}]
    wrong = {"inputs": [{"name": "name", "shape": [1], "datatype": "FP64", "data": [1.5]}]}
    assert refused(V2, req(wrong), mixed).field == "inputs"  # the other columns are missing


def one(**change: Any) -> dict[str, Any]:
    item = {"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2], **change}
    return {"inputs": [item]}


V2_BAD: list[tuple[str, Any, int, str]] = [
    ("not an object", [1], 400, "body"),
    ("no inputs", {"inputs": []}, 400, "inputs"),
    ("inputs not a list", {"inputs": {"x": 1}}, 400, "inputs"),
    ("input not an object", {"inputs": [3]}, 400, "inputs[0]"),
    ("no name", one(name=""), 400, "inputs[0].name"),
    ("bad shape", one(shape=[1, -4]), 400, "inputs[0].shape"),
    ("boolean in shape", one(shape=[True, 4]), 400, "inputs[0].shape"),
    ("unknown datatype", one(datatype="FP128"), 400, "inputs[0].datatype"),
    ("data not a list", one(data=3), 400, "inputs[0].data"),
    ("count and shape differ", one(data=[1.0, 2.0]), 400, "inputs[0].data"),
    ("ragged nesting", one(shape=[2, 2], data=[[1.0, 2.0], 3.0, 4.0]), 400, "inputs[0].data"),
    ("string in FP64", one(data=[5.1, "3.5", 1.4, 0.2]), 400, "inputs[0].data[1]"),
    ("boolean in FP64", one(data=[5.1, True, 1.4, 0.2]), 400, "inputs[0].data[1]"),
    ("float in INT64", one(datatype="INT64", data=[5, 3, 1.5, 0]), 400, "inputs[0].data[2]"),
    ("out of INT8 range", one(datatype="INT8", data=[5, 3, 1, 300]), 400, "inputs[0].data[3]"),
    ("negative UINT8", one(datatype="UINT8", data=[5, -3, 1, 3]), 400, "inputs[0].data[1]"),
    (
        "unknown tensor name",
        {"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1.0]}]},
        400,
        "inputs[0].name",
    ),
    ("2-D of the wrong width", one(shape=[2, 2]), 400, "inputs[0].name"),
    ("binary and data", one(parameters={"binary_data_size": 8}), 400, "inputs[0].data"),
    (
        "binary beyond the body",
        {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "parameters": {"binary_data_size": 8}}]},
        400,
        "inputs[0].parameters.binary_data_size",
    ),
    ("id not a string", {**one(), "id": 3}, 400, "id"),
    (
        "binary_data_output not a boolean",
        {**one(), "parameters": {"binary_data_output": "yes"}},
        400,
        "parameters.binary_data_output",
    ),
    ("outputs not a list", {**one(), "outputs": {"name": "predict"}}, 400, "outputs"),
    ("empty batch", one(shape=[0, 4], data=[]), 422, "inputs"),
    ("too many rows", one(shape=[51, 4], data=[1.0] * 204), 413, "inputs"),
]


@pytest.mark.parametrize(("case", "body", "status", "field"), V2_BAD, ids=[c[0] for c in V2_BAD])
def test_v2_bad_requests_name_the_field(case: str, body: Any, status: int, field: str) -> None:
    error = refused(V2, req(body))
    assert (error.status, error.field) == (status, field), error.message
    assert error.message.startswith(field) or field in error.message
    reply = V2.error(error)
    assert reply.status == (400 if status == 422 else status) and json.loads(reply.body) == {"error": error.message}


def test_v2_column_tensors_named_and_shaped_consistently() -> None:
    columns = [{"name": n, "shape": [1], "datatype": "FP64", "data": [1.0]} for n in NAMES]
    twice = {"inputs": [*columns, columns[0]]}
    assert refused(V2, req(twice)).field == "inputs[4].name"
    rows = {"inputs": [*columns[:3], {**columns[3], "shape": [2], "data": [1.0, 2.0]}]}
    assert refused(V2, req(rows)).field == "inputs[3].shape"
    missing = {"inputs": columns[:3]}
    error = refused(V2, req(missing))
    assert error.field == "inputs" and NAMES[3] in error.message
    nan = {"inputs": [*columns[:3], {**columns[3], "data": [float("nan")]}]}
    error = refused(V2, req(json.dumps(nan)))  # NaN literal: parsed, then refused naming the cell
    assert (error.status, error.field) == (422, "inputs[3].data[0]") and NAMES[3] in error.message


def test_v2_binary_header_and_tail_must_agree() -> None:
    body, size = triton.InferenceServerClient.generate_request_body([tensor("x", EXPECTED, binary=True)])
    assert refused(V2, Request(body + b"\0", {"inference-header-content-length": str(size)})).field == "body"
    assert (
        refused(V2, Request(body, {"inference-header-content-length": "x"})).field == "Inference-Header-Content-Length"
    )
    short = Request(body[:-1], {"inference-header-content-length": str(size)})
    assert refused(V2, short).field == "inputs[0].parameters.binary_data_size"


def test_v2_metadata_lists_columns_and_outputs() -> None:
    meta = model_metadata("iris", ["7"], VALIDATOR, "mlflow-sklearn")
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] == [(n, "FP64", [-1]) for n in NAMES]
    assert meta["outputs"] == [{"name": "predict", "datatype": "INT64", "shape": [-1]}]


# --- MLflow's scoring protocol -----------------------------------------------------------------------------
FRAME = pd.DataFrame(ROWS, columns=list(NAMES))


def test_mlflow_every_layout_from_mlflows_own_serializer_gives_the_matrix() -> None:
    shuffled = FRAME[[NAMES[2], NAMES[0], NAMES[3], NAMES[1]]]
    bodies = [
        dump_input_data(FRAME),  # dataframe_split
        dump_input_data(shuffled),
        {"dataframe_records": FRAME.to_dict(orient="records")},
        {"instances": FRAME.to_dict(orient="records")},
        {"instances": ROWS},
        dump_input_data(FRAME.to_numpy()),  # inputs as rows of values
        {"inputs": {n: FRAME[n].tolist() for n in NAMES[::-1]}},  # inputs as columns
        {"dataframe_split": {"data": ROWS}},  # no columns: the signature's order
    ]
    for body in bodies:
        decoded = MLFLOW.decode(req(body, content_type="application/json; charset=utf-8"), VALIDATOR)
        assert np.array_equal(decoded.inputs, EXPECTED), body
    one_row = {"inputs": dict(zip(NAMES, ROWS[0], strict=True))}
    assert MLFLOW.decode(req(one_row), VALIDATOR).inputs.tolist() == [ROWS[0]]
    csv = shuffled.to_csv(index=False)
    assert np.array_equal(MLFLOW.decode(req(csv, content_type="text/csv"), VALIDATOR).inputs, EXPECTED)
    assert json.loads(MLFLOW.answer([0, 2, 1], MLFLOW.decode(req(bodies[0]), VALIDATOR), WHO).body) == {
        "predictions": [0, 2, 1]
    }


MLFLOW_BAD: list[tuple[str, Any, dict[str, str], int, str]] = [
    ("two formats", {"instances": ROWS, "inputs": ROWS}, {}, 400, "body"),
    ("no format", {}, {}, 400, "body"),
    ("a list body", ROWS, {}, 400, "body"),
    ("split without data", {"dataframe_split": {"columns": list(NAMES)}}, {}, 400, "dataframe_split.data"),
    (
        "split unknown column",
        {"dataframe_split": {"columns": [*NAMES[:3], "x"], "data": ROWS}},
        {},
        400,
        "dataframe_split.columns[3]",
    ),
    (
        "split missing column",
        {"dataframe_split": {"columns": list(NAMES[:3]), "data": [r[:3] for r in ROWS]}},
        {},
        400,
        "dataframe_split.columns",
    ),
    (
        "split short row",
        {"dataframe_split": {"columns": list(NAMES), "data": [ROWS[0][:3]]}},
        {},
        400,
        "dataframe_split.data[0]",
    ),
    (
        "split bad value",
        {"dataframe_split": {"columns": list(NAMES), "data": [[5.1, "x", 1.4, 0.2]]}},
        {},
        422,
        "dataframe_split.data[0][1]",
    ),
    (
        "records bad value",
        {"dataframe_records": [{**dict(zip(NAMES, ROWS[0], strict=True)), NAMES[3]: None}]},
        {},
        422,
        f"dataframe_records[0].{NAMES[3]}",
    ),
    ("instances bad value", {"instances": [[5.1, 3.5, 1.4, True]]}, {}, 422, "instances[0][3]"),
    ("inputs unequal columns", {"inputs": {NAMES[0]: [1.0], NAMES[1]: [1.0, 2.0]}}, {}, 400, f"inputs.{NAMES[1]}"),
    ("inputs bad value", {"inputs": {**{n: [1.0] for n in NAMES}, NAMES[2]: ["a"]}}, {}, 422, f"inputs.{NAMES[2]}[0]"),
    ("too many rows", {"instances": ROWS * 17}, {}, 413, "instances"),
    ("xml", "<rows/>", {"content_type": "application/xml"}, 415, "content-type"),
    ("latin-1", {"instances": ROWS}, {"content_type": "application/json; charset=latin-1"}, 415, "content-type"),
    (
        "csv bad number",
        f"{','.join(NAMES)}\n5.1,3.5,abc,0.2\n",
        {"content_type": "text/csv"},
        400,
        f"csv[0].{NAMES[2]}",
    ),
    ("csv short line", f"{','.join(NAMES)}\n5.1,3.5\n", {"content_type": "text/csv"}, 400, "csv[0]"),
    ("csv empty", "", {"content_type": "text/csv"}, 400, "body"),
    ("csv unknown column", "a,b\n1,2\n", {"content_type": "text/csv"}, 400, "csv.columns[0]"),
]


@pytest.mark.parametrize(("case", "body", "headers", "status", "field"), MLFLOW_BAD, ids=[c[0] for c in MLFLOW_BAD])
def test_mlflow_bad_requests_name_the_field(
    case: str, body: Any, headers: dict[str, str], status: int, field: str
) -> None:
    error = refused(MLFLOW, req(body, **headers))
    assert (error.status, error.field) == (status, field), error.message
    reply = MLFLOW.error(error)
    answer = json.loads(reply.body)
    assert reply.status == (400 if status == 422 else status)
    assert answer["error_code"] == "BAD_REQUEST" and answer["message"] == error.message


# --- the validator's fast path and its walk agree -----------------------------------------------------------
BAD_VALUES = [None, "1.5", True, [1.0], {"v": 1.0}, float("nan"), float("inf"), 10**400, 2.5]


def test_fast_path_and_walk_agree_on_valid_and_corrupted_batches() -> None:
    validator = InputValidator((Column("a", "double"), Column("n", "long"), Column("b", "float")), 100)
    rng = random.Random(20261130)
    for _ in range(300):
        rows = [
            {"a": rng.uniform(-1e6, 1e6), "n": rng.randint(-(10**9), 10**9), "b": rng.choice([1, 2.5, -0.0])}
            for _ in range(rng.randint(1, 12))
        ]
        expected = validator._numeric_records(rows, Fields.records("rows"))
        assert np.array_equal(validator.records(rows), expected)
        table = [[r["a"], r["n"], r["b"]] for r in rows]
        assert np.array_equal(validator.table(table, Fields.records("t")), expected)
        i, column = rng.randrange(len(rows)), rng.choice(["a", "n", "b"])
        value = rng.choice(BAD_VALUES if column == "n" else BAD_VALUES[:-1])
        rows[i] = {**rows[i], column: value}
        with pytest.raises(RequestError) as err:
            validator.records(rows)
        assert (err.value.status, err.value.field) == (422, f"rows[{i}].{column}"), (value, err.value.message)
