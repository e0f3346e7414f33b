"""The access log: one JSON line per HTTP request, exactly the line `JsonFormatter` would write, at a fraction
of the cost of a `logging` record.

`AccessLog.record(...)` builds the line (orjson) and keeps it; the lines of one turn of the event loop are
written together on the next turn (one write per destination instead of one per request, no `LogRecord`, no
formatter, no per-record rollover `stat`). The destinations are the handlers the `mlops.serving.access`
logger reaches (stdout and the rotating file in `MLOPS_SERVING_LOG_DIR`, or whatever `configure_logging` set
up): a stream handler formatted by `JsonFormatter` gets the lines directly (a rotating file still rotates on
size); any other handler gets ordinary `LogRecord`s. Lines carry `ts`, `level`, `logger`, `msg`, `instance`,
`request_id`, `method`, `path`, `status`, `duration_ms` and, when a model answered, `alias` and `version`.
"""

from __future__ import annotations

import logging
import logging.handlers
import time
from typing import Any

import orjson

from services.serving.observability import JsonFormatter, at_end_of_turn

LOGGER = "mlops.serving.access"


class AccessLog:
    def __init__(self, instance: str, logger: logging.Logger | None = None) -> None:
        self.instance = instance
        self.logger = logger or logging.getLogger(LOGGER)
        self._lines: list[dict[str, Any]] = []
        self._scheduled = False
        self._second = -1
        self._stamp = ""

    def _ts(self, now: float) -> str:
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._stamp}.{int((now - second) * 1000):03d}Z"

    def record(
        self,
        request_id: str,
        method: str,
        path: str,
        status: int,
        duration_ms: float,
        alias: str | None = None,
        version: str | None = None,
    ) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        line: dict[str, Any] = {
            "ts": self._ts(time.time()),
            "level": "info",
            "logger": self.logger.name,
            "msg": f"{method} {path} {status}",
            "instance": self.instance,
            "request_id": request_id,
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": duration_ms,
        }
        if alias is not None:
            line["alias"] = alias
            line["version"] = version
        self._lines.append(line)
        if not self._scheduled:
            self._scheduled = True
            at_end_of_turn(self.flush)

    def _handlers(self) -> list[logging.Handler]:
        handlers: list[logging.Handler] = []
        logger: logging.Logger | None = self.logger
        while logger is not None:
            handlers.extend(logger.handlers)
            if not logger.propagate:
                break
            logger = logger.parent
        return [h for h in handlers if h.level <= logging.INFO]

    def flush(self) -> None:
        """Write the lines kept so far to every destination."""
        self._scheduled = False
        lines, self._lines = self._lines, []
        if not lines:
            return
        text: str | None = None
        for handler in self._handlers():
            if isinstance(handler, logging.StreamHandler) and isinstance(handler.formatter, JsonFormatter):
                if text is None:
                    text = "".join(orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE).decode() for line in lines)
                _write(handler, text)
            else:
                for line in lines:
                    handler.handle(self._record(line))

    def _record(self, line: dict[str, Any]) -> logging.LogRecord:
        extra = {k: v for k, v in line.items() if k not in ("ts", "level", "logger", "msg", "instance")}
        return self.logger.makeRecord(self.logger.name, logging.INFO, __file__, 0, line["msg"], (), None, extra=extra)


def _write(handler: logging.StreamHandler[Any], text: str) -> None:
    handler.acquire()
    try:
        if isinstance(handler, logging.handlers.RotatingFileHandler):
            if handler.stream is None:
                handler.stream = handler._open()
            if handler.maxBytes > 0 and handler.stream.tell() + len(text) >= handler.maxBytes:
                handler.doRollover()
        handler.stream.write(text)
        handler.stream.flush()
    except (OSError, ValueError):  # a full or vanished volume must not fail requests
        handler.handleError(logging.makeLogRecord({"msg": "access log write failed"}))
    finally:
        handler.release()
