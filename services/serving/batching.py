"""Micro-batching of concurrent predictions for one loaded variant.

Requests that are being handled in the same turns of the event loop are stacked into one matrix and
predicted in one call: a fitted sklearn Pipeline costs ~250 us per `predict` call whatever the row
count up to a few hundred rows, so under concurrent load most of that cost is shared. The batch is predicted
two loop turns after its first request (requests whose handlers are already queued join it), and one turn
later again for as long as the last turn brought new requests (at most `MAX_TURNS` turns, at most
`max_rows` rows): under load the turns are spent on the requests' own parsing and validation, so batches
grow without idle waiting, and a lone request still waits only two turns. If a batched call fails, each
request is predicted on its own so that one request's problem never fails another's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np

MAX_TURNS = 8


class MicroBatcher:
    def __init__(self, predict: Callable[[Any], list[Any]], max_rows: int = 256) -> None:
        self._predict = predict
        self.max_rows = max_rows
        self._pending: list[tuple[np.ndarray, asyncio.Future[list[Any]]]] = []
        self._rows = 0
        self._scheduled = False
        self._seen = 0  # requests in the batch at the last turn
        self._batch = 0  # the number of the batch being gathered (a flush starts the next one)
        # The loop of the last call: `asyncio.get_running_loop()` costs a getpid() syscall per call, so it is
        # asked only when a batch starts (a batcher lives in one loop; tests may run several in turn).
        self._loop: asyncio.AbstractEventLoop | None = None

    async def predict(self, matrix: np.ndarray) -> list[Any]:
        loop = self._loop if self._scheduled and self._loop is not None else asyncio.get_running_loop()
        self._loop = loop
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._pending.append((matrix, future))
        self._rows += len(matrix)
        if self._rows >= self.max_rows:
            self._flush()
        elif not self._scheduled:
            self._scheduled = True
            self._seen = 0
            loop.call_soon(self._turn, loop, self._batch, 1)
        return await future

    def _turn(self, loop: asyncio.AbstractEventLoop, batch: int, turn: int) -> None:
        """One loop turn after the last: wait another turn while requests keep joining, else predict."""
        if batch != self._batch:  # that batch was predicted meanwhile (max_rows reached)
            return
        joined = len(self._pending) > self._seen
        self._seen = len(self._pending)
        if turn < 2 or (joined and turn < MAX_TURNS):
            loop.call_soon(self._turn, loop, batch, turn + 1)
        else:
            self._flush()

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        self._rows = 0
        self._scheduled = False
        self._batch += 1
        if not batch:
            return
        if len(batch) == 1:
            self._run_one(*batch[0])
            return
        try:
            out = self._predict(np.vstack([m for m, _ in batch]))
        except Exception:
            for matrix, future in batch:
                self._run_one(matrix, future)
            return
        start = 0
        for matrix, future in batch:
            end = start + len(matrix)
            if not future.done():
                future.set_result(out[start:end])
            start = end

    def _run_one(self, matrix: np.ndarray, future: asyncio.Future[list[Any]]) -> None:
        try:
            result = self._predict(matrix)
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
            return
        if not future.done():
            future.set_result(result)
