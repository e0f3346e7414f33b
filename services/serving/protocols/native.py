"""This service's own layout: `{"rows": [{"<column>": value, ...}, ...]}` in, `{"alias", "version",
"predictions", "request_id"}` out, errors `{"detail", "field"}` with the service's statuses (400 malformed
JSON, 422 invalid input, 413 too large, 404 unknown alias, 503 nothing loaded)."""

from __future__ import annotations

from typing import Any

from services.serving.jsonbody import parse_json
from services.serving.protocols import Answered, Codec, Decoded, Reply, Request, dumps
from services.serving.schema import InputValidator, RequestError


class NativeCodec(Codec):
    name = "native"

    def decode(self, request: Request, validator: InputValidator) -> Decoded:
        return Decoded(validator.validate(parse_json(request.body)))

    def answer(self, predictions: list[Any], decoded: Decoded, who: Answered) -> Reply:
        body = {"alias": who.alias, "version": who.version, "predictions": predictions, "request_id": who.request_id}
        return Reply(200, dumps(body))

    def error(self, exc: RequestError) -> Reply:
        return Reply(exc.status, dumps(exc.body()))


NATIVE = NativeCodec()
