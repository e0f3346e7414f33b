"""Logs, metrics and alerts of the serving service.

- Structured JSON logs (one object per line) to stdout and, when `MLOPS_SERVING_LOG_DIR` is set, to a
  rotating file `serving-<host>-<pid>.log` in that directory (one file per process, so replicas and
  workers sharing the NFS volume never write the same file). Every line carries the request id of the
  request being served (`request_id_var`). A directory that cannot be written does not stop the process:
  the logs go to stdout only, and `LogFile` says why (`/readyz` shows it, `serving_log_file_writable` is 0).
- Prometheus metrics (`/metrics`): requests and latency by alias and version, reloads and their failures,
  model load time, the loaded version per alias, the share of traffic each alias takes now and whether it has
  no version in the registry, shadow comparisons.
- `Alerter`: reload, failure and rollback alerts through the shared `services.common.alerts` helper,
  sent from a thread so the event loop never waits on Slack.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import logging.handlers
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from services.common import contract
from services.common.alerts import Alert, Severity, send_alert

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's ANSI-coloured copy of the message
}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, request id, instance and extras."""

    def __init__(self, instance: str) -> None:
        super().__init__()
        self.instance = instance

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "instance": self.instance,
        }
        rid = request_id_var.get()
        if rid is not None:
            out["request_id"] = rid
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and key not in out:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


@dataclass(frozen=True)
class LogFile:
    """The log file of this process: its path, or why there is none although a directory was set."""

    directory: str | None = None
    path: Path | None = None
    error: str | None = None

    @property
    def writable(self) -> bool:
        return self.error is None

    def describe(self) -> dict[str, Any]:
        return {"directory": self.directory, "path": str(self.path) if self.path else None, "error": self.error}


def configure_logging(instance: str, log_dir: str | None, level: int = logging.INFO) -> LogFile:
    """JSON logs to stdout and to a rotating file in `log_dir` (stdout only when it cannot be written)."""
    formatter = JsonFormatter(instance)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    stdout = logging.StreamHandler(sys.stdout)
    stdout.setFormatter(formatter)
    root.addHandler(stdout)
    log_file = LogFile(directory=log_dir)
    if log_dir:
        path = Path(log_dir) / f"serving-{socket.gethostname()}-{os.getpid()}.log"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            rotating = logging.handlers.RotatingFileHandler(path, maxBytes=20 * 1024 * 1024, backupCount=5)
        except OSError as exc:  # read-only or foreign-owned volume: serve anyway, log to stdout only
            log_file = LogFile(directory=log_dir, error=f"{type(exc).__name__}: {exc}")
        else:
            rotating.setFormatter(formatter)
            root.addHandler(rotating)
            log_file = LogFile(directory=log_dir, path=path)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # the service logs its own access lines
    if not log_file.writable:
        logging.getLogger("mlops.serving").error(
            "log directory %s is not writable, logging to stdout only: %s", log_dir, log_file.error
        )
    return log_file


def at_end_of_turn(callback: Callable[[], None]) -> None:
    """Run `callback` at the end of the event loop's current turn, or at once when no loop runs in this thread:
    how the access log and the answer counts do once per turn what would otherwise be done once per request."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        callback()
        return
    loop.call_soon(callback)


class Metrics:
    """The service's Prometheus metrics, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "serving_requests",
            "Prediction requests by answering alias, version and HTTP status.",
            ["alias", "version", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "serving_request_latency_seconds",
            "Prediction latency (validation + model) by alias and version.",
            ["alias", "version"],
            registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self.rejected = Counter(
            "serving_rejected_requests",
            "Requests refused before reaching a model, by HTTP status.",
            ["status"],
            registry=r,
        )
        self.reloads = Counter(
            "serving_reloads",
            "Reload attempts by alias, outcome (reloaded, unchanged, failed) and trigger.",
            ["alias", "outcome", "trigger"],
            registry=r,
        )
        self.reload_failures = Counter(
            "serving_reload_failures",
            "Failed reloads by alias (the previous version kept serving).",
            ["alias"],
            registry=r,
        )
        self.load_seconds = Histogram(
            "serving_model_load_seconds",
            "Time to download and load one model version.",
            ["alias"],
            registry=r,
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
        )
        self.loaded_version = Gauge(
            "serving_model_version",
            "Version loaded per alias (the value is the version number).",
            ["alias"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self._routing_gauges(r)
        self.shadow = Counter(
            "serving_shadow_comparisons",
            "Shadow predictions compared with the primary's, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.log_file_writable = Gauge(
            "serving_log_file_writable",
            "0 when MLOPS_SERVING_LOG_DIR is set but cannot be written (logs go to stdout only), else 1.",
            registry=r,
            multiprocess_mode="min",
        )

    def _routing_gauges(self, r: CollectorRegistry) -> None:
        """The routing's gauges per alias: configured weight, effective share, nothing in the registry."""
        self.routing_weight = Gauge(
            "serving_routing_weight",
            "Configured share of routed traffic (0..1) of the alias under the routing in force: the stack's, or "
            "the one set at run time (the registry's routing tag).",
            ["alias"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.traffic_share = Gauge(
            "serving_traffic_share",
            "Share of routed traffic (0..1) the alias takes now: its configured share if it has a loaded version, "
            "plus the shares of routed aliases with nothing loaded when it is the first loaded (the primary).",
            ["alias"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.alias_missing = Gauge(
            "serving_alias_missing",
            "1 while the alias has no version in the model registry (nothing to load; its share goes to a loaded "
            "alias), else 0.",
            ["alias"],
            registry=r,
            multiprocess_mode="mostrecent",
        )


def render_metrics(metrics: Metrics) -> bytes:
    """The Prometheus text: this process's registry, or every worker's in multiprocess mode."""
    if contract.PROMETHEUS_MULTIPROC_DIR.get():
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(metrics.registry)


class Alerter:
    """Fire-and-forget alerts through the shared Slack helper (never raises, never blocks the loop)."""

    def __init__(self, webhook_url: str | None, common_fields: dict[str, str]) -> None:
        self.webhook_url = webhook_url
        self.common_fields = common_fields
        self._tasks: set[asyncio.Task[Any]] = set()
        self.log = logging.getLogger("mlops.serving.alerts")

    def send(self, event: str, summary: str, severity: Severity, fields: dict[str, str]) -> None:
        alert = Alert(event=event, summary=summary, severity=severity, fields={**self.common_fields, **fields})
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            send_alert(alert, webhook_url=self.webhook_url)
            return
        task = loop.create_task(asyncio.to_thread(send_alert, alert, self.webhook_url))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait for alerts in flight (at shutdown)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
