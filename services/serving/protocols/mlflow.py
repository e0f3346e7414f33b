"""MLflow's scoring protocol (`mlflow models serve`, `POST /invocations`), as MLflow's own clients send it.

JSON bodies (`Content-Type: application/json`, UTF-8) hold exactly one of

- `dataframe_split`: `{"columns"?: [...], "data": [[...], ...], "index"?: [...]}` (what
  `mlflow.models.convert_input_example_to_serving_input` and the logged `serving_input_example.json` use);
- `dataframe_records`: `[{"<column>": value, ...}, ...]`;
- `instances` (TF-serving rows): objects, or lists of values in the signature's column order;
- `inputs` (TF-serving columns): `{"<column>": [values...], ...}`, or rows like `instances`;

plus, as `mlflow models serve` accepts them, any other keys (ignored) and `params`: ignored too, as MLflow
ignores them for a model whose signature declares no parameters; parameters the version's signature declares
are refused (400), since this service predicts with their defaults and MLflow would not. A `text/csv` body is a
header line of column names and one line per row. Answer: `{"predictions": [...]}` (a table's rows as
objects), as MLflow writes it. Errors: `{"error_code", "message"}` (the message starts with
the field), status 400 for any problem with the input (MLflow's `BAD_REQUEST`), 415 for another content type
or charset, and the service's own 404, 413, 503 and admission refusals.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

from services.serving.jsonbody import parse_json
from services.serving.protocols import Answered, Codec, Decoded, Reply, Request, dumps
from services.serving.schema import INTEGER_KINDS, NUMERIC_KINDS, Fields, InputValidator, RequestError, describe_value

CONTENT_TYPE_JSON = "application/json"
CONTENT_TYPE_CSV = "text/csv"
FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
PARAMS = "params"
_SPLIT_KEYS = frozenset({"columns", "data", "index"})
ERROR_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    413: "BAD_REQUEST",
    415: "BAD_REQUEST",
    429: "REQUEST_LIMIT_EXCEEDED",
    503: "TEMPORARILY_UNAVAILABLE",
}


def _bad(field: str, message: str) -> RequestError:
    return RequestError(400, f"{field}: {message}", field)


def _table_of(
    rows: Any, field: str, columns: Sequence[str] | None, validator: InputValidator, cell: Callable[[int, int], str]
) -> Any:
    """Rows of values; `columns` names their positions (None: the signature's order)."""
    if not isinstance(rows, list):
        raise _bad(field, f"expected a list of rows, got {describe_value(rows)}")
    for i, row in enumerate(rows):
        if type(row) is not list:
            raise _bad(f"{field}[{i}]", f"expected a list of values, got {describe_value(row)}")
    names = validator.names
    if columns is not None and names is not None:
        positions = _positions(rows, field, columns, names, validator)
        table = _in_signature_order(rows, positions)
        fields = Fields(field, lambda i: f"{field}[{i}]", lambda i, name, j: cell(i, positions[j]))
        return validator.table(table, fields)
    if columns is not None:  # no signature: the request's own columns
        records = [dict(zip(columns, row, strict=False)) for row in rows]
        return validator.records(records, Fields(field, lambda i: f"{field}[{i}]", lambda i, name, j: cell(i, j)))
    return validator.table(rows, Fields(field, lambda i: f"{field}[{i}]", lambda i, name, j: cell(i, j)))


def _positions(
    rows: list[list[Any]], field: str, columns: Sequence[str], names: Sequence[str], validator: InputValidator
) -> list[int]:
    """Where each of the signature's columns is in the request's rows (-1: an optional column left out); 400 on
    a row of the wrong width, an unknown column or a missing required one."""
    width = len(columns)
    for i, row in enumerate(rows):
        if len(row) != width:
            raise _bad(f"{field}[{i}]", f"{len(row)} values for {width} columns {list(columns)}")
    position = {name: k for k, name in enumerate(columns)}
    unknown = [c for c in columns if c not in validator.name_set]
    if unknown:
        k = columns.index(unknown[0])
        raise _bad(f"{field.rsplit('.', 1)[0]}.columns[{k}]", f"unknown column {unknown[0]!r}; expected {list(names)}")
    required = [c.name for c in validator.columns or () if c.required]
    missing = [n for n in required if n not in position]
    if missing:
        raise _bad(f"{field.rsplit('.', 1)[0]}.columns", f"missing column(s) {missing}; expected {list(names)}")
    return [position.get(n, -1) for n in names]


def _in_signature_order(rows: list[list[Any]], positions: list[int]) -> list[Sequence[Any]]:
    """The rows' values in the signature's column order."""
    if -1 in positions:  # optional columns left out
        table: list[Sequence[Any]] = [[row[p] if p >= 0 else None for p in positions] for row in rows]
    elif len(positions) > 1:
        pick = itemgetter(*positions)
        table = [pick(row) for row in rows]
    else:
        table = [[row[positions[0]]] for row in rows]
    return table


def _split(value: Any, validator: InputValidator) -> Any:
    if not isinstance(value, dict):
        raise _bad("dataframe_split", f"expected an object with 'columns' and 'data', got {describe_value(value)}")
    unknown = sorted(k for k in value if k not in _SPLIT_KEYS)
    if unknown:
        raise _bad(f"dataframe_split.{unknown[0]}", f"unknown key; expected some of {sorted(_SPLIT_KEYS)}")
    if "data" not in value:
        raise _bad("dataframe_split.data", "missing")
    columns = value.get("columns")
    if columns is not None and (not isinstance(columns, list) or not all(isinstance(c, str) for c in columns)):
        raise _bad("dataframe_split.columns", f"expected a list of column names, got {columns!r}")
    if columns is not None and len(set(columns)) != len(columns):
        raise _bad("dataframe_split.columns", "a column is named twice")
    return _table_of(
        value["data"], "dataframe_split.data", columns, validator, lambda i, k: f"dataframe_split.data[{i}][{k}]"
    )


def _rows(value: Any, key: str, validator: InputValidator) -> Any:
    """`instances` or row-wise `inputs`: objects (records), lists (columns in order) or scalars (one column)."""
    if not isinstance(value, list):
        raise _bad(key, f"expected a list of rows, got {describe_value(value)}")
    if value and all(type(row) is dict for row in value):
        return validator.records(value, Fields.records(key))
    if value and all(type(row) is list for row in value):
        return _table_of(value, key, None, validator, lambda i, j: f"{key}[{i}][{j}]")
    if (
        value
        and validator.names is not None
        and len(validator.names) == 1
        and not any(isinstance(row, (dict, list)) for row in value)
    ):
        return _table_of([[row] for row in value], key, None, validator, lambda i, j: f"{key}[{i}]")
    validator.check_batch(len(value), key)
    raise _bad(key, "expected rows as objects (column: value) or as lists of values in the signature's column order")


def _columnar(value: dict[str, Any], validator: InputValidator) -> Any:
    """`inputs` as `{"<column>": [values...]}` (or one value per column: one row)."""
    if not value:
        raise _bad("inputs", "no column")
    if not any(isinstance(v, list) for v in value.values()):
        value = {k: [v] for k, v in value.items()}
    lengths = {k: len(v) if isinstance(v, list) else -1 for k, v in value.items()}
    first = next(iter(value))
    for key, length in lengths.items():
        if length != lengths[first]:
            raise _bad(f"inputs.{key}", f"expected a list of {lengths[first]} values like inputs.{first}")
    columns = list(value)
    rows = [list(row) for row in zip(*value.values(), strict=True)]
    return _table_of(rows, "inputs", columns, validator, lambda i, k: f"inputs.{columns[k]}[{i}]")


def _csv_value(text: str, kind: str | None, field: str) -> Any:
    if text == "":
        return None
    if kind in NUMERIC_KINDS:
        try:
            return int(text) if kind in INTEGER_KINDS and text.lstrip("+-").isdigit() else float(text)
        except ValueError:
            raise _bad(field, f"{text!r} is not a number") from None
    if kind == "boolean":
        lowered = text.lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
        raise _bad(field, f"{text!r} is not true or false")
    if kind is None:  # no signature: numbers where they parse
        for convert in (int, float):
            try:
                return convert(text)
            except ValueError:
                pass
    return text


def _csv(body: bytes, validator: InputValidator) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _bad("body", f"not UTF-8 text: {exc}") from None
    try:
        lines = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise _bad("body", f"malformed CSV: {exc}") from None
    lines = [line for line in lines if line]
    if not lines:
        raise _bad("body", "no CSV header line (the column names)")
    header, data = lines[0], lines[1:]
    kinds = {c.name: c.kind for c in validator.columns or ()}
    for i, line in enumerate(data):
        if len(line) != len(header):
            raise _bad(f"csv[{i}]", f"line {i + 2} has {len(line)} values for {len(header)} columns")
    rows = [
        [_csv_value(text, kinds.get(name), f"csv[{i}].{name}") for name, text in zip(header, line, strict=True)]
        for i, line in enumerate(data)
    ]
    if len(set(header)) != len(header):
        raise _bad("csv.columns", "a column is named twice")
    return _table_of(rows, "csv", header, validator, lambda i, k: f"csv[{i}].{header[k]}")


def _content_type(value: str | None) -> str:
    """The media type, 415 for a charset other than UTF-8 or an unknown parameter (as MLflow answers)."""
    if not value:
        return CONTENT_TYPE_JSON
    mime, *parameters = (part.strip() for part in value.split(";"))
    for parameter in parameters:
        key, _, val = parameter.partition("=")
        if key.strip().lower() != "charset":
            raise RequestError(415, f"content-type: unknown parameter {key.strip()!r}", "content-type")
        if val.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise RequestError(415, "content-type: only the UTF-8 charset is accepted", "content-type")
    mime = mime.lower()
    if mime not in (CONTENT_TYPE_JSON, CONTENT_TYPE_CSV):
        raise RequestError(
            415, f"content-type: {mime!r} is not one of {[CONTENT_TYPE_JSON, CONTENT_TYPE_CSV]}", "content-type"
        )
    return mime


def _declared_params(params: Any, declared: frozenset[str]) -> None:
    """Refuses `params` that would change the answer under `mlflow models serve`: a version whose signature
    declares parameters gets them there, and not here (the service predicts with their defaults)."""
    if not isinstance(params, dict):
        raise _bad(PARAMS, f"expected an object, got {describe_value(params)}")
    given = [k for k in params if k in declared]
    if given:
        raise _bad(
            f"{PARAMS}.{given[0]}",
            f"this version declares the parameter(s) {sorted(declared)}, but this service passes no parameters "
            "to the model (it predicts with their defaults); leave them out",
        )


class MlflowCodec(Codec):
    name = "mlflow"

    def decode(self, request: Request, validator: InputValidator) -> Decoded:
        if _content_type(request.headers.get("content-type")) == CONTENT_TYPE_CSV:
            return Decoded(_csv(request.body, validator))
        doc = parse_json(request.body)
        if not isinstance(doc, dict):
            raise _bad("body", f"expected a JSON object with one of {list(FORMATS)}, got {describe_value(doc)}")
        present = [k for k in FORMATS if k in doc]
        if len(present) != 1:
            raise _bad("body", f"expected exactly one of {list(FORMATS)}, got {present} (keys sent: {list(doc)})")
        if validator.params and doc.get(PARAMS) is not None:
            _declared_params(doc[PARAMS], validator.params)
        key = present[0]
        value = doc[key]
        if key == "dataframe_split":
            return Decoded(_split(value, validator))
        if key == "dataframe_records":
            if not isinstance(value, list):
                raise _bad(key, f"expected a list of objects, got {describe_value(value)}")
            return Decoded(validator.records(value, Fields.records(key)))
        if key == "inputs" and isinstance(value, dict):
            return Decoded(_columnar(value, validator))
        return Decoded(_rows(value, key, validator))

    def answer(self, predictions: list[Any], decoded: Decoded, who: Answered) -> Reply:
        return Reply(200, dumps({"predictions": predictions}))

    def error(self, exc: RequestError) -> Reply:
        status = 400 if exc.status == 422 else exc.status
        return Reply(status, dumps({"error_code": ERROR_CODES.get(status, "INTERNAL_ERROR"), "message": exc.message}))


MLFLOW = MlflowCodec()
