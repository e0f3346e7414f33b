"""The service's HTTP protocol (`services.serving.http`) writes each answer in one piece and changes nothing else.

In-process, against a recording transport: two writes in one loop turn reach the transport as one; a lone write
goes out at the end of the turn; closing, EOF and the buffer size account for what is held; nothing is reordered.
Over real sockets (uvicorn on loopback with `HttpProtocol`, no other server): a whole answer is one write
syscall of the server, keep-alive and pipelined requests are answered in order, a busy connection keeps one
keep-alive timer and is closed only after the keep-alive time without requests, a streamed answer's first chunk arrives
before its last is sent, `Connection: close` closes, HEAD has no body, and a malformed request gets uvicorn's
400. `python -m services.serving` runs uvicorn with this protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from services.common import contract
from services.serving.http import CoalescingTransport, HttpProtocol


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.eof = False
        self.buffered = 0

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def writelines(self, chunks: Any) -> None:
        self.writes.append(b"".join(chunks))

    def close(self) -> None:
        self.closed = True

    def write_eof(self) -> None:
        self.eof = True

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 1)}.get(name, default)

    def abort(self) -> None:
        self.closed = True


def run_turns(body: Any) -> None:
    async def main() -> None:
        await body(asyncio.get_running_loop())

    asyncio.run(main())


def test_two_writes_in_one_turn_reach_the_transport_as_one() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        inner = RecordingTransport()
        transport = CoalescingTransport(inner, loop)
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        assert inner.writes == []
        assert transport.get_write_buffer_size() == len(b"HTTP/1.1 200 OK\r\n\r\n")
        transport.write(b"body")
        assert inner.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
        await asyncio.sleep(0)  # the end-of-turn flush finds nothing held
        assert inner.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]

    run_turns(body)


def test_a_lone_write_goes_out_at_the_end_of_the_turn_in_order() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        inner = RecordingTransport()
        transport = CoalescingTransport(inner, loop)
        transport.write(b"head")
        await asyncio.sleep(0)
        assert inner.writes == [b"head"]
        transport.write(bytearray(b"chunk-1"))
        transport.write(memoryview(b"chunk-2"))
        transport.write(b"chunk-3")
        await asyncio.sleep(0)
        assert inner.writes == [b"head", b"chunk-1chunk-2", b"chunk-3"]
        transport.write(b"")  # nothing to hold
        await asyncio.sleep(0)
        assert inner.writes == [b"head", b"chunk-1chunk-2", b"chunk-3"]

    run_turns(body)


def test_close_and_eof_send_what_is_held_first() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        inner = RecordingTransport()
        transport = CoalescingTransport(inner, loop)
        transport.write(b"last words")
        transport.write_eof()
        assert inner.writes == [b"last words"] and inner.eof
        transport.write(b"more")
        transport.close()
        assert inner.writes == [b"last words", b"more"] and inner.closed and transport.is_closing()
        await asyncio.sleep(0)
        assert inner.writes == [b"last words", b"more"]  # nothing written twice, nothing after close

    run_turns(body)


def test_everything_else_is_the_transports() -> None:
    async def body(loop: asyncio.AbstractEventLoop) -> None:
        inner = RecordingTransport()
        transport = CoalescingTransport(inner, loop)
        assert transport.get_extra_info("peername") == ("127.0.0.1", 1)
        assert transport.get_extra_info("sockname", "x") == "x"
        inner.buffered = 10
        assert transport.get_write_buffer_size() == 10
        transport.abort()
        assert inner.closed

    run_turns(body)


# --- over real sockets -----------------------------------------------------------------------------------------
async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (message := await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"first;", "more_body": True})
        await asyncio.sleep(0.5)
        await send({"type": "http.response.body", "body": b"last", "more_body": False})
        return
    answer = b"echo:" + body + b":" + scope["path"].encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(answer)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


@contextlib.contextmanager
def uvicorn_with_protocol(**options: Any) -> Iterator[tuple[uvicorn.Server, int, int]]:
    """uvicorn with `HttpProtocol` in a thread: (the server, its port, the thread's native id)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=free,
        http=HttpProtocol,
        loop="uvloop",
        log_level="warning",
        lifespan="on",
        **options,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    assert thread.native_id is not None
    try:
        yield server, free, thread.native_id
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[int, int]]:
    """(port, the server thread's native id)"""
    with uvicorn_with_protocol() as (_, port, tid):
        yield port, tid


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_until(sock: socket.socket, marker: bytes, have: bytes = b"") -> tuple[bytes, list[bytes]]:
    """Bytes received until `marker` is among them, and the pieces as they arrived."""
    pieces: list[bytes] = []
    data = have
    while marker not in data:
        piece = sock.recv(65536)
        if not piece:
            break
        pieces.append(piece)
        data += piece
    return data, pieces


def post(path: str, body: bytes, extra: str = "") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


@pytest.fixture
def port(server: tuple[int, int]) -> int:
    return server[0]


def write_syscalls(tid: int) -> int:
    """The write syscalls made so far by one thread of this process (Linux's per-task I/O accounting)."""
    for line in open(f"/proc/self/task/{tid}/io").read().splitlines():
        if line.startswith("syscw:"):
            return int(line.split()[1])
    raise AssertionError("no syscw in /proc/self/task/<tid>/io")


def test_a_whole_answer_is_one_write(server: tuple[int, int]) -> None:
    port, tid = server
    with connect(port) as sock:
        before = write_syscalls(tid)
        for i in range(5):
            sock.sendall(post("/one", f"n{i}".encode()))
            data, _ = read_until(sock, f"echo:n{i}:/one".encode())
            assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(f"echo:n{i}:/one".encode())
        # uvicorn alone makes two per answer (status line and headers, then the body)
        assert write_syscalls(tid) - before == 5


def test_pipelined_requests_on_one_connection_are_answered_in_order(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(post("/a", b"1") + post("/b", b"2") + post("/c", b"3"))
        data, _ = read_until(sock, b"echo:3:/c")
        assert data.index(b"echo:1:/a") < data.index(b"echo:2:/b") < data.index(b"echo:3:/c")
        assert data.count(b"HTTP/1.1 200 OK") == 3


def test_a_streamed_answer_is_not_held_until_its_end(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(post("/stream", b""))
        started = time.monotonic()
        first, _ = read_until(sock, b"first;")
        early = time.monotonic() - started
        rest, _ = read_until(sock, b"0\r\n\r\n", first)
        assert b"transfer-encoding: chunked" in first.lower()
        assert b"last" not in first and b"last" in rest
        # the first chunk came while the application still slept before the last one
        assert early < time.monotonic() - started


def test_connection_close_head_and_malformed_requests(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(post("/bye", b"x", "Connection: close\r\n"))
        data, _ = read_until(sock, b"\x00never")  # until the server closes
        assert data.startswith(b"HTTP/1.1 200 OK") and data.endswith(b"echo:x:/bye")
        assert b"connection: close" in data.lower()
    with connect(port) as sock:
        sock.sendall(b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n")
        data, _ = read_until(sock, b"\r\n\r\n")
        assert data.startswith(b"HTTP/1.1 200 OK") and data.endswith(b"\r\n\r\n")
    with connect(port) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        data, _ = read_until(sock, b"\x00never")
        assert data.startswith(b"HTTP/1.1 400 Bad Request")


KEEP_ALIVE = 1.0  # seconds


@pytest.fixture(scope="module")
def short_keep_alive() -> Iterator[tuple[uvicorn.Server, int]]:
    with uvicorn_with_protocol(timeout_keep_alive=KEEP_ALIVE) as (server, port, _):
        yield server, port


def keep_alive_timers(server: uvicorn.Server) -> list[Any]:
    """The pending keep-alive timer of each open connection (None where none is pending)."""
    return [protocol.timeout_keep_alive_task for protocol in list(server.server_state.connections)]


def test_a_busy_connection_keeps_one_keep_alive_timer(short_keep_alive: tuple[uvicorn.Server, int]) -> None:
    server, port = short_keep_alive
    with connect(port) as sock:
        timers = []
        for i in range(5):  # back to back: uvicorn alone makes (and cancels) a new timer for each answer
            sock.sendall(post("/k", f"{i}".encode()))
            read_until(sock, f"echo:{i}:/k".encode())
            (timer,) = keep_alive_timers(server)
            timers.append(timer)
        assert timers[0] is not None and all(timer is timers[0] for timer in timers)


def test_a_connection_is_closed_only_after_the_keep_alive_time_without_requests(
    short_keep_alive: tuple[uvicorn.Server, int],
) -> None:
    _, port = short_keep_alive
    with connect(port) as sock:
        started = time.monotonic()
        for i in range(6):  # busy for ~3 keep-alive periods: every request is answered on the same connection
            sock.sendall(post("/busy", f"{i}".encode()))
            data, _ = read_until(sock, f"echo:{i}:/busy".encode())
            assert data.startswith(b"HTTP/1.1 200 OK")
            answered = time.monotonic()  # the server's timer started when it wrote this answer, a moment before
            time.sleep(KEEP_ALIVE / 2)
        assert time.monotonic() - started > 2.5 * KEEP_ALIVE
        assert sock.recv(1) == b""  # then idle: the server closes the connection
        # not before the idle time has passed: a quarter of it is left for the time the answer took to be read here
        assert time.monotonic() - answered >= 0.75 * KEEP_ALIVE
    with connect(port) as sock:  # a connection that was only answered once is closed too
        sock.sendall(post("/once", b"x"))
        read_until(sock, b"echo:x:/once")
        assert sock.recv(1) == b""


def test_a_closed_connection_leaves_no_timer(short_keep_alive: tuple[uvicorn.Server, int]) -> None:
    server, port = short_keep_alive
    with connect(port) as sock:
        sock.sendall(post("/gone", b"x"))
        read_until(sock, b"echo:x:/gone")
        (protocol,) = list(server.server_state.connections)
    deadline = time.monotonic() + 10
    while protocol in server.server_state.connections:
        assert time.monotonic() < deadline, "the server did not see the connection closed"
        time.sleep(0.02)
    assert protocol.timeout_keep_alive_task is None


def test_the_service_runs_uvicorn_with_this_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.serving import __main__ as entry

    seen: dict[str, Any] = {}
    monkeypatch.setattr(entry.uvicorn, "run", lambda *args, **kwargs: seen.update(kwargs))
    monkeypatch.setenv(contract.MLFLOW_TRACKING_URI.name, "http://127.0.0.1:1")
    monkeypatch.setenv(contract.MODEL_NAME.name, "m")
    monkeypatch.setenv(contract.SERVING_WORKERS.name, "1")
    assert entry.main() == 0
    assert seen["http"] is HttpProtocol and seen["loop"] == "uvloop"
