"""THE admission of prediction requests: the caller's credentials (`services.serving.security`), then a slot
under the process's concurrency limit (`services.serving.limits`). Health, readiness, metrics and the admin
API (its own token) are not admitted here.

- `Admitted`: the dependency of every prediction router (`APIRouter(dependencies=[Admitted])`); the slot is
  given back when the answer is done.
- `admit(state, headers)`: the same check for a path that answers without FastAPI's dependencies. None means
  admitted, and the caller must call `state.limiter.leave()` when its answer is done; otherwise answer the
  returned `Refusal` (`services.serving.security.refusal_response`).

Every refusal (401, 403, 429, 503) is counted in `serving_rejected_requests` by status.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from fastapi import Depends, Request

from services.serving.api.deps import ServingState, State
from services.serving.security import Refusal


async def admit(state: ServingState, headers: Mapping[str, str]) -> Refusal | None:
    """None when the request may proceed (a slot is then taken), else the refusal to answer."""
    refusal = await state.auth.authorize(headers)
    if refusal is None:
        refusal = state.limiter.try_enter()
    if refusal is not None:
        state.metrics.rejected.labels(str(refusal.status)).inc()
    return refusal


async def admitted(request: Request, state: State) -> AsyncIterator[None]:
    refusal = await admit(state, request.headers)
    if refusal is not None:
        raise refusal
    try:
        yield
    finally:
        state.limiter.leave()


Admitted: Any = Depends(admitted)
