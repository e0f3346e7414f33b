"""THE parser of JSON request bodies: `parse_json(raw)` returns the document or raises a 4xx `RequestError`.

orjson first (fast); what it refuses is parsed again with the standard library, so that NaN and Infinity
literals and integers beyond 64 bits reach the validator, which reports them by field. An integer literal
that no float64 can hold (beyond ~1.8e308, which includes those with thousands of digits: Python refuses to
convert more than 4300 digits at all) is answered 422 naming its field (`rows[0].x`), never 500.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson

from services.serving.schema import RequestError


class _OutOfRange:
    """Stands for an integer literal no float64 can hold, so that its field can be named."""

    def __init__(self, digits: int) -> None:
        self.digits = digits


def _int_parser(found: list[_OutOfRange]) -> Callable[[str], int | _OutOfRange]:
    def parse_int(text: str) -> int | _OutOfRange:
        try:
            value = int(text)  # ValueError beyond sys.get_int_max_str_digits() digits
            float(value)  # OverflowError beyond the float64 range
        except (ValueError, OverflowError):
            found.append(_OutOfRange(len(text.lstrip("-"))))
            return found[-1]
        return value

    return parse_int


def _field_of(document: Any, marker_type: type) -> tuple[str, Any] | None:
    """The JSON path (`rows[0].x`) and value of the first value of `marker_type` in document order."""
    stack: list[tuple[str, Any]] = [("", document)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, marker_type):
            return path or "body", value
        if isinstance(value, dict):
            children = [(f"{path}.{k}" if path else str(k), v) for k, v in value.items()]
        elif isinstance(value, list):
            children = [(f"{path or 'body'}[{i}]", v) for i, v in enumerate(value)]
        else:
            continue
        stack.extend(reversed(children))
    return None


def parse_json(raw: bytes) -> Any:
    """The JSON document of a request body; 400 when malformed, 422 naming the field of an integer out of range."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    out_of_range: list[_OutOfRange] = []
    try:
        document = json.loads(raw, parse_int=_int_parser(out_of_range))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise RequestError(400, f"malformed JSON: {exc}", "body") from None
    found = _field_of(document, _OutOfRange) if out_of_range else None
    if found is not None:
        field, marker = found
        raise RequestError(
            422, f"{field}: number out of range (an integer of {marker.digits} digits; float64 at most)", field
        )
    return document
