"""The Open Inference Protocol v2 (KServe's "V2" protocol, spoken by Triton, MLServer and Seldon), REST.

Inference request: `{"id"?, "parameters"?, "inputs": [{"name", "shape", "datatype", "parameters"?, "data"}],
"outputs"?: [{"name", "parameters"?}]}`. Strict where it protects, tolerant where clients differ: keys the
protocol does not define (at the top, in a tensor, in an output, in any `parameters`) are ignored, as KServe and
MLServer ignore them; `model_name` and `model_version` (which KServe's SDK puts in the body) must be strings
that equal the path's model and version (without a version in the path: the version that answers), else 400
naming both. Everything the protocol defines is checked. The inputs are either

- one tensor per signature column, named after the column, of shape `[N]` or `[N, 1]` (all the same N), or
- one 2-D tensor of shape `[N, <columns>]` whose rows hold the columns in the signature's order (any name).

`data` is row-major, flat or nested; its element count must match the shape and its values the datatype
(`BOOL`, `INT8`..`INT64`, `UINT8`..`UINT64`, `FP16`, `FP32`, `FP64`, `BYTES`). Triton's binary tensor extension
is understood both ways: an input with `parameters.binary_data_size` takes its bytes from after the JSON
header (`Inference-Header-Content-Length`), and outputs are sent as binary when the request sets
`parameters.binary_data_output` or an output's `parameters.binary_data` (as `tritonclient` does by default).

Answer: `{"model_name", "model_version", "id", "parameters": {"alias", "request_id"}, "outputs": [{"name",
"shape", "datatype", "data"}]}`: one output (named after the signature's output, else `predict`), or one per
column when the model answers with a table. Errors: `{"error": "<field>: <what is wrong>"}` with status 400
for any problem with the request (the validator's 422 included), 404 for an unknown model or version, 413
for too large a request, 503 when no version is loaded, and the admission's 401/403/429.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import chain
from typing import Any, NamedTuple

import numpy as np

from services.serving.jsonbody import parse_json
from services.serving.protocols import Answered, Codec, Decoded, Reply, Request, dumps
from services.serving.schema import V2_DATATYPES, Fields, InputValidator, Output, RequestError, describe_value

HEADER_LENGTH = "inference-header-content-length"
_BINARY = b"application/octet-stream"

_INT_RANGES = {
    "INT8": (-(2**7), 2**7 - 1),
    "INT16": (-(2**15), 2**15 - 1),
    "INT32": (-(2**31), 2**31 - 1),
    "INT64": (-(2**63), 2**63 - 1),
    "UINT8": (0, 2**8 - 1),
    "UINT16": (0, 2**16 - 1),
    "UINT32": (0, 2**32 - 1),
    "UINT64": (0, 2**64 - 1),
}
_FLOATS = frozenset({"FP16", "FP32", "FP64"})
_NUMBERS = _FLOATS | frozenset(_INT_RANGES)  # datatypes whose values are ints or floats
DATATYPES: tuple[str, ...] = ("BOOL", *_INT_RANGES, *sorted(_FLOATS), "BYTES")
_ALLOWED: dict[str, frozenset[type]] = {
    **{dt: frozenset({int}) for dt in _INT_RANGES},
    **{dt: frozenset({int, float}) for dt in _FLOATS},
    "BOOL": frozenset({bool}),
    "BYTES": frozenset({str}),
}
_NUMPY = {
    "BOOL": "?",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
_TOP_KEYS = frozenset({"id", "parameters", "inputs", "outputs"})  # any other key: `_path_names` (rare)
MODEL_NAME = "model_name"
MODEL_VERSION = "model_version"
DEFAULT_OUTPUT = "predict"


def _bad(field: str, message: str) -> RequestError:
    return RequestError(400, f"{field}: {message}", field)


class Tensor(NamedTuple):
    position: int  # in `inputs`
    name: str
    shape: tuple[int, ...]
    datatype: str
    data: list[Any]  # flat, row-major


class Extras(NamedTuple):
    id: str | None
    requested: tuple[tuple[str, bool], ...] | None  # (name, binary) of the outputs asked for
    binary: bool  # every output in binary (`parameters.binary_data_output`)
    outputs: tuple[Output, ...]  # the signature's outputs
    version: str | None = None  # the body's `model_version` when the path names none: the answer checks it


# --- request --------------------------------------------------------------------------------------------
def _split(request: Request) -> tuple[bytes, bytes]:
    """The JSON header and the binary tail of a request (all JSON without the extension's header)."""
    raw = request.headers.get(HEADER_LENGTH)
    if raw is None:
        return request.body, b""
    if not raw.isdigit() or int(raw) > len(request.body):
        raise RequestError(
            400,
            f"Inference-Header-Content-Length: {raw!r} is not a length within the body ({len(request.body)} bytes)",
            "Inference-Header-Content-Length",
        )
    length = int(raw)
    return request.body[:length], request.body[length:]


def _object(value: Any, field: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise _bad(field, f"expected an object, got {describe_value(value)}")
    return value


def _path_names(doc: dict[str, Any], params: Mapping[str, str]) -> str | None:
    """Checks the body's `model_name` and `model_version` against the path (other unknown keys are ignored);
    returns the body's `model_version` when the path names no version, for the answer to check."""
    for key, path_key in ((MODEL_NAME, "model"), (MODEL_VERSION, "version")):
        value = doc.get(key)
        if value is None:
            continue
        if type(value) is not str:
            raise _bad(key, f"expected a string, got {describe_value(value)}")
        expected = params.get(path_key)
        if expected is not None and value != expected:
            raise _bad(key, f"{value!r} does not match the path's {path_key} {expected!r}")
    version = doc.get(MODEL_VERSION)
    return version if "version" not in params else None


def _parameters(value: Any, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad(field, f"expected an object, got {describe_value(value)}")
    return value


def _flag(parameters: dict[str, Any], key: str, field: str) -> bool:
    value = parameters.get(key, False)
    if type(value) is not bool:
        raise _bad(f"{field}.{key}", f"expected true or false, got {describe_value(value)}")
    return value


def _flatten(data: list[Any], field: str) -> list[Any]:
    """Row-major flat values of nested lists (every level a list of lists, or of values)."""
    while data and type(data[0]) is list:
        if set(map(type, data)) != {list}:
            raise _bad(field, "nested lists and values are mixed at the same level")
        data = list(chain.from_iterable(data))
    return data


def _check_values(values: list[Any], datatype: str, field: str) -> None:
    allowed = _ALLOWED[datatype]
    if not set(map(type, values)) <= allowed:
        k, value = next((k, v) for k, v in enumerate(values) if type(v) not in allowed)
        raise _bad(f"{field}[{k}]", f"{describe_value(value)} is not a {datatype} value")
    bounds = _INT_RANGES.get(datatype)
    if bounds is not None and values and (min(values) < bounds[0] or max(values) > bounds[1]):
        k = next(k for k, v in enumerate(values) if not bounds[0] <= v <= bounds[1])
        raise _bad(f"{field}[{k}]", f"{values[k]} is out of the {datatype} range")


def _from_binary(blob: bytes, datatype: str, count: int, field: str) -> list[Any]:
    if datatype == "BYTES":
        values: list[Any] = []
        pos = 0
        while pos < len(blob):
            if pos + 4 > len(blob):
                raise _bad(field, "truncated BYTES element (4-byte length prefix expected)")
            size = int.from_bytes(blob[pos : pos + 4], "little")
            chunk = blob[pos + 4 : pos + 4 + size]
            if len(chunk) != size:
                raise _bad(field, "truncated BYTES element")
            try:
                values.append(chunk.decode("utf-8"))
            except UnicodeDecodeError:
                raise _bad(field, f"BYTES element {len(values)} is not UTF-8 text") from None
            pos += 4 + size
    else:
        dtype = np.dtype(_NUMPY[datatype])
        if len(blob) % dtype.itemsize:
            raise _bad(field, f"{len(blob)} bytes is not a whole number of {datatype} values")
        values = np.frombuffer(blob, dtype=dtype).tolist()
    if len(values) != count:
        raise _bad(field, f"{len(values)} {datatype} values for a shape of {count} elements")
    return values


def parse_tensors(inputs: Any, tail: bytes) -> list[Tensor]:
    """The request's input tensors, each checked against its own shape and datatype."""
    if type(inputs) is not list or not inputs:
        raise _bad("inputs", f"expected a non-empty list of tensors, got {describe_value(inputs)}")
    tensors = []
    offset = 0
    for index, item in enumerate(inputs):
        name, shape, count, datatype, allowed = _tensor_head(item, index)
        parameters = item.get("parameters")
        size = None
        if parameters is not None:
            size = _parameters(parameters, f"inputs[{index}].parameters").get("binary_data_size")
        if size is not None:
            data = _binary_tensor_data(item, f"inputs[{index}]", tail, offset, size, datatype, count)
            offset += size
        else:
            data = _json_tensor_data(item, index, shape, count, datatype, allowed)
        tensors.append(Tensor(index, name, tuple(shape), datatype, data))
    if offset != len(tail):
        raise _bad("body", f"{len(tail) - offset} bytes of binary data that no input's binary_data_size claims")
    return tensors


def _tensor_head(item: Any, index: int) -> tuple[str, list[int], int, str, frozenset[type]]:
    """An input tensor's name, shape, element count, datatype and the Python types its values may have (keys the
    protocol does not define are ignored)."""
    if type(item) is not dict:
        _object(item, f"inputs[{index}]")  # raises, naming the problem
    name = item.get("name")
    if type(name) is not str or not name:
        raise _bad(f"inputs[{index}].name", f"expected a tensor name, got {describe_value(name)}")
    shape = item.get("shape")
    count = 1
    for dim in shape if type(shape) is list and shape else (None,):
        if type(dim) is not int or dim < 0:
            raise _bad(f"inputs[{index}].shape", f"expected a list of non-negative integers, got {shape!r}")
        count *= dim
    datatype = item.get("datatype")
    allowed = _ALLOWED.get(datatype) if type(datatype) is str else None
    if allowed is None:
        raise _bad(f"inputs[{index}].datatype", f"{datatype!r} is not one of {list(DATATYPES)}")
    return name, shape, count, datatype, allowed


def _binary_tensor_data(
    item: dict[str, Any], where: str, tail: bytes, offset: int, size: Any, datatype: str, count: int
) -> list[Any]:
    """The values of a tensor sent as `size` bytes of binary data, from `offset` in the body's tail."""
    if "data" in item:
        raise _bad(f"{where}.data", "a tensor sent as binary data (binary_data_size) has no 'data'")
    if type(size) is not int or size < 0 or offset + size > len(tail):
        raise _bad(
            f"{where}.parameters.binary_data_size",
            f"{size!r} does not fit the {len(tail) - offset} bytes of binary data left",
        )
    return _from_binary(tail[offset : offset + size], datatype, count, f"{where}.parameters.binary_data_size")


def _json_tensor_data(
    item: dict[str, Any], index: int, shape: list[int], count: int, datatype: str, allowed: frozenset[type]
) -> list[Any]:
    """The values of a tensor sent as JSON `data` (flat or nested), checked against its shape and datatype."""
    values = item.get("data")
    if type(values) is not list:
        raise _bad(f"inputs[{index}].data", f"expected a list of values, got {describe_value(values)}")
    data = _flatten(values, f"inputs[{index}].data") if values and type(values[0]) is list else values
    if len(data) != count:
        raise _bad(f"inputs[{index}].data", f"{len(data)} values for shape {shape} ({count} expected)")
    if not set(map(type, data)) <= allowed or datatype in _INT_RANGES:
        _check_values(data, datatype, f"inputs[{index}].data")
    return data


def _requested(doc: dict[str, Any]) -> tuple[tuple[str, bool], ...] | None:
    outputs = doc.get("outputs")
    if outputs is None:
        return None
    if not isinstance(outputs, list):
        raise _bad("outputs", f"expected a list of outputs, got {describe_value(outputs)}")
    requested = []
    for i, raw in enumerate(outputs):
        item = _object(raw, f"outputs[{i}]")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise _bad(f"outputs[{i}].name", f"expected an output name, got {describe_value(name)}")
        parameters = _parameters(item.get("parameters"), f"outputs[{i}].parameters")
        requested.append((name, _flag(parameters, "binary_data", f"outputs[{i}].parameters")))
    return tuple(requested)


# --- layouts: tensors -> the validator -------------------------------------------------------------------
def _columns_layout(tensors: list[Tensor], validator: InputValidator) -> Any:
    names = validator.names or ()
    by_name: dict[str, Tensor] = {}
    rows: int | None = None
    first: Tensor | None = None
    for t in tensors:
        if t.name in by_name:
            raise _bad(f"inputs[{t.position}].name", f"tensor {t.name!r} is sent twice")
        if len(t.shape) > 2 or (len(t.shape) == 2 and t.shape[1] != 1):
            raise _bad(f"inputs[{t.position}].shape", f"a column's tensor has shape [N] or [N, 1], got {list(t.shape)}")
        if first is None:
            first, rows = t, t.shape[0]
        elif t.shape[0] != rows:
            raise _bad(f"inputs[{t.position}].shape", f"{t.shape[0]} rows, but inputs[{first.position}] has {rows}")
        by_name[t.name] = t
    assert rows is not None
    if validator.numeric and len(by_name) == len(names) and all(t.datatype in _NUMBERS for t in tensors):
        index = [by_name[n].position for n in names]
        fields = Fields("inputs", lambda i: f"inputs[*].data[{i}]", lambda i, name, j: f"inputs[{index[j]}].data[{i}]")
        return validator.numbers([by_name[n].data for n in names], rows, fields, by_column=True)
    columns = validator.columns or ()
    missing = [c.name for c in columns if c.required and c.name not in by_name]
    if missing:
        raise _bad(
            "inputs",
            f"no tensor for column(s) {missing}; send one tensor per column {list(names)} "
            f"or one 2-D tensor of shape [N, {len(names)}] in that order",
        )
    index = [by_name[n].position if n in by_name else -1 for n in names]
    data = [by_name[n].data if n in by_name else [None] * rows for n in names]
    table = list(zip(*data, strict=True)) if data else []
    fields = Fields("inputs", lambda i: f"inputs[*].data[{i}]", lambda i, name, j: f"inputs[{index[j]}].data[{i}]")
    return validator.table(table, fields)


def _matrix_layout(tensor: Tensor, validator: InputValidator) -> Any:
    rows, width = tensor.shape
    data = tensor.data
    at = tensor.position
    fields = Fields("inputs", lambda i: f"inputs[{at}].data", lambda i, name, j: f"inputs[{at}].data[{i * width + j}]")
    if validator.numeric and tensor.datatype in _NUMBERS:
        return validator.numbers(data, rows, fields)
    return validator.table([data[i * width : (i + 1) * width] for i in range(rows)], fields)


def model_inputs(tensors: list[Tensor], validator: InputValidator) -> Any:
    """The validator's input (matrix or DataFrame) from the request's tensors."""
    single = tensors[0] if len(tensors) == 1 else None
    if validator.columns is None:  # no signature: a 2-D tensor is the table, else one column per tensor
        if single is not None and len(single.shape) == 2 and single.shape[1] != 1:
            return _matrix_layout(single, validator)
        return _records_of(tensors, validator)
    names = validator.name_set
    width = len(validator.columns)
    if single is not None and single.name not in names and len(single.shape) == 2 and single.shape[1] == width:
        return _matrix_layout(single, validator)
    if all(t.name in names for t in tensors):
        return _columns_layout(tensors, validator)
    stranger = next(t for t in tensors if t.name not in names)
    raise _bad(
        f"inputs[{stranger.position}].name",
        f"unknown input {stranger.name!r}; send one tensor per column {list(validator.names or ())} "
        f"or one 2-D tensor of shape [N, {width}] with the columns in that order",
    )


def _records_of(tensors: list[Tensor], validator: InputValidator) -> Any:
    rows = tensors[0].shape[0]
    for t in tensors:
        if len(t.shape) > 2 or (len(t.shape) == 2 and t.shape[1] != 1) or t.shape[0] != rows:
            raise _bad(f"inputs[{t.position}].shape", f"expected [{rows}] like inputs[0], got {list(t.shape)}")
    index = {t.name: t.position for t in tensors}
    records = [dict(zip(index, values, strict=True)) for values in zip(*(t.data for t in tensors), strict=True)]
    fields = Fields("inputs", lambda i: f"inputs[*].data[{i}]", lambda i, name, j: f"inputs[{index[name]}].data[{i}]")
    return validator.records(records, fields)


# --- answer -----------------------------------------------------------------------------------------------
def datatype_of(values: Sequence[Any]) -> str:
    """The V2 datatype that holds these values (FP64 for numbers that are not all integers)."""
    types = set(map(type, values))
    if types <= {bool}:
        return "BOOL"
    if types <= {int}:
        return "INT64"
    if types <= {int, float}:
        return "FP64"
    return "BYTES"


def _fits(datatype: str | None, values: list[Any]) -> bool:
    return datatype in _ALLOWED and set(map(type, values)) <= _ALLOWED[datatype]


def output_tensors(predictions: list[Any], spec: tuple[Output, ...]) -> list[dict[str, Any]]:
    """Predictions as V2 output tensors: a table's columns one each, else one tensor of shape [N] or [N, K]."""
    n = len(predictions)
    first = predictions[0] if n else None
    columns: list[tuple[str | None, list[Any], list[int]]]
    if type(first) is dict and all(type(p) is dict for p in predictions):
        keys = list(dict.fromkeys(k for p in predictions for k in p))
        columns = [(str(k), [p.get(k) for p in predictions], [n]) for k in keys]
    elif type(first) is list and all(type(p) is list and len(p) == len(first) for p in predictions):
        columns = [(None, list(chain.from_iterable(predictions)), [n, len(first)])]
    else:
        columns = [(None, predictions, [n])]
    out = []
    for name, values, shape in columns:
        if name is None:
            declared = spec[0] if len(spec) == 1 else next((o for o in spec if o.name is None), None)
        else:
            declared = next((o for o in spec if o.name == name), None)
        datatype = declared.datatype if declared is not None and _fits(declared.datatype, values) else None
        if datatype is None:
            datatype = datatype_of(values)
            if datatype == "BYTES":
                values = [v if type(v) is str else dumps(v).decode() for v in values]
        label = name or (declared.name if declared is not None and declared.name else DEFAULT_OUTPUT)
        out.append({"name": label, "datatype": datatype, "shape": shape, "data": values})
    return out


def _to_binary(values: list[Any], datatype: str) -> bytes:
    if datatype == "BYTES":
        parts = []
        for value in values:
            raw = value.encode("utf-8")
            parts.append(len(raw).to_bytes(4, "little") + raw)
        return b"".join(parts)
    return np.asarray(values, dtype=_NUMPY[datatype]).tobytes()


class V2Codec(Codec):
    name = "v2"

    def decode(self, request: Request, validator: InputValidator) -> Decoded:
        header, tail = _split(request)
        doc = _object(parse_json(header), "body")
        version = None if _TOP_KEYS.issuperset(doc) else _path_names(doc, request.params)
        request_id = doc.get("id")
        if request_id is not None and type(request_id) is not str:
            raise _bad("id", f"expected a string, got {describe_value(request_id)}")
        parameters = doc.get("parameters")
        binary = (
            False
            if parameters is None
            else _flag(_parameters(parameters, "parameters"), "binary_data_output", "parameters")
        )
        requested = None if doc.get("outputs") is None else _requested(doc)
        inputs = model_inputs(parse_tensors(doc.get("inputs"), tail), validator)
        return Decoded(inputs, Extras(request_id, requested, binary, validator.outputs, version))

    def answer(self, predictions: list[Any], decoded: Decoded, who: Answered) -> Reply:
        extras: Extras = decoded.extras
        if extras.version is not None and extras.version != who.version:
            raise _bad(
                MODEL_VERSION,
                f"{extras.version!r} does not match the version that answers {who.version!r} "
                f"(to choose one, send to .../versions/{extras.version}/infer)",
            )
        tensors = output_tensors(predictions, extras.outputs)
        head = {
            "model_name": who.model,
            "model_version": who.version,
            "id": extras.id if extras.id is not None else who.request_id,
            "parameters": {"alias": who.alias, "request_id": who.request_id},
            "outputs": tensors,
        }
        if extras.requested is None and not extras.binary:
            return Reply(200, dumps(head))
        binary = {t["name"]: extras.binary for t in tensors}
        if extras.requested is not None:
            produced = {t["name"]: t for t in tensors}
            for i, (name, as_binary) in enumerate(extras.requested):
                if name not in produced:
                    raise _bad(f"outputs[{i}].name", f"unknown output {name!r}; the model answers {list(produced)}")
                binary[name] = as_binary or extras.binary
            head["outputs"] = tensors = [produced[name] for name, _ in extras.requested]
        blobs = []
        for tensor in tensors:
            if binary[tensor["name"]]:
                blob = _to_binary(tensor.pop("data"), tensor["datatype"])
                tensor["parameters"] = {"binary_data_size": len(blob)}
                blobs.append(blob)
        body = dumps(head)
        if not blobs:
            return Reply(200, body)
        header = (HEADER_LENGTH.encode(), str(len(body)).encode())
        return Reply(200, body + b"".join(blobs), _BINARY, (header,))

    def error(self, exc: RequestError) -> Reply:
        return Reply(400 if exc.status == 422 else exc.status, dumps({"error": exc.message}))


V2 = V2Codec()


def model_metadata(model: str, versions: list[str], validator: InputValidator | None, platform: str) -> dict[str, Any]:
    """`GET /v2/models/{model}`: the inputs one tensor per signature column, the outputs from the signature."""
    inputs = []
    outputs: list[dict[str, Any]] = []
    if validator is not None:
        inputs = [
            {"name": c.name, "datatype": V2_DATATYPES.get(c.kind, "BYTES"), "shape": [-1]}
            for c in validator.columns or ()
        ]
        outputs = [
            {"name": o.name or DEFAULT_OUTPUT, "datatype": o.datatype or "BYTES", "shape": [-1]}
            for o in validator.outputs
        ]
    if not outputs:
        outputs = [{"name": DEFAULT_OUTPUT, "datatype": "BYTES", "shape": [-1]}]
    return {"name": model, "versions": versions, "platform": platform, "inputs": inputs, "outputs": outputs}
