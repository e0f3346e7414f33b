"""Request validation against a model's MLflow signature, without pandas on the fast path.

`InputValidator.from_signature(signature)` compiles the signature's input schema once per loaded
version. Every request layout reaches the model through one of two checks:

- `records(rows, fields)`: one JSON object per row (`/predict`'s `rows`, MLflow's `dataframe_records`);
- `table(rows, fields)`: one sequence of values per row, in the signature's column order (a V2 tensor,
  MLflow's `dataframe_split`, `instances` as lists, CSV).

Both return either a float64 numpy matrix (every column numeric: the native sklearn path) or a pandas
DataFrame (other schemas, given to the pyfunc model). Every problem raises `RequestError` with a 4xx status
and the field it concerns, named in the request's own layout by `Fields` (``rows[3].petal width (cm)``,
``inputs[0].data[7]``): missing and unknown columns, wrong types, NaN/Infinity and null where the column is
required, empty and oversized batches. A numeric batch is checked by C-level passes (item getters, one type
set, one finiteness test); only a batch that fails them is walked value by value, to name the field.

`validate(payload)` is `/predict`'s body (`{"rows": [...]}`). `outputs` describes the signature's outputs
(name and Open Inference Protocol datatype) for the V2 metadata.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Any, NamedTuple

import numpy as np

NUMERIC_KINDS = frozenset({"double", "float", "long", "integer"})
INTEGER_KINDS = frozenset({"long", "integer"})
_NUMBER_TYPES = frozenset({float, int})

# MLflow column types and numpy dtypes -> Open Inference Protocol datatypes.
V2_DATATYPES = {
    "double": "FP64",
    "float": "FP32",
    "long": "INT64",
    "integer": "INT32",
    "boolean": "BOOL",
    "string": "BYTES",
    "binary": "BYTES",
    "datetime": "BYTES",
}
_NUMPY_V2 = {
    "float64": "FP64",
    "float32": "FP32",
    "float16": "FP16",
    "int64": "INT64",
    "int32": "INT32",
    "int16": "INT16",
    "int8": "INT8",
    "uint64": "UINT64",
    "uint32": "UINT32",
    "uint16": "UINT16",
    "uint8": "UINT8",
    "bool": "BOOL",
    "object": "BYTES",
    "str": "BYTES",
}


class RequestError(Exception):
    """A client error: HTTP `status`, a message and the field (JSON path) it concerns."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field

    def body(self) -> dict[str, Any]:
        return {"detail": self.message, "field": self.field}


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # double, float, long, integer, boolean, string, datetime, binary, or "any"
    required: bool = True


@dataclass(frozen=True)
class Output:
    """One output of the signature: its name (None when unnamed) and V2 datatype (None when unknown)."""

    name: str | None
    datatype: str | None


class Fields(NamedTuple):  # built per request: a tuple is the cheapest to build
    """How a request names its parts in errors: the whole batch, one row, one cell (row, column name, column
    index). `Fields.records("rows")` names ``rows``, ``rows[3]`` and ``rows[3].<column>``."""

    whole: str
    row: Callable[[int], str]
    cell: Callable[[int, str, int], str]

    @classmethod
    def records(cls, prefix: str) -> Fields:
        return cls(prefix, lambda i: f"{prefix}[{i}]", lambda i, name, j: f"{prefix}[{i}].{name}")


ROWS = Fields.records("rows")


# bool before int: a boolean is an int to isinstance
_VALUE_KINDS: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (bool, "a boolean"),
    ((int, float), "a number"),
    (str, "a string"),
    (list, "an array"),
    (dict, "an object"),
)


def describe_value(value: Any) -> str:
    if value is None:
        return "null"
    for types, text in _VALUE_KINDS:
        if isinstance(value, types):
            return text
    return type(value).__name__


def _label(field: str, name: str) -> str:
    """The field, followed by the column's name when the path does not already end with it."""
    return field if field.endswith(name) else f"{field} (column {name!r})"


class InputValidator:
    """Compiled checks for one input schema (or none: rows of scalars, shape checked only)."""

    def __init__(
        self,
        columns: tuple[Column, ...] | None,
        max_batch: int,
        outputs: tuple[Output, ...] = (),
        params: frozenset[str] = frozenset(),
    ) -> None:
        self.columns = columns
        self.max_batch = max_batch
        self.outputs = outputs
        self.params = params  # the inference parameters the signature declares (the service passes none)
        self.names = tuple(c.name for c in columns) if columns is not None else None
        self.name_set = frozenset(self.names) if self.names is not None else frozenset()
        self.numeric = columns is not None and all(c.kind in NUMERIC_KINDS and c.required for c in columns)
        self.integer_cols = tuple(c.kind in INTEGER_KINDS for c in columns or ())
        self._integer_index = [j for j, is_int in enumerate(self.integer_cols) if is_int]
        names = self.names or ()
        self._values: Callable[[dict[str, Any]], Sequence[Any]] = itemgetter(*names) if len(names) > 1 else self._one

    def _one(self, row: dict[str, Any]) -> tuple[Any, ...]:
        """The values of a row of one column (itemgetter of one key returns the value, not a 1-tuple)."""
        return tuple(row[name] for name in self.names or ())

    @classmethod
    def from_signature(cls, signature: Any, max_batch: int) -> InputValidator:
        """From an `mlflow.models.ModelSignature` (or None). Tensor-based inputs are validated by the
        model itself (rows are passed through as a DataFrame)."""
        outputs = _outputs(getattr(signature, "outputs", None))
        params = frozenset(str(p.name) for p in getattr(getattr(signature, "params", None), "params", None) or ())
        inputs = getattr(signature, "inputs", None)
        if inputs is None or inputs.is_tensor_spec() or not inputs.has_input_names():
            return cls(None, max_batch, outputs, params)
        columns = []
        for spec in inputs.inputs:
            kind = getattr(spec.type, "name", None)
            columns.append(
                Column(
                    name=str(spec.name),
                    kind=kind if isinstance(kind, str) else "any",
                    required=bool(getattr(spec, "required", True)),
                )
            )
        return cls(tuple(columns), max_batch, outputs, params)

    def describe(self) -> list[dict[str, Any]]:
        if self.columns is None:
            return []
        return [{"name": c.name, "type": c.kind, "required": c.required} for c in self.columns]

    # --- /predict's body ----------------------------------------------------------------------------
    def rows_of(self, payload: Any) -> list[Any]:
        """The `rows` of a request body."""
        if not isinstance(payload, dict):
            raise RequestError(
                422, f"the request body must be a JSON object with 'rows', got {describe_value(payload)}", "body"
            )
        if "rows" not in payload:
            raise RequestError(422, "the request body has no 'rows' (a list of objects, one per row)", "rows")
        extra = sorted(k for k in payload if k != "rows")
        if extra:
            raise RequestError(422, f"unknown top-level key(s) {extra}: only 'rows' is accepted", extra[0])
        rows = payload["rows"]
        if not isinstance(rows, list):
            raise RequestError(422, f"'rows' must be a list of objects, got {describe_value(rows)}", "rows")
        return rows

    def validate(self, payload: Any) -> np.ndarray | Any:
        return self.records(self.rows_of(payload), ROWS)

    # --- the two layouts ----------------------------------------------------------------------------
    def check_batch(self, count: int, field: str) -> None:
        """An empty batch is 422, one over `max_batch` rows 413."""
        if count == 0:
            raise RequestError(422, f"'{field}' is empty: send at least one row", field)
        if count > self.max_batch:
            raise RequestError(413, f"'{field}' has {count} rows; at most {self.max_batch} are accepted", field)

    def records(self, rows: list[Any], fields: Fields = ROWS) -> np.ndarray | Any:
        """Rows as JSON objects (column: value)."""
        self.check_batch(len(rows), fields.whole)
        if self.numeric:
            try:
                table = [self._values(row) for row in rows if type(row) is dict and len(row) == len(self.names or ())]
            except KeyError:
                table = []
            if len(table) == len(rows):
                matrix = self._numeric_fast(table)
                if matrix is not None:
                    return matrix
            return self._numeric_records(rows, fields)
        return self._frame(rows, fields)

    def table(self, rows: Sequence[Sequence[Any]], fields: Fields) -> np.ndarray | Any:
        """Rows as sequences of values in the signature's column order (the caller checked that each row is a
        sequence; its length is checked here)."""
        self.check_batch(len(rows), fields.whole)
        if self.columns is None:
            import pandas as pd

            for i, row in enumerate(rows):
                for j, value in enumerate(row):
                    self._check_scalar(fields.cell(i, str(j), j), value)
            return pd.DataFrame([list(row) for row in rows])
        ncols = len(self.columns)
        for i, row in enumerate(rows):
            if len(row) != ncols:
                raise RequestError(
                    422,
                    f"{fields.row(i)}: {len(row)} values; expected {ncols}, one per column {list(self.names or ())}",
                    fields.row(i),
                )
        if self.numeric:
            matrix = self._numeric_fast(rows)
            if matrix is not None:
                return matrix
            return self._numeric_table(rows, fields)
        names = self.names or ()
        return self._frame([dict(zip(names, row, strict=True)) for row in rows], fields)

    def numbers(self, values: list[Any], rows: int, fields: Fields, by_column: bool = False) -> np.ndarray:
        """A numeric signature's matrix from values the caller knows are all ints or floats: flat and row-major,
        or (`by_column`) one list per column in the signature's order. Finiteness and integer columns are
        checked here; an anomaly is walked like `table` to name its field."""
        ncols = len(self.names or ())
        self.check_batch(rows, fields.whole)
        flat = chain.from_iterable(values) if by_column else values
        try:
            matrix = np.array(values, dtype=np.float64)
        except OverflowError:
            matrix = None
        if matrix is not None and matrix.size == rows * ncols:
            matrix = np.ascontiguousarray(matrix.T) if by_column else matrix.reshape(rows, ncols)
            if self._checked(matrix, flat):
                return matrix
        if by_column:
            table: Sequence[Sequence[Any]] = list(zip(*values, strict=True))
        else:
            table = [values[i * ncols : (i + 1) * ncols] for i in range(rows)]
        return self._numeric_table(table, fields)

    # --- numeric ------------------------------------------------------------------------------------
    def _numeric_fast(self, rows: Sequence[Sequence[Any]]) -> np.ndarray | None:
        """The float64 matrix when every value is a finite number (integers where the column says so), else
        None (the caller then walks the rows to name the problem)."""
        flat = list(chain.from_iterable(rows))  # one flat list: numpy converts it faster than rows of tuples
        if not set(map(type, flat)) <= _NUMBER_TYPES or len(flat) != len(rows) * len(self.names or ()):
            return None
        try:
            matrix = np.array(flat, dtype=np.float64).reshape(len(rows), -1)
        except (OverflowError, ValueError):
            return None
        return matrix if self._checked(matrix, flat) else None

    def _checked(self, matrix: np.ndarray, values: Iterable[int | float]) -> bool:
        """Every value finite (one sum: a NaN or an infinity makes it non-finite; so may two huge finite values,
        and the walk then finds nothing wrong), and whole numbers in the integer columns."""
        try:
            if not math.isfinite(sum(values)):
                return False
        except OverflowError:
            return False
        if self._integer_index:
            ints = matrix[:, self._integer_index]
            return bool(np.array_equal(ints, np.floor(ints)))
        return True

    def _numeric_records(self, rows: list[Any], fields: Fields) -> np.ndarray:
        names = self.names or ()
        out = np.empty((len(rows), len(names)), dtype=np.float64)
        for i, row in enumerate(rows):
            if type(row) is not dict:
                raise RequestError(
                    422, f"{fields.row(i)} must be an object of column: value, got {describe_value(row)}", fields.row(i)
                )
            if len(row) != len(names) or not self.name_set.issuperset(row):
                self._column_error(i, row, fields)
            for j, name in enumerate(names):
                if name not in row:
                    self._column_error(i, row, fields)
                out[i, j] = self._number(fields.cell(i, name, j), j, row[name])
        return out

    def _numeric_table(self, rows: Sequence[Sequence[Any]], fields: Fields) -> np.ndarray:
        names = self.names or ()
        out = np.empty((len(rows), len(names)), dtype=np.float64)
        for i, row in enumerate(rows):
            for j, value in enumerate(row):
                out[i, j] = self._number(fields.cell(i, names[j], j), j, value)
        return out

    def _number(self, field: str, j: int, value: Any) -> float:
        assert self.columns is not None
        col = self.columns[j]
        where = _label(field, col.name)
        t = type(value)
        if t is float:
            if not math.isfinite(value):
                raise RequestError(422, f"{where}: {value} is not allowed (finite number required)", field)
            if self.integer_cols[j] and not value.is_integer():
                raise RequestError(422, f"{where}: expected an integer, got {value}", field)
            return float(value)
        if t is int:
            try:
                return float(value)
            except OverflowError:
                raise RequestError(422, f"{where}: number out of range", field) from None
        if value is None:
            raise RequestError(422, f"{where}: null is not allowed (column is required)", field)
        expected = "an integer" if col.kind in INTEGER_KINDS else "a number"
        raise RequestError(422, f"{where}: expected {expected} ({col.kind}), got {describe_value(value)}", field)

    def _column_error(self, i: int, row: dict[str, Any], fields: Fields) -> None:
        names = list(self.names or ())
        missing = [n for n in names if n not in row]
        unknown = [k for k in row if k not in self.name_set]
        if missing:
            field = fields.cell(i, missing[0], names.index(missing[0]))
            raise RequestError(422, f"{fields.row(i)}: missing column(s) {missing}; expected {names}", field)
        field = fields.cell(i, unknown[0], -1)
        raise RequestError(422, f"{fields.row(i)}: unknown column(s) {unknown}; expected {names}", field)

    # --- other schemas: a DataFrame for pyfunc ------------------------------------------------------
    @staticmethod
    def _check_scalar(field: str, value: Any) -> None:
        if isinstance(value, (dict, list)):
            raise RequestError(422, f"{field}: nested values are not accepted", field)
        if isinstance(value, float) and not math.isfinite(value):
            raise RequestError(422, f"{field}: {value} is not allowed", field)

    def _frame(self, rows: list[Any], fields: Fields) -> Any:
        import pandas as pd

        for i, row in enumerate(rows):
            if type(row) is not dict:
                raise RequestError(
                    422, f"{fields.row(i)} must be an object of column: value, got {describe_value(row)}", fields.row(i)
                )
            if self.columns is None:
                for j, (key, value) in enumerate(row.items()):
                    self._check_scalar(fields.cell(i, str(key), j), value)
                continue
            if any(k not in self.name_set for k in row):
                self._column_error(i, row, fields)
            for j, col in enumerate(self.columns):
                value = row.get(col.name)
                if value is None:
                    if col.required:
                        if col.name not in row:
                            self._column_error(i, row, fields)
                        field = fields.cell(i, col.name, j)
                        raise RequestError(
                            422, f"{_label(field, col.name)}: null is not allowed (column is required)", field
                        )
                    continue
                self._check_value(fields.cell(i, col.name, j), col, value)
        names = list(self.names) if self.names is not None else None
        return pd.DataFrame.from_records(rows, columns=names)

    @staticmethod
    def _check_value(field: str, col: Column, value: Any) -> None:
        where = _label(field, col.name)
        kind = col.kind
        ok: bool
        if kind in ("double", "float"):
            ok = type(value) in (int, float)
            if ok and not math.isfinite(float(value)):
                raise RequestError(422, f"{where}: {value} is not allowed (finite number required)", field)
        elif kind in INTEGER_KINDS:
            ok = type(value) is int or (type(value) is float and value.is_integer())
        elif kind == "boolean":
            ok = type(value) is bool
        elif kind in ("string", "datetime", "binary"):
            ok = type(value) is str
        else:  # arrays, objects, maps: left to the model's own schema enforcement
            ok = True
        if not ok:
            raise RequestError(422, f"{where}: expected {kind}, got {describe_value(value)}", field)


def _outputs(schema: Any) -> tuple[Output, ...]:
    """The signature's outputs (column specs or tensor specs) with their V2 datatypes."""
    if schema is None:
        return ()
    out = []
    for spec in getattr(schema, "inputs", []):
        name = getattr(spec, "name", None)
        kind = getattr(getattr(spec, "type", None), "name", None)
        dtype = getattr(spec, "type", None) if schema.is_tensor_spec() else None
        datatype = _NUMPY_V2.get(str(dtype)) if dtype is not None else V2_DATATYPES.get(str(kind))
        out.append(Output(name=str(name) if name else None, datatype=datatype))
    return tuple(out)
