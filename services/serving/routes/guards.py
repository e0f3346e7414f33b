"""THE admission of prediction requests: the caller's credentials (`services.serving.security`), then a slot
under the process's concurrency limit (`services.serving.limits`). Health, readiness, metrics and the admin
API (its own token) are not admitted here.

`admit(state, headers)` returns None when the request may proceed (a slot is then taken, and the caller must
call `state.limiter.leave()` when its answer is done), else the `Refusal` to answer with its headers
(`WWW-Authenticate`, `Retry-After`). The lean request path (`services.serving.routes.lean.serve`) calls it for
every prediction endpoint. Every refusal (401, 403, 429, 503) is counted in `serving_rejected_requests` by status.

The admin token (the reload token the pipelines hold) is accepted as a prediction credential too, whatever
`serving.auth` says: the pipelines verify a promotion with a prediction, and the admin token already controls
which version serves, so accepting it grants nothing new. It is compared in constant time.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from services.serving.routes.deps import ServingState
from services.serving.security import Refusal, bearer_token


async def admit(state: ServingState, headers: Mapping[str, str]) -> Refusal | None:
    """None when the request may proceed (a slot is then taken), else the refusal to answer."""
    refusal = None if _is_admin(state, headers) else await state.auth.authorize(headers)
    if refusal is None:
        refusal = state.limiter.try_enter()
    if refusal is not None:
        state.metrics.rejected.labels(str(refusal.status)).inc()
    return refusal


def _is_admin(state: ServingState, headers: Mapping[str, str]) -> bool:
    token = bearer_token(headers.get("authorization"))
    return bool(
        token
        and state.reload_token
        and hmac.compare_digest(token.encode("utf-8", "surrogateescape"), state.reload_token)
    )
