"""Request context of every HTTP request: its id and its access-log line."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from services.serving.observability import request_id_var

access_log = logging.getLogger("mlops.serving.access")

REQUEST_ID_HEADER = "x-request-id"
_HEADER = REQUEST_ID_HEADER.encode("latin-1")
_MAX_REQUEST_ID = 128

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class RequestContext:
    """Pure ASGI middleware: request id (from `X-Request-Id` or new), echoed back, and one JSON
    access-log line per request with status, duration and the alias/version that answered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = None
        for name, value in scope["headers"]:
            if name == _HEADER:
                candidate = value.decode("latin-1")
                if 0 < len(candidate) <= _MAX_REQUEST_ID and candidate.isprintable():
                    rid = candidate
                break
        rid = rid or uuid.uuid4().hex
        token = request_id_var.set(rid)
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        started = time.perf_counter()
        status = 500
        rid_header = (_HEADER, rid.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), rid_header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            extra: dict[str, Any] = {
                "method": scope["method"],
                "path": scope["path"],
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 3),
            }
            if "alias" in state:
                extra["alias"] = state["alias"]
                extra["version"] = state.get("version")
            access_log.info("%s %s %s", scope["method"], scope["path"], status, extra=extra)
            request_id_var.reset(token)
