"""The service's HTTP protocol: uvicorn's httptools protocol, with each response written in one piece.

uvicorn writes a response's status line and headers to the socket as soon as the ASGI `http.response.start`
message arrives, and the body when `http.response.body` arrives: two `send` syscalls and two TCP segments
for every answer, even when the application sends both messages back to back (as every endpoint of this
service does). `CoalescingTransport` sits between the protocol and its transport: a write is kept until the
next one, which goes out joined with it in one syscall, or until the end of the current turn of the event
loop (so a streamed answer is delayed by at most one turn, never reordered), or until the connection is
closed, paused or asked for its buffer size.

uvicorn also arms a keep-alive timer after every response and cancels it when the next request's first bytes
arrive: a timer made and cancelled per request on a busy connection. `HttpProtocol` keeps one timer per
connection: a request only marks the connection busy, a response marks it idle and arms the timer if none is
pending; when the timer fires on a connection that was busy since, it is armed again for what is left of the
idle time, so an idle connection is still closed `timeout_keep_alive` seconds after its last response and a
busy one never is. Everything else is uvicorn's own protocol: parsing, flow control, pipelining, limits.

`python -m services.serving` passes `HttpProtocol` to uvicorn as its `http` implementation.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport:
    """A transport whose consecutive writes within one loop turn reach the socket as one write."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is None:
            if not data:
                return
            self._held = bytes(data)
            self._loop.call_soon(self.flush)
            return
        self._held = None
        self._transport.writelines((held, data))  # one writev

    def flush(self) -> None:
        """Write what is held (a no-op when nothing is)."""
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def writelines(self, chunks: Any) -> None:
        self.write(b"".join(chunks))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + (len(self._held) if self._held is not None else 0)

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def __getattr__(self, name: str) -> Any:  # anything else a transport offers (abort, set_protocol, ...)
        return getattr(self._transport, name)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing through a `CoalescingTransport`, with one keep-alive timer per
    connection instead of one per request."""

    _idle_since: float | None = None  # loop time of the last response while no request is being handled

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; they have its methods
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]

    def _unset_keepalive_if_required(self) -> None:
        # uvicorn calls this when a request's bytes arrive (and on the paths overridden below): the connection is
        # busy; the pending timer, if any, stays and finds it busy or idle again when it fires
        self._idle_since = None

    def on_response_complete(self) -> None:
        # uvicorn's, but for the timer: armed only when none is pending
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        self._idle_since = self.loop.time()
        if self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )

    def timeout_keep_alive_handler(self) -> None:
        self.timeout_keep_alive_task = None
        idle_since = self._idle_since
        if idle_since is None:  # a request is being handled: its response arms the timer again
            return
        left = idle_since + self.timeout_keep_alive - self.loop.time()
        if left > 0:
            self.timeout_keep_alive_task = self.loop.call_later(left, self.timeout_keep_alive_handler)
            return
        super().timeout_keep_alive_handler()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None
