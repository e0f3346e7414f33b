"""The concurrency limit of one serving process: THE slot every prediction path takes.

At most `MLOPS_SERVING_MAX_IN_FLIGHT` predictions are in flight per process (per uvicorn worker); one more
is answered at once with 429 and `Retry-After`, instead of queueing until memory or latency give way. The
per-client rate limits are the ingress's (Traefik); this limit protects the process whoever the clients are.

`try_enter()` returns None (a slot is taken: call `leave()` when the answer is done) or the `Refusal` to
answer; `slot()` is the same as a context manager. The event loop is single-threaded and there is no `await`
between the check and the increment, so the count needs no lock. `serving_in_flight` shows the count.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Gauge

from services.common import contract
from services.serving.security import Refusal

RETRY_AFTER_SECONDS = 1
DEFAULT_MAX_IN_FLIGHT = 128


class ConcurrencyLimiter:
    def __init__(self, limit: int, registry: CollectorRegistry | None = None) -> None:
        if limit < 1:
            raise ValueError(f"the concurrency limit must be >= 1, got {limit}")
        self.limit = limit
        self.in_flight = 0
        self._gauge: Gauge | None = None  # counted per request only where the gauge cannot read the count
        self.gauge = (
            Gauge(
                "serving_in_flight",
                "Prediction requests in flight in this process (admitted, not yet answered).",
                registry=registry,
                multiprocess_mode="livesum",
            )
            if registry is not None
            else None
        )
        if self.gauge is not None:
            if contract.PROMETHEUS_MULTIPROC_DIR.get():  # each worker's value lives in a file: kept up to date
                self._gauge = self.gauge
            else:  # one process: the gauge reads the count when scraped, nothing to do per request
                self.gauge.set_function(lambda: self.in_flight)

    def try_enter(self) -> Refusal | None:
        """Take a slot (None) or refuse: 429 with Retry-After when `limit` predictions are in flight."""
        if self.in_flight >= self.limit:
            return Refusal(
                429,
                f"{self.limit} predictions are in flight in this process (its limit); retry after "
                f"{RETRY_AFTER_SECONDS} s",
                {"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        self.in_flight += 1
        if self._gauge is not None:
            self._gauge.inc()
        return None

    def leave(self) -> None:
        """Give back the slot taken by a successful `try_enter`."""
        self.in_flight -= 1
        if self._gauge is not None:
            self._gauge.dec()

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """`with limiter.slot():` around one prediction; raises the `Refusal` when the process is full."""
        refusal = self.try_enter()
        if refusal is not None:
            raise refusal
        try:
            yield
        finally:
            self.leave()
