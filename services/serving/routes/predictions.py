"""`POST /predict` (the variant the routing chooses) and `POST /variants/{alias}/predict` (one variant), in this
service's own layout (`services.serving.protocols.native`).

Both are `Endpoint`s of the lean request path (`services.serving.routes.lean.serve`): admitted by `guards.admit`
(credentials, concurrency limit), bodies parsed by `services.serving.jsonbody.parse_json` and validated against
the answering version's signature (`services.serving.schema`); shadow routing sends a copy to the shadow alias
after the answer, compares, logs and counts the outcome, never returns it.
"""

from __future__ import annotations

from services.common import contract
from services.serving.protocols.native import NATIVE
from services.serving.routes.bodies import ERRORS, ErrorBody, PredictResponse
from services.serving.routes.lean import ADMISSION, Doc, Endpoint, by_alias, routed

_BODY = {"application/json": {"$ref": "#/components/schemas/PredictRequest"}}  # follows the loaded signature
_OK = {"application/json": PredictResponse}
_ERRORS = {
    **{int(status): (str(info["description"]), ErrorBody) for status, info in ERRORS.items()},
    **{status: (description, ErrorBody) for status, description in ADMISSION.items()},
}

ENDPOINTS = (
    Endpoint(
        "POST",
        "/predict",
        NATIVE,
        routed,
        Doc("Predict with the variant chosen by the routing (sticky with X-Client-Id)", _BODY, _OK, _ERRORS),
    ),
    Endpoint(
        "POST",
        contract.variant_predict_path("{alias}"),
        NATIVE,
        by_alias,
        Doc("Predict with one variant", _BODY, _OK, _ERRORS, params=("alias",)),
    ),
)
