"""The request layouts the prediction endpoints speak, one codec each.

- `native`: this service's own `{"rows": [...]}` (`POST /predict`, `POST /variants/{alias}/predict`);
- `open_inference`: the Open Inference Protocol (v2), REST (`POST /v2/models/{model}[/versions/{version}]/infer`),
  as KServe, Triton, MLServer and Seldon clients send it, with Triton's binary tensor extension;
- `mlflow`: MLflow's scoring protocol (`POST /invocations`), as `mlflow models serve` clients send it.

A codec turns a request body into the answering version's model input, through that version's
`InputValidator` (so every layout is validated the same way, each naming fields in its own terms), and turns
predictions or a `RequestError` into its answer. Codecs are pure: no I/O, no state; the request path
(`services.serving.routes.lean`) does the rest, identically for all of them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple

import orjson

from services.serving.schema import InputValidator, RequestError

JSON = b"application/json"
NO_PARAMS: Mapping[str, str] = MappingProxyType({})


# Named tuples, not dataclasses: several are built per request, and a tuple is the cheapest to build.
class Request(NamedTuple):
    """What a codec may read of a request: its raw body, its headers (names in lower case) and its path's
    parameters (`{"model": ..., "version": ...}` of a V2 path)."""

    body: bytes
    headers: Mapping[str, str]
    params: Mapping[str, str] = NO_PARAMS


class Decoded(NamedTuple):
    """The model input of one request and what the codec keeps for its answer."""

    inputs: Any  # the validator's output: float64 matrix or DataFrame
    extras: Any = None


class Answered(NamedTuple):
    """Who answered: the registered model, the alias and version, and the request id."""

    model: str
    alias: str
    version: str
    request_id: str


class Reply(NamedTuple):
    status: int
    body: bytes
    content_type: bytes = JSON
    headers: Sequence[tuple[bytes, bytes]] = ()


def dumps(body: Any) -> bytes:
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


class Codec(ABC):
    """One protocol: `decode` a request for a validator, `answer` with predictions, render an `error`."""

    name: str

    @abstractmethod
    def decode(self, request: Request, validator: InputValidator) -> Decoded:
        """The model input; raises `RequestError` (status, message, field) when the request is wrong."""

    @abstractmethod
    def answer(self, predictions: list[Any], decoded: Decoded, who: Answered) -> Reply:
        """The 200 answer (raises `RequestError` when the request asked for something the predictions lack)."""

    @abstractmethod
    def error(self, exc: RequestError) -> Reply:
        """The answer to a refused or failed request, in the protocol's error shape."""
