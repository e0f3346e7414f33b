"""The validation engine of the stack settings, next to pydantic's (which validates the model catalog): a setting is a
dataclass field declared with `setting(...)` (its key, doc, default, bounds, pattern or check); `parse_raw` turns a
raw configuration value into the field's type and `validate` checks it, each returning the problem
("must be ...") that `load_settings` reports with the stack file and the key. Also the shared validators."""

from __future__ import annotations

import ipaddress
import json
import math
import re
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Union, get_args, get_origin

from services.common import env_settings
from services.common.serving_rules import QUANTITY

PROJECT = "mlops-platform"
ENVIRONMENTS = ("dev", "staging", "prod")

Environment = Literal["dev", "staging", "prod"]
DefaultFn = Callable[[str], Any]


class SettingsError(env_settings.SettingsError):
    """Invalid or unknown stack settings (the services' settings error, with several problems): `problems` holds
    one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid stack settings:\n  " + "\n  ".join(problems))


class Secret:
    """A secret setting's value. It never shows its content in str/repr/logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def output(self) -> Any:
        """The value as a secret `pulumi.Output` (what components must pass on)."""
        import pulumi

        return pulumi.Output.secret(self._value)

    def __repr__(self) -> str:
        return "Secret([secret])"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))


Validator = Callable[[Any], "str | None"]  # returns a problem ("must be ...") or None


@dataclass(frozen=True)
class Meta:
    key: str
    doc: str
    default: Any = None
    default_fn: DefaultFn | None = None
    required: bool = False
    secret: bool = False
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None
    check: Validator | None = None
    parse: Callable[[Any], Any] | None = None  # JSON object -> the field's type; ValueError names the problem


def setting(
    key: str,
    doc: str,
    *,
    default: Any = None,
    default_fn: DefaultFn | None = None,
    required: bool = False,
    secret: bool = False,
    choices: tuple[str, ...] = (),
    minimum: float | None = None,
    maximum: float | None = None,
    pattern: str | None = None,
    check: Validator | None = None,
    parse: Callable[[Any], Any] | None = None,
) -> Any:
    """Declare one setting as a dataclass field. Values are filled in by `load_settings`."""
    meta = Meta(key, doc, default, default_fn, required, secret, choices, minimum, maximum, pattern, check, parse)
    return field(metadata={"setting": meta})


def by_env(dev: Any, prod: Any, staging: Any = None) -> DefaultFn:
    return lambda env: prod if env == "prod" else (staging if env == "staging" and staging is not None else dev)


# --- validators -----------------------------------------------------------------------------------
DNS_NAME = r"^(?=.{1,253}$)([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)+[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$"


def check_quantity(value: Any) -> str | None:
    return None if QUANTITY.match(str(value)) else "must be a Kubernetes quantity such as 500m, 2 or 4Gi"


def check_cidrs(value: Any) -> str | None:
    for item in value:
        try:
            net = ipaddress.ip_network(item, strict=True)
        except ValueError:
            return f"must be a list of CIDR blocks; {item!r} is not one"
        if net.prefixlen == 0:
            return "must not admit the whole internet (0.0.0.0/0)"
    return None


def check_pem(value: Any) -> str | None:
    if "-----BEGIN CERTIFICATE-----" in str(value):
        return None
    return "must be PEM certificate(s) (-----BEGIN CERTIFICATE-----)"


def check_image_tag(value: Any) -> str | None:
    if value in ("", "latest"):
        return "must be a pinned tag, not empty or 'latest'"
    return None


def quote(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else json.dumps(value, default=str)


ParseResult = tuple[Any, str | None]


def _parse_secret(raw: Any) -> ParseResult:
    return (Secret(str(raw)), None) if isinstance(raw, str) else (None, "must be a string")


def _parse_bool(raw: Any) -> ParseResult:
    if isinstance(raw, bool):
        return raw, None
    if str(raw).lower() in ("true", "false"):
        return str(raw).lower() == "true", None
    return None, "must be true or false"


def _parse_int(raw: Any) -> ParseResult:
    if isinstance(raw, bool):
        return None, "must be a whole number"
    try:
        return int(str(raw)), None
    except ValueError:
        return None, "must be a whole number"


def _parse_float(raw: Any) -> ParseResult:
    if isinstance(raw, bool):
        return None, "must be a number"
    try:
        number = float(str(raw))
    except ValueError:
        return None, "must be a number"
    return (number, None) if math.isfinite(number) else (None, "must be a finite number")


def _parse_str(raw: Any) -> ParseResult:
    if isinstance(raw, (dict, list, bool)):
        return None, "must be a string"
    return str(raw), None


def _parse_list(raw: Any) -> ParseResult:
    """A JSON list, its text, or comma-separated items."""
    value = raw
    if isinstance(raw, str):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = [s.strip() for s in raw.split(",") if s.strip()]
    if not isinstance(value, list):
        return None, "must be a list"
    return tuple(value), None


def _parse_object(raw: Any) -> ParseResult:
    """A JSON object or its text."""
    value = raw
    if isinstance(raw, str):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            return None, "must be an object"
    if not isinstance(value, dict):
        return None, "must be an object"
    return value, None


# Parsers by plain annotation (no type arguments), and by the origin of a parameterized one (Literal["a", "b"],
# tuple[str, ...], Mapping[str, Any]).
_PARSERS: dict[Any, Callable[[Any], ParseResult]] = {
    Secret: _parse_secret,
    bool: _parse_bool,
    int: _parse_int,
    float: _parse_float,
    str: _parse_str,
    dict: _parse_object,
}
_GENERIC_PARSERS: dict[Any, Callable[[Any], ParseResult]] = {
    Literal: _parse_str,
    tuple: _parse_list,
    list: _parse_list,
    Mapping: _parse_object,
    dict: _parse_object,
}


def parse_raw(raw: Any, annotation: Any) -> ParseResult:
    """Convert a raw config value (a string, or a JSON value) to the annotated type."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        inner = [a for a in get_args(annotation) if a is not type(None)]
        return parse_raw(raw, inner[0])
    parser = _PARSERS.get(annotation) if origin is None else _GENERIC_PARSERS.get(origin)
    if parser is None:
        raise TypeError(f"unsupported setting type {annotation!r}")
    return parser(raw)


def parse_with(parse: Callable[[Any], Any], raw: Any) -> ParseResult:
    """A JSON object (or its text) converted by a setting's own parser."""
    value, problem = parse_raw(raw, dict)
    if problem is not None:
        return None, problem
    try:
        return parse(value), None
    except ValueError as exc:
        return None, str(exc)


def validate(meta: Meta, value: Any) -> str | None:
    if meta.choices and value not in meta.choices:
        return f"must be one of {', '.join(meta.choices)}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if meta.minimum is not None and value < meta.minimum:
            return f"must be >= {meta.minimum:g}"
        if meta.maximum is not None and value > meta.maximum:
            return f"must be <= {meta.maximum:g}"
    if meta.pattern and isinstance(value, str) and not re.match(meta.pattern, value):
        return f"must match {meta.pattern}"
    if meta.check is not None:
        return meta.check(value)
    return None
