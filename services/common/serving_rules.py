"""The serving rules every part of the platform shares, defined once.

- `ALIAS_PATTERN`: the MLflow aliases the platform accepts (MLflow's own characters: ASCII letters, digits,
  `_` and `-`; at most 64). The serving service, the stack settings and the DAGs' params check this one pattern.
- `DEFAULT_ALIASES` (the first is the primary) and `DEFAULT_WORKERS` (uvicorn workers per serving pod).
- Memory sizing: `PROCESS_MEMORY_BYTES` per serving process, `min_memory_bytes`, `loader_process_fits`, and
  Kubernetes memory quantities (`QUANTITY`, `quantity_bytes`).
- The routing modes as typed models (`FixedRouting`, `ABRouting`, `CanaryRouting`, `BlueGreenRouting`,
  `ShadowRouting`; `RoutingConfig` is their union and `parse_routing` validates a JSON object into one).
  Each mode carries its own behaviour (`aliases()`, `shares(active)`, `shadow_alias()`, `switch_pair()`),
  so a new mode is one new class here. `env_value()` is the routing as the service reads it from
  `MLOPS_SERVING_ROUTING`.
- `RoutingRecord`: a routing set at run time (by whom, when, why), as the registered-model tag that every
  serving replica follows holds it; `parse_routing_record` reads the tag.
- `Agreement`: when a shadow's (or a candidate's) answer agrees with the primary's: `exact` for classes and
  labels, `absolute` or `relative` within a tolerance for numbers (a regression's versions never answer
  bit-for-bit alike); `parse_agreement` validates the JSON of `MLOPS_SERVING_SHADOW_AGREEMENT`.

The service (`services.serving`), the stack settings (`stacks.settings`), the serving component, the DAGs
and `devstack` import these names from here. This module imports nothing but pydantic: the Pulumi program
and the DAGs load it.
"""

from __future__ import annotations

import json
import numbers
import re
from abc import abstractmethod
from collections.abc import Iterable
from typing import Annotated, ClassVar, Literal, Self, get_args

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, TypeAdapter, ValidationError, model_validator

# --- aliases and workers ----------------------------------------------------------------------------
ALIAS_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
Alias = Annotated[str, Field(pattern=ALIAS_PATTERN)]
DEFAULT_ALIASES: tuple[str, ...] = ("champion", "challenger")
DEFAULT_WORKERS = 2

_ALIAS = re.compile(ALIAS_PATTERN)


def invalid_aliases(names: Iterable[object]) -> list[object]:
    """The names that are not aliases under `ALIAS_PATTERN` (empty when all are)."""
    return [n for n in names if not isinstance(n, str) or _ALIAS.match(n) is None]


# --- memory sizing ----------------------------------------------------------------------------------
# Measured resident memory of one serving worker, and of one loader process, with mlflow, sklearn and
# pandas imported and a small model loaded: ~260-270 MiB each, rounded up to leave room for a second
# version during a hot swap.
PROCESS_MEMORY_BYTES = 320 * 2**20

_UNITS = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "m": 1e-3,
}
QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")


def quantity_bytes(quantity: str) -> int:
    """A Kubernetes memory quantity ("512Mi", "1G", "1.5Gi") in bytes."""
    match = QUANTITY.match(quantity.strip())
    if match is None:
        raise ValueError(f"not a Kubernetes quantity: {quantity!r}")
    number, unit = match.groups()
    return int(float(number) * _UNITS[unit or ""])


def min_memory_bytes(workers: int) -> int:
    """The smallest memory limit that holds `workers` serving processes (model loads in threads); the stack
    settings refuse a profile below it, which would otherwise be OOM-killed in the cluster."""
    return workers * PROCESS_MEMORY_BYTES


def loader_process_fits(workers: int, limit: int | None) -> bool:
    """A loader process per worker doubles the processes; the service uses them only when the limit allows."""
    return limit is None or limit >= 2 * workers * PROCESS_MEMORY_BYTES


# --- routing ----------------------------------------------------------------------------------------
def _compact(value: float) -> int | float:
    return int(value) if value.is_integer() else value


# A share of traffic; in JSON a whole number stays whole (`10`, not `10.0`), as the stack files write it.
Share = Annotated[float, Field(ge=0, allow_inf_nan=False), PlainSerializer(_compact, when_used="json")]


class Routing(BaseModel):
    """One routing mode: which aliases it loads, which share of traffic each gets, what it shadows."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: str  # each mode narrows it to its own literal, the discriminator of `RoutingConfig`

    @abstractmethod
    def aliases(self) -> tuple[str, ...]:
        """Every alias the routing can send a request to (or shadow to), primary first."""

    @abstractmethod
    def shares(self, active: str | None = None) -> dict[str, float]:
        """The share of traffic (0..1] of each alias that gets any; `active` is the blue-green alias
        switched to at run time (None: as configured; other modes ignore it)."""

    def shadow_alias(self) -> str | None:
        """The alias that receives a copy of every routed request, if any."""
        return None

    def switch_pair(self) -> tuple[str, ...]:
        """The aliases traffic can be switched between at run time (the admin API); empty: no switch."""
        return ()

    def env_value(self) -> str:
        """The routing as `MLOPS_SERVING_ROUTING` carries it: JSON with sorted keys."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)


def _normalised(weights: dict[str, float]) -> dict[str, float]:
    total = sum(weights.values())
    return {alias: weight / total for alias, weight in weights.items() if weight > 0}


class FixedRouting(Routing):
    mode: Literal["fixed"] = "fixed"
    alias: Alias

    def aliases(self) -> tuple[str, ...]:
        return (self.alias,)

    def shares(self, active: str | None = None) -> dict[str, float]:
        return {self.alias: 1.0}


class ABRouting(Routing):
    mode: Literal["ab"] = "ab"
    weights: dict[Alias, Share]

    @model_validator(mode="after")
    def _positive_total(self) -> ABRouting:
        if not self.weights or sum(self.weights.values()) <= 0:
            raise ValueError("ab routing needs at least one alias with a positive weight")
        return self

    def aliases(self) -> tuple[str, ...]:
        return tuple(self.weights)

    def shares(self, active: str | None = None) -> dict[str, float]:
        return _normalised(self.weights)


class _PairRouting(Routing):
    """A routing between two distinct aliases, named by the fields in `PAIR` (the first is the primary)."""

    PAIR: ClassVar[tuple[str, str]]

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        first, second = self.PAIR
        if getattr(self, first) == getattr(self, second):
            raise ValueError(f"{self.mode} {first} and {second} must differ")
        return self

    def aliases(self) -> tuple[str, ...]:
        return tuple(getattr(self, name) for name in self.PAIR)


class CanaryRouting(_PairRouting):
    PAIR = ("primary", "challenger")
    mode: Literal["canary"] = "canary"
    primary: Alias
    challenger: Alias
    percent: Annotated[Share, Field(le=100)]

    def shares(self, active: str | None = None) -> dict[str, float]:
        return _normalised({self.primary: 100.0 - self.percent, self.challenger: self.percent})


class BlueGreenRouting(_PairRouting):
    PAIR = ("active", "standby")
    mode: Literal["blue-green"] = "blue-green"
    active: Alias
    standby: Alias

    def shares(self, active: str | None = None) -> dict[str, float]:
        return {active or self.active: 1.0}

    def switch_pair(self) -> tuple[str, ...]:
        return self.aliases()


class ShadowRouting(_PairRouting):
    PAIR = ("primary", "shadow")
    mode: Literal["shadow"] = "shadow"
    primary: Alias
    shadow: Alias

    def shares(self, active: str | None = None) -> dict[str, float]:
        return {self.primary: 1.0}

    def shadow_alias(self) -> str | None:
        return self.shadow


RoutingConfig = Annotated[
    FixedRouting | ABRouting | CanaryRouting | BlueGreenRouting | ShadowRouting, Field(discriminator="mode")
]
_MODELS: tuple[type[Routing], ...] = get_args(get_args(RoutingConfig)[0])
ROUTING_MODES: tuple[str, ...] = tuple(m.model_fields["mode"].default for m in _MODELS)
_ROUTING: TypeAdapter[RoutingConfig] = TypeAdapter(RoutingConfig)


def parse_routing(value: object) -> RoutingConfig:
    """Validate a routing object (the service at start, the stack settings before a deploy).

    Raises ValueError whose message names each wrong field, e.g. `percent: Input should be less
    than or equal to 100`.
    """
    try:
        return _ROUTING.validate_python(value)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            # the first location item is the union member chosen by `mode`; the rest is the field
            loc = ".".join(str(p) for p in err["loc"][1:])
            msg = str(err["msg"]).removeprefix("Value error, ")
            problems.append(f"{loc}: {msg}" if loc else msg)
        raise ValueError("; ".join(problems)) from None


# --- routing as data ---------------------------------------------------------------------------------
class RoutingRecord(BaseModel):
    """A routing set at run time, with who set it, when and why: the value of the registered-model tag
    `registry_tags.ROUTING_TAG`. Every serving replica applies it on its next watcher pass."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    routing: RoutingConfig
    by: Annotated[str, Field(min_length=1, max_length=200)]
    at: Annotated[str, Field(min_length=1, max_length=64, description="ISO 8601 time, UTC")]
    reason: Annotated[str, Field(min_length=1, max_length=500)]

    def tag_value(self) -> str:
        """The record as the tag holds it: compact JSON with sorted keys (MLflow tags take 8,000 characters)."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def parse_routing_record(value: str) -> RoutingRecord:
    """The record a tag holds; ValueError naming each wrong field."""
    try:
        raw = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    try:
        return RoutingRecord.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            path = list(err["loc"])
            if path[:1] == ["routing"] and len(path) > 1:
                del path[1]  # the union member chosen by `mode`
            loc = ".".join(str(p) for p in path)
            problems.append(f"{loc}: {str(err['msg']).removeprefix('Value error, ')}")
        raise ValueError("; ".join(problems)) from None


def loadable_problem(routing: Routing, loadable: Iterable[str]) -> str | None:
    """Why a run-time routing cannot be applied by a deployment that loads `loadable` (None: it can): the
    aliases a deployment loads are fixed by its stack settings, a routing may only use those."""
    outside = [a for a in routing.aliases() if a not in set(loadable)]
    if outside:
        return f"routing uses aliases {outside} that the deployment does not load (it loads {list(loadable)})"
    return None


# --- shadow agreement -------------------------------------------------------------------------------
class Agreement(BaseModel):
    """When two answers to the same rows agree.

    `exact`: every prediction equal (classes, labels, anything not a number). `absolute`: numbers within
    `tolerance` of each other; `relative`: within `tolerance` times the larger magnitude (so 0.05 is 5%).
    Non-numbers are compared exactly in every mode; nested predictions (probabilities, multi-output) element
    by element. Answers of different lengths never agree.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["exact", "absolute", "relative"] = "exact"
    tolerance: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0

    @model_validator(mode="after")
    def _tolerance_fits_mode(self) -> Agreement:
        if self.mode == "exact" and self.tolerance != 0:
            raise ValueError("tolerance: exact agreement takes no tolerance (use mode absolute or relative)")
        if self.mode == "relative" and self.tolerance >= 1:
            raise ValueError(f"tolerance: a relative tolerance is a fraction below 1 (0.05 = 5%); got {self.tolerance}")
        return self

    def agrees(self, primary: object, other: object) -> bool:
        """Whether `other` agrees with `primary` under this rule (lists element by element)."""
        if isinstance(primary, list | tuple) or isinstance(other, list | tuple):
            if not (isinstance(primary, list | tuple) and isinstance(other, list | tuple)):
                return False
            return len(primary) == len(other) and all(self.agrees(a, b) for a, b in zip(primary, other, strict=True))
        if self.mode == "exact" or not (_is_number(primary) and _is_number(other)):
            return primary == other and isinstance(primary, bool) == isinstance(other, bool)
        a, b = float(primary), float(other)  # type: ignore[arg-type]
        if self.mode == "absolute":
            return abs(a - b) <= self.tolerance
        return abs(a - b) <= self.tolerance * max(abs(a), abs(b))

    def env_value(self) -> str:
        """The rule as `MLOPS_SERVING_SHADOW_AGREEMENT` carries it."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)  # numpy's scalars are Reals too


def parse_agreement(value: object) -> Agreement:
    """Validate an agreement object; ValueError naming each wrong field."""
    try:
        return Agreement.model_validate(value)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            msg = str(err["msg"]).removeprefix("Value error, ")
            problems.append(msg if msg.startswith(f"{loc}:") or not loc else f"{loc}: {msg}")
        raise ValueError("; ".join(problems)) from None
