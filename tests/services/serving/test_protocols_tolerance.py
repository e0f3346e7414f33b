"""The codecs are tolerant where clients differ and strict where it protects, in process (no server).

Open Inference Protocol v2: KServe's SDK body (`model_name` in it, JSON or binary tensors) decodes to the same
matrix as tritonclient's; keys the protocol does not define (top level, tensor, output, any `parameters`) are
ignored; `model_name` and `model_version` that contradict the path (or, without a version in the path, the
answering version) are a 400 naming the field and both values; and a wrong shape, datatype, value, size or
type is still a 400 naming its field when the body also carries tolerated keys.

MLflow's scoring protocol: what `mlflow models serve` accepts (other top-level keys, `params` for a model whose
signature declares none, of any type) is accepted, checked against MLflow 3's own parser; what it refuses
(`dataframe_split` with another key, no or two formats) is refused; and parameters a version declares, which
MLflow would pass to the model and this service would not, are a 400 naming `params.<name>`.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.models.utils import _enforce_params_schema
from mlflow.pyfunc.scoring_server import _split_data_and_params, infer_and_parse_data
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from services.serving.protocols import Answered, Request
from services.serving.protocols.mlflow import MLFLOW
from services.serving.protocols.open_inference import V2
from services.serving.schema import Column, InputValidator, Output, RequestError
from tests.services.serving.conftest import kserve_v2_request

NAMES = ("sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)")
VALIDATOR = InputValidator(tuple(Column(n, "double") for n in NAMES), 50, (Output(None, "INT64"),))
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.0]]
EXPECTED = np.array(ROWS, dtype=np.float64)
WHO = Answered("iris", "champion", "7", "rid-1")
ROUTED = {"model": "iris"}  # POST /v2/models/iris/infer
VERSIONED = {"model": "iris", "version": "7"}  # POST /v2/models/iris/versions/7/infer


def v2(body: dict[str, Any], params: dict[str, str] | None = None) -> Request:
    return Request(json.dumps(body).encode(), {}, ROUTED if params is None else params)


def refused(request: Request, validator: InputValidator = VALIDATOR, codec: Any = V2) -> RequestError:
    with pytest.raises(RequestError) as err:
        codec.decode(request, validator)
    return err.value


# --- Open Inference Protocol v2: KServe's SDK ------------------------------------------------------------------
@pytest.mark.parametrize("binary", [False, True], ids=["json tensors", "binary tensors"])
@pytest.mark.parametrize("params", [ROUTED, VERSIONED], ids=["routed path", "versioned path"])
def test_kserve_sdk_body_with_model_name_decodes_and_answers(binary: bool, params: dict[str, str]) -> None:
    columns = [(n, EXPECTED[:, j].copy(), "FP64") for j, n in enumerate(NAMES)]
    for inputs in (columns, [("input-0", EXPECTED, "FP64")]):
        body, headers = kserve_v2_request("iris", inputs, binary=binary)
        decoded = V2.decode(Request(body, headers, params), VALIDATOR)
        assert np.array_equal(decoded.inputs, EXPECTED)
        answer = json.loads(V2.answer([0, 2, 1], decoded, WHO).body)
        assert (answer["model_name"], answer["model_version"], answer["id"]) == ("iris", "7", "kserve-1")
        assert answer["outputs"] == [{"name": "predict", "datatype": "INT64", "shape": [3], "data": [0, 2, 1]}]


def one(**change: Any) -> dict[str, Any]:
    return {"name": "x", "shape": [3, 4], "datatype": "FP64", "data": ROWS, **change}


TOLERATED: list[tuple[str, dict[str, Any]]] = [
    ("model_name of the path", {"model_name": "iris", "inputs": [one()]}),
    ("model_name and model_version of the answer", {"model_name": "iris", "model_version": "7", "inputs": [one()]}),
    ("unknown top-level key", {"inputs": [one()], "trace": {"span": 1}}),
    ("unknown request parameter", {"inputs": [one()], "parameters": {"content_type": "np", "priority": 3}}),
    ("unknown tensor key", {"inputs": [one(content_type="np")]}),
    ("unknown tensor parameter", {"inputs": [one(parameters={"content_type": "np", "x": [1]})]}),
    (
        "unknown output key and parameter",
        {"inputs": [one()], "outputs": [{"name": "predict", "k": 1, "parameters": {"classification": 2}}]},
    ),
]


@pytest.mark.parametrize(("case", "body"), TOLERATED, ids=[c[0] for c in TOLERATED])
def test_v2_keys_the_protocol_does_not_define_are_ignored(case: str, body: dict[str, Any]) -> None:
    decoded = V2.decode(v2(body), VALIDATOR)
    assert np.array_equal(decoded.inputs, EXPECTED)
    answer = json.loads(V2.answer([0, 2, 1], decoded, WHO).body)
    assert answer["outputs"][0]["data"] == [0, 2, 1] and set(answer) == {
        "model_name",
        "model_version",
        "id",
        "parameters",
        "outputs",
    }


MISMATCHED: list[tuple[str, dict[str, Any], dict[str, str], str, tuple[str, ...]]] = [
    ("model_name of another model", {"model_name": "wine"}, ROUTED, "model_name", ("'wine'", "'iris'")),
    ("model_name on a versioned path", {"model_name": "wine"}, VERSIONED, "model_name", ("'wine'", "'iris'")),
    ("model_version of another version", {"model_version": "6"}, VERSIONED, "model_version", ("'6'", "'7'")),
    ("model_name not a string", {"model_name": 3}, ROUTED, "model_name", ("expected a string",)),
    ("model_version not a string", {"model_version": 7}, VERSIONED, "model_version", ("expected a string",)),
]


@pytest.mark.parametrize(("case", "extra", "params", "field", "named"), MISMATCHED, ids=[c[0] for c in MISMATCHED])
def test_v2_model_name_or_version_against_the_path_is_a_400_naming_both(
    case: str, extra: dict[str, Any], params: dict[str, str], field: str, named: tuple[str, ...]
) -> None:
    error = refused(v2({**extra, "inputs": [one()]}, params))
    assert (error.status, error.field) == (400, field) and error.message.startswith(f"{field}: ")
    assert all(value in error.message for value in named), error.message
    assert json.loads(V2.error(error).body) == {"error": error.message}


def test_v2_model_version_without_one_in_the_path_must_be_the_answering_version() -> None:
    decoded = V2.decode(v2({"model_version": "6", "inputs": [one()]}), VALIDATOR)  # known only once chosen
    with pytest.raises(RequestError) as err:
        V2.answer([0, 2, 1], decoded, WHO)
    assert (err.value.status, err.value.field) == (400, "model_version")
    assert "'6'" in err.value.message and "'7'" in err.value.message
    right = V2.decode(v2({"model_version": "7", "inputs": [one()]}), VALIDATOR)
    assert json.loads(V2.answer([0, 2, 1], right, WHO).body)["model_version"] == "7"


STILL_REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("shape and element count differ", one(shape=[2, 4]), "inputs[0].data"),
    ("negative dimension", one(shape=[3, -4]), "inputs[0].shape"),
    ("unknown datatype", one(datatype="FP128"), "inputs[0].datatype"),
    ("string in FP64", one(data=[[5.1, "3.5", 1.4, 0.2], *ROWS[1:]]), "inputs[0].data[1]"),
    ("out of INT8 range", one(datatype="INT8", data=[[5, 3, 1, 300], [1, 1, 1, 1], [1, 1, 1, 1]]), "inputs[0].data[3]"),
    ("tensor parameters not an object", one(parameters=["binary_data_size"]), "inputs[0].parameters"),
    ("binary size and data", one(parameters={"binary_data_size": 96}), "inputs[0].data"),
    ("tensor not an object", "x", "inputs[0]"),
    (
        "no data (a misspelt key is ignored, its value missing)",
        {"name": "x", "shape": [3, 4], "datatype": "FP64", "datas": ROWS},
        "inputs[0].data",
    ),
]


@pytest.mark.parametrize(("case", "tensor", "field"), STILL_REFUSED, ids=[c[0] for c in STILL_REFUSED])
def test_v2_types_shapes_counts_and_datatypes_stay_strict_beside_tolerated_keys(
    case: str, tensor: Any, field: str
) -> None:
    body = {"id": "k", "model_name": "iris", "trace": 1, "inputs": [tensor]}
    error = refused(v2(body))
    assert (error.status, error.field) == (400, field), error.message
    assert V2.error(error).status == 400


def test_v2_request_level_fields_stay_strict_beside_tolerated_keys() -> None:
    base = {"model_name": "iris", "trace": 1, "inputs": [one()]}
    assert refused(v2({**base, "id": 3})).field == "id"
    assert refused(v2({**base, "parameters": "binary"})).field == "parameters"
    assert refused(v2({**base, "parameters": {"binary_data_output": "yes"}})).field == "parameters.binary_data_output"
    assert refused(v2({**base, "outputs": [{"name": "p", "parameters": {"binary_data": 1}}]})).field == (
        "outputs[0].parameters.binary_data"
    )
    assert refused(v2({**base, "outputs": ["predict"]})).field == "outputs[0]"


# --- MLflow's scoring protocol ----------------------------------------------------------------------------------
FRAME = pd.DataFrame(ROWS, columns=list(NAMES))
SPLIT = {"columns": list(NAMES), "data": ROWS}


def mlflow_accepts(body: dict[str, Any]) -> bool:
    """Whether `mlflow models serve` (MLflow 3's scoring server: `_split_data_and_params`, `infer_and_parse_data`
    and, for a model without a params schema, `_enforce_params_schema`) takes the body."""
    try:
        data, params = _split_data_and_params(json.dumps(body))
        infer_and_parse_data(data)
        _enforce_params_schema(params, None)
    except MlflowException:
        return False
    return True


MLFLOW_TOLERATED: list[tuple[str, dict[str, Any]]] = [
    ("unknown top-level key", {"dataframe_split": SPLIT, "client": "notebook"}),
    ("params", {"dataframe_split": SPLIT, "params": {"temperature": 0.2}}),
    ("empty params", {"instances": ROWS, "params": {}}),
    ("params not an object", {"instances": ROWS, "params": "fast"}),
    ("unknown key and params", {"inputs": {n: FRAME[n].tolist() for n in NAMES}, "params": None, "meta": [1]}),
]


@pytest.mark.parametrize(("case", "body"), MLFLOW_TOLERATED, ids=[c[0] for c in MLFLOW_TOLERATED])
def test_mlflow_accepts_what_mlflow_models_serve_accepts(case: str, body: dict[str, Any]) -> None:
    assert mlflow_accepts(body)
    decoded = MLFLOW.decode(Request(json.dumps(body).encode(), {"content-type": "application/json"}), VALIDATOR)
    assert np.array_equal(decoded.inputs, EXPECTED)


MLFLOW_REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("no format, only unknown keys", {"dataframe_splits": SPLIT}, "body"),
    ("two formats", {"instances": ROWS, "inputs": ROWS}, "body"),
    ("dataframe_split with another key", {"dataframe_split": {**SPLIT, "dtype": "float"}}, "dataframe_split.dtype"),
]


@pytest.mark.parametrize(("case", "body", "field"), MLFLOW_REFUSED, ids=[c[0] for c in MLFLOW_REFUSED])
def test_mlflow_refuses_what_mlflow_models_serve_refuses(case: str, body: dict[str, Any], field: str) -> None:
    assert not mlflow_accepts(body)
    error = refused(Request(json.dumps(body).encode(), {}), codec=MLFLOW)
    assert (error.status, error.field) == (400, field), error.message


def test_mlflow_no_format_names_the_keys_sent() -> None:
    error = refused(Request(json.dumps({"dataframe_splits": SPLIT}).encode(), {}), codec=MLFLOW)
    assert "dataframe_splits" in error.message and "dataframe_split" in error.message


def test_mlflow_parameters_a_version_declares_are_refused_not_silently_dropped() -> None:
    signature = ModelSignature(
        inputs=Schema([ColSpec("double", n) for n in NAMES]),
        params=ParamSchema([ParamSpec("threshold", "double", 0.5)]),
    )
    declaring = InputValidator.from_signature(signature, 50)
    assert declaring.params == frozenset({"threshold"}) and VALIDATOR.params == frozenset()

    def decode(params: Any) -> Any:
        body = json.dumps({"dataframe_split": SPLIT, "params": params}).encode()
        return MLFLOW.decode(Request(body, {}), declaring)

    with pytest.raises(RequestError) as err:
        decode({"threshold": 0.9, "other": 1})
    assert (err.value.status, err.value.field) == (400, "params.threshold") and "defaults" in err.value.message
    with pytest.raises(RequestError) as err:
        decode([0.9])  # MLflow refuses a non-object too when the model declares parameters
    assert (err.value.status, err.value.field) == (400, "params")
    assert np.array_equal(decode({"other": 1}).inputs, EXPECTED)  # MLflow ignores undeclared ones as well
    assert np.array_equal(decode({}).inputs, EXPECTED)
