"""Request validation against a model's MLflow signature, without pandas on the fast path.

`InputValidator.from_signature(signature)` compiles the signature's input schema once per loaded
version. `validate(rows)` checks a batch of JSON rows (list of objects) and returns either a float64
numpy matrix (every column numeric: the native sklearn path) or a pandas DataFrame (other schemas,
given to the pyfunc model). Every problem raises `RequestError` with a 4xx status and the field
(``rows[3].petal width (cm)``) it concerns: missing and unknown columns, wrong types, NaN/Infinity
and null where the column is required, empty and oversized batches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

NUMERIC_KINDS = frozenset({"double", "float", "long", "integer"})


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


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


class InputValidator:
    """Compiled checks for one input schema (or none: rows of scalars, shape checked only)."""

    def __init__(self, columns: tuple[Column, ...] | None, max_batch: int) -> None:
        self.columns = columns
        self.max_batch = max_batch
        self.names = tuple(c.name for c in columns) if columns is not None else None
        self.name_set = frozenset(self.names) if self.names is not None else frozenset()
        self.numeric = columns is not None and all(c.kind in NUMERIC_KINDS and c.required for c in columns)
        self.integer_cols = tuple(c.kind in ("long", "integer") for c in columns or ())

    @classmethod
    def from_signature(cls, signature: Any, max_batch: int) -> InputValidator:
        """From an `mlflow.models.ModelSignature` (or None). Tensor-based inputs are validated by the
        model itself (rows are passed through as a DataFrame)."""
        inputs = getattr(signature, "inputs", None)
        if inputs is None or inputs.is_tensor_spec() or not inputs.has_input_names():
            return cls(None, max_batch)
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
        return cls(tuple(columns), max_batch)

    def describe(self) -> list[dict[str, Any]]:
        if self.columns is None:
            return []
        return [{"name": c.name, "type": c.kind, "required": c.required} for c in self.columns]

    # ---------------------------------------------------------------------------------------------
    def rows_of(self, payload: Any) -> list[Any]:
        """The `rows` of a request body, with the batch-size checks."""
        if not isinstance(payload, dict):
            raise RequestError(
                422, f"the request body must be a JSON object with 'rows', got {_describe(payload)}", "body"
            )
        if "rows" not in payload:
            raise RequestError(422, "the request body has no 'rows' (a list of objects, one per row)", "rows")
        extra = sorted(k for k in payload if k != "rows")
        if extra:
            raise RequestError(422, f"unknown top-level key(s) {extra}: only 'rows' is accepted", extra[0])
        rows = payload["rows"]
        if not isinstance(rows, list):
            raise RequestError(422, f"'rows' must be a list of objects, got {_describe(rows)}", "rows")
        if not rows:
            raise RequestError(422, "'rows' is empty: send at least one row", "rows")
        if len(rows) > self.max_batch:
            raise RequestError(413, f"'rows' has {len(rows)} rows; at most {self.max_batch} are accepted", "rows")
        return rows

    def validate(self, payload: Any) -> np.ndarray | Any:
        rows = self.rows_of(payload)
        if self.numeric:
            return self._numeric_matrix(rows)
        return self._frame(rows)

    def _numeric_matrix(self, rows: list[Any]) -> np.ndarray:
        assert self.columns is not None and self.names is not None
        names = self.names
        ncols = len(names)
        out = np.empty((len(rows), ncols), dtype=np.float64)
        for i, row in enumerate(rows):
            if type(row) is not dict:
                raise RequestError(
                    422, f"rows[{i}] must be an object of column: value, got {_describe(row)}", f"rows[{i}]"
                )
            if len(row) != ncols or not self.name_set.issuperset(row):
                self._column_error(i, row)
            for j, name in enumerate(names):
                try:
                    value = row[name]
                except KeyError:
                    self._column_error(i, row)
                t = type(value)
                if t is float:
                    if not math.isfinite(value):
                        raise RequestError(
                            422,
                            f"rows[{i}].{name}: {value} is not allowed (finite number required)",
                            f"rows[{i}].{name}",
                        )
                    if self.integer_cols[j] and not value.is_integer():
                        raise RequestError(
                            422, f"rows[{i}].{name}: expected an integer, got {value}", f"rows[{i}].{name}"
                        )
                    out[i, j] = value
                elif t is int:
                    try:
                        out[i, j] = value
                    except OverflowError:
                        raise RequestError(422, f"rows[{i}].{name}: number out of range", f"rows[{i}].{name}") from None
                else:
                    self._type_error(i, j, value)
        return out

    def _column_error(self, i: int, row: dict[str, Any]) -> None:
        missing = [n for n in (self.names or ()) if n not in row]
        unknown = [k for k in row if k not in self.name_set]
        if missing:
            raise RequestError(
                422,
                f"rows[{i}]: missing column(s) {missing}; expected {list(self.names or ())}",
                f"rows[{i}].{missing[0]}",
            )
        raise RequestError(
            422, f"rows[{i}]: unknown column(s) {unknown}; expected {list(self.names or ())}", f"rows[{i}].{unknown[0]}"
        )

    def _type_error(self, i: int, j: int, value: Any) -> None:
        assert self.columns is not None
        col = self.columns[j]
        if value is None:
            raise RequestError(
                422, f"rows[{i}].{col.name}: null is not allowed (column is required)", f"rows[{i}].{col.name}"
            )
        expected = "an integer" if col.kind in ("long", "integer") else "a number"
        raise RequestError(
            422,
            f"rows[{i}].{col.name}: expected {expected} ({col.kind}), got {_describe(value)}",
            f"rows[{i}].{col.name}",
        )

    def _frame(self, rows: list[Any]) -> Any:
        import pandas as pd

        for i, row in enumerate(rows):
            if type(row) is not dict:
                raise RequestError(
                    422, f"rows[{i}] must be an object of column: value, got {_describe(row)}", f"rows[{i}]"
                )
            if self.columns is None:
                for key, value in row.items():
                    if isinstance(value, (dict, list)):
                        raise RequestError(422, f"rows[{i}].{key}: nested values are not accepted", f"rows[{i}].{key}")
                    if isinstance(value, float) and not math.isfinite(value):
                        raise RequestError(422, f"rows[{i}].{key}: {value} is not allowed", f"rows[{i}].{key}")
                continue
            unknown = [k for k in row if k not in self.name_set]
            if unknown:
                self._column_error(i, row)
            for j, col in enumerate(self.columns):
                if col.name not in row or row[col.name] is None:
                    if col.required:
                        if col.name not in row:
                            self._column_error(i, row)
                        self._type_error(i, j, None)
                    continue
                self._check_value(i, col, row[col.name])
        names = list(self.names) if self.names is not None else None
        return pd.DataFrame.from_records(rows, columns=names)

    def _check_value(self, i: int, col: Column, value: Any) -> None:
        field = f"rows[{i}].{col.name}"
        kind = col.kind
        ok: bool
        if kind in ("double", "float"):
            ok = type(value) in (int, float)
            if ok and not math.isfinite(float(value)):
                raise RequestError(422, f"{field}: {value} is not allowed (finite number required)", field)
        elif kind in ("long", "integer"):
            ok = type(value) is int or (type(value) is float and value.is_integer())
        elif kind == "boolean":
            ok = type(value) is bool
        elif kind in ("string", "datetime", "binary"):
            ok = type(value) is str
        else:  # arrays, objects, maps: left to the model's own schema enforcement
            ok = True
        if not ok:
            raise RequestError(422, f"{field}: expected {kind}, got {_describe(value)}", field)
