"""Model variants keyed by MLflow alias: loading, atomic hot swap, coalesced reloads, the watcher.

A `Variant` is one loaded model version: immutable, with its compiled input validator and a `predict`
callable. The sklearn flavour is called natively on a float64 matrix (no pandas, no pyfunc wrapper),
micro-batched; any other flavour goes through pyfunc on a DataFrame. A new version is loaded beside the
serving one (`services.serving.loader`: in a lower-priority loader process) and checked with a
prediction on its input example; only then is the mapping alias -> variant replaced (one reference
assignment, so a request sees either the old or the new version, never a mix). A failed load leaves the old
version serving, is counted, logged and alerted, and the caller gets the reason.

Reloads of one alias coalesce: callers arriving while a reload runs wait for it, and at most one more
reload follows for all of those that arrived after it started (so nobody is answered with an alias
resolution older than their call). The watcher polls the registry every `poll_seconds` and reloads any
alias whose version moved, and follows the blue-green active alias stored as a registered-model tag:
every worker and replica converges even when an admin call reached only one of them.

An alias the registry has no version under (the alias, or the registered model, does not exist yet) is
`missing`: there is nothing to load, which is not a failure (outcome `absent`, no alert, logged once when it
becomes missing and once when a version appears). Only the registry saying so counts: an alias that cannot be
resolved because the registry cannot be reached, or whose version fails to load, is not missing. Readiness
(`ready`) means "ready to serve what exists": every alias that may take routed traffic
(`services.serving.routing.candidates`) is loaded or missing. Once a process has been ready it stays ready: a
later load failure keeps what is loaded serving (and alerts), a registry outage changes nothing, and every
replica leaving the Service at once because a new version fails to load would stop the versions that work.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from services.common.alerts import Severity
from services.common.registry_tags import ACTIVE_TAG, ROUTING_TAG
from services.common.serving_rules import (
    RoutingConfig,
    RoutingRecord,
    loadable_problem,
    loader_process_fits,
    parse_routing_record,
)
from services.serving.batching import MicroBatcher
from services.serving.loader import Loader, LoadError, memory_limit_bytes
from services.serving.observability import Alerter, Metrics, at_end_of_turn
from services.serving.routing import candidates
from services.serving.schema import InputValidator, RequestError
from services.serving.settings import Settings

log = logging.getLogger("mlops.serving.variants")


class VariantMeters:
    """The metric series of one variant, resolved once: `labels(...)` on every request costs more than the
    update itself. The 200 answers are counted in bulk (`answered`): their latencies are kept and, at the end of
    the event loop's turn, added to the histogram and the request counter in one update per bucket (the same
    values `observe` and `inc` would give, before any later turn can answer a scrape); a `Histogram.observe` and
    a `Counter.inc` per request cost 3% of a single-row request."""

    def __init__(self, metrics: Metrics, alias: str, version: str) -> None:
        self._requests = metrics.requests
        self._labels = (alias, version)
        self.latency = metrics.latency.labels(alias, version)
        self._by_status: dict[int, Any] = {}
        self._answered: list[float] = []  # latencies of this turn's 200 answers, not counted yet

    def requests(self, status: int) -> Any:
        """The `serving_requests_total` series of this variant and `status`."""
        child = self._by_status.get(status)
        if child is None:
            child = self._by_status[status] = self._requests.labels(*self._labels, str(status))
        return child

    def answered(self, seconds: float) -> None:
        """One 200 answer that took `seconds`: counted at the end of this loop turn (at once without a loop)."""
        pending = self._answered
        pending.append(seconds)
        if len(pending) == 1:
            at_end_of_turn(self.count_answered)

    def count_answered(self) -> None:
        """Add the answers kept so far to `serving_requests_total` and the latency histogram."""
        latencies, self._answered = self._answered, []
        if latencies:
            self.requests(200).inc(len(latencies))
            observe_all(self.latency, latencies)


def observe_all(histogram: Any, values: list[float]) -> None:
    """`histogram.observe(v)` for every value, with one update of the sum and one per bucket that got values.
    prometheus_client keeps a child histogram's non-cumulative bucket counts in `_buckets` (one per upper bound in
    `_upper_bounds`, the last +Inf) and its sum in `_sum`; a histogram without them is observed value by value."""
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for value in values:
            histogram.observe(value)
        return
    counts = [0] * len(bounds)
    for value in values:
        counts[bisect.bisect_left(bounds, value)] += 1  # the first bound >= value, as `observe` finds it
    total.inc(sum(values))
    for bucket, count in zip(buckets, counts, strict=True):
        if count:
            bucket.inc(count)


@dataclass(frozen=True)
class Variant:
    alias: str
    version: str
    run_id: str | None
    source: str
    flavor: str  # "sklearn" (native) or "pyfunc"
    loaded_at: float
    load_seconds: float
    validator: InputValidator
    predict: Callable[[Any], list[Any]]
    workdir: str | None = None
    batcher: MicroBatcher | None = None  # native flavour: concurrent requests share one predict call
    meters: VariantMeters | None = field(default=None, compare=False)

    async def apredict(self, inputs: Any) -> list[Any]:
        """Predict from the event loop: micro-batched inline (native), else in a worker thread."""
        if self.batcher is not None and isinstance(inputs, np.ndarray):
            return await self.batcher.predict(inputs)
        return await asyncio.to_thread(self.predict, inputs)

    def describe(self) -> dict[str, Any]:
        return {
            "alias": self.alias,
            "version": self.version,
            "run_id": self.run_id,
            "source": self.source,
            "flavor": self.flavor,
            "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.loaded_at)),
            "load_seconds": round(self.load_seconds, 3),
            "columns": self.validator.describe(),
        }


@dataclass(frozen=True)
class ReloadResult:
    alias: str
    outcome: str  # reloaded | unchanged | absent (no version in the registry: nothing to load) | failed
    version: str | None  # the version serving now (None: nothing loaded)
    previous_version: str | None = None
    attempted_version: str | None = None
    reason: str | None = None
    load_seconds: float | None = None

    @property
    def ok(self) -> bool:
        return self.outcome != "failed"

    def body(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class _ReloadSlot:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    requested: int = 0
    covered: int = 0  # requests up to this number are answered by `last`
    last: ReloadResult | None = None


class Registry:
    """Thin, blocking access to the MLflow model registry (called from threads)."""

    def __init__(self, settings: Settings) -> None:
        from mlflow import MlflowClient
        from mlflow.environment_variables import (
            MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR,
            MLFLOW_HTTP_REQUEST_MAX_RETRIES,
            MLFLOW_HTTP_REQUEST_TIMEOUT,
        )

        # A registry outage must fail a reload in seconds, not after MLflow's minutes of retries.
        if not MLFLOW_HTTP_REQUEST_MAX_RETRIES.is_set():
            MLFLOW_HTTP_REQUEST_MAX_RETRIES.set(2)
        if not MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.is_set():
            MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.set(1)
        if not MLFLOW_HTTP_REQUEST_TIMEOUT.is_set():
            MLFLOW_HTTP_REQUEST_TIMEOUT.set(30)
        self.settings = settings
        self.client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)

    def resolve(self, alias: str) -> tuple[str, str | None, str]:
        """(version, run_id, source) the alias points at now."""
        mv = self.client.get_model_version_by_alias(self.settings.model_name, alias)
        return str(mv.version), mv.run_id, str(mv.source)

    def snapshot(self) -> tuple[dict[str, str], dict[str, str]]:
        """(alias -> version, tags) of the registered model, in one call; no aliases and no tags when the
        registered model does not exist (yet). Raises when the registry cannot answer."""
        from mlflow.exceptions import MlflowException

        try:
            model = self.client.get_registered_model(self.settings.model_name)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return {}, {}
            raise
        return {str(k): str(v) for k, v in (model.aliases or {}).items()}, dict(model.tags or {})

    def set_active(self, alias: str) -> None:
        self.client.set_registered_model_tag(self.settings.model_name, ACTIVE_TAG, alias)

    def set_routing(self, record: RoutingRecord | None) -> None:
        """Record the routing every replica follows (None: delete it, back to the stack's routing)."""
        if record is None:
            from mlflow.exceptions import MlflowException

            with contextlib.suppress(MlflowException):  # no tag: nothing to delete
                self.client.delete_registered_model_tag(self.settings.model_name, ROUTING_TAG)
            return
        self.client.set_registered_model_tag(self.settings.model_name, ROUTING_TAG, record.tag_value())


class VariantManager:
    """The loaded variants of this process and everything that changes them."""

    def __init__(
        self, settings: Settings, metrics: Metrics, alerter: Alerter, registry: Registry | None = None
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.alerter = alerter
        self._registry = registry
        self.variants: dict[str, Variant] = {}  # replaced as a whole on every swap
        self.errors: dict[str, str] = {}  # alias -> last load error
        self.missing: frozenset[str] = frozenset()  # aliases the registry has no version under: nothing to load
        self._slots: dict[str, _ReloadSlot] = {}
        self._alerted_failures: set[tuple[str, str | None]] = set()
        self.routing: RoutingConfig = settings.routing  # the stack's, until a routing record says otherwise
        self.routing_record: RoutingRecord | None = None  # the run-time routing applied (None: the stack's)
        self._refused_record: str | None = None  # a tag value already refused (logged once)
        pair = settings.routing.switch_pair()
        self.active: str | None = pair[0] if pair else None  # the alias taking traffic, when it can switch
        self.ready = False  # see the module's docstring; set once, by `_changed`
        self.on_change: list[Callable[[], None]] = []  # called when the loaded, missing or active aliases change
        for alias in settings.aliases:
            metrics.alias_missing.labels(alias).set(0)
        limit = memory_limit_bytes()
        use_process = loader_process_fits(settings.workers, limit)
        log.info(
            "model loading in %s (memory limit %s, %d workers)",
            "a loader process" if use_process else "threads",
            f"{limit // 2**20} MiB" if limit else "none",
            settings.workers,
        )
        self.loader = Loader(settings.tracking_uri, settings.model_name, settings.max_batch, use_process=use_process)

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = Registry(self.settings)
        return self._registry

    # --- reloads -----------------------------------------------------------------------------------
    async def reload(self, alias: str, trigger: str) -> ReloadResult:
        slot = self._slots.setdefault(alias, _ReloadSlot())
        slot.requested += 1
        ticket = slot.requested
        async with slot.lock:
            if slot.covered >= ticket and slot.last is not None:
                return slot.last  # a reload that started after this call finished meanwhile
            start = slot.requested
            with _responsive_gil():
                result = await self._reload_once(alias, trigger)
            slot.covered = start
            slot.last = result
            return result

    def _reloading(self, alias: str) -> bool:
        slot = self._slots.get(alias)
        return slot is not None and slot.lock.locked()

    async def reload_all(self, trigger: str) -> list[ReloadResult]:
        return list(await asyncio.gather(*(self.reload(a, trigger) for a in self.settings.aliases)))

    async def _reload_once(self, alias: str, trigger: str) -> ReloadResult:
        current = self.variants.get(alias)
        previous = current.version if current else None
        try:
            version, run_id, source = await asyncio.to_thread(self.registry.resolve, alias)
        except Exception as exc:
            if await self._has_no_version(alias):
                return self._nothing_to_load(alias, trigger, previous)
            return self._failed(
                alias, trigger, previous, None, f"cannot resolve {self.settings.model_name}@{alias}: {_short(exc)}"
            )
        self._mark_missing(alias, False, version)
        if current is not None and current.version == version:
            self.metrics.reloads.labels(alias, "unchanged", trigger).inc()
            return ReloadResult(alias=alias, outcome="unchanged", version=version, previous_version=previous)
        try:
            loaded = await self.loader.load(version)
        except LoadError as exc:
            return self._failed(alias, trigger, previous, version, str(exc))
        variant = Variant(
            alias=alias,
            version=version,
            run_id=run_id,
            source=source,
            flavor=loaded.flavor,
            loaded_at=time.time(),
            load_seconds=loaded.seconds,
            validator=loaded.validator,
            predict=loaded.predict,
            workdir=loaded.workdir,
            batcher=MicroBatcher(loaded.predict, max_rows=self.settings.max_batch)
            if loaded.flavor == "sklearn"
            else None,
            meters=VariantMeters(self.metrics, alias, version),
        )
        self._swap(variant)
        self.metrics.load_seconds.labels(alias).observe(variant.load_seconds)
        self.metrics.reloads.labels(alias, "reloaded", trigger).inc()
        self.errors.pop(alias, None)
        self._announce_reload(alias, version, previous, trigger, variant.load_seconds)
        return ReloadResult(
            alias=alias,
            outcome="reloaded",
            version=version,
            previous_version=previous,
            load_seconds=round(variant.load_seconds, 3),
        )

    def _announce_reload(
        self, alias: str, version: str, previous: str | None, trigger: str, load_seconds: float
    ) -> None:
        """The log line of a reload, and its alert: a rollback (to a lower version) or a reload the API asked for."""
        rolled_back = previous is not None and _version_key(version) < _version_key(previous)
        log.info(
            "variant %s now serves version %s (was %s)",
            alias,
            version,
            previous,
            extra={
                "alias": alias,
                "version": version,
                "previous_version": previous,
                "trigger": trigger,
                "load_seconds": round(load_seconds, 3),
                "event": "model.reloaded",
            },
        )
        fields = {
            "model": self.settings.model_name,
            "alias": alias,
            "version": version,
            "previous_version": previous or "(none)",
            "trigger": trigger,
        }
        if rolled_back:
            self.alerter.send(
                "serving.model_rolled_back",
                f"{self.settings.model_name}@{alias} rolled back from version {previous} to {version}",
                Severity.WARNING,
                fields,
            )
        elif trigger == "api":
            # Watcher-driven convergence of other workers/replicas is logged, not alerted again.
            self.alerter.send(
                "serving.model_reloaded",
                f"{self.settings.model_name}@{alias} now serves version {version} (was {previous})",
                Severity.INFO,
                fields,
            )

    def _swap(self, variant: Variant) -> None:
        old = self.variants.get(variant.alias)
        new = dict(self.variants)
        new[variant.alias] = variant
        self.variants = new  # the atomic swap: one reference assignment
        self.metrics.loaded_version.labels(variant.alias).set(_version_number(variant.version))
        self._changed()
        if old is not None and old.workdir:
            shutil.rmtree(old.workdir, ignore_errors=True)

    async def _has_no_version(self, alias: str) -> bool:
        """The registry says that `alias` (or the registered model) does not exist; False when it cannot say."""
        try:
            aliases, _ = await asyncio.to_thread(self.registry.snapshot)
        except Exception:
            return False
        return alias not in aliases

    def _nothing_to_load(self, alias: str, trigger: str, previous: str | None) -> ReloadResult:
        self.metrics.reloads.labels(alias, "absent", trigger).inc()
        self.errors.pop(alias, None)
        self._mark_missing(alias, True)
        reason = f"{self.settings.model_name}@{alias} has no version in the registry: nothing to load"
        return ReloadResult(
            alias=alias,
            outcome="absent",
            version=previous,
            previous_version=previous,
            reason=reason + (f"; version {previous} keeps serving" if previous else ""),
        )

    def _mark_missing(self, alias: str, missing: bool, version: str | None = None) -> None:
        """Record whether the registry has a version under `alias`; logged when that changes, never again."""
        if (alias in self.missing) == missing:
            return
        self.missing = self.missing | {alias} if missing else self.missing - {alias}
        self.metrics.alias_missing.labels(alias).set(1 if missing else 0)
        model = self.settings.model_name
        fields = {"model": model, "alias": alias}
        if missing:
            share = self.routing.shares(self.active).get(alias)
            others = [a for a in candidates(self.routing, self.active) if a != alias]
            loaded = self.variants.get(alias)
            if loaded is not None:  # the alias was deleted: what was loaded keeps serving
                consequence = f"; version {loaded.version} keeps serving"
            elif share and others:
                consequence = f"; its {share:.0%} of the routed traffic goes to the first loaded of {others} until a "
                consequence += "version appears"
            else:
                consequence = ""
            log.warning(
                "%s@%s has no version in the registry: nothing to load%s",
                model,
                alias,
                consequence,
                extra={**fields, "event": "model.alias_missing"},
            )
        else:
            log.info(
                "%s@%s now has version %s in the registry: loading it",
                model,
                alias,
                version,
                extra={**fields, "version": version, "event": "model.alias_appeared"},
            )
        self._changed()

    def pending(self) -> dict[str, str]:
        """The aliases that may take routed traffic and are neither loaded nor missing, with why (the last
        error, or "loading")."""
        return {
            alias: self.errors.get(alias, "loading")
            for alias in candidates(self.routing, self.active)
            if alias not in self.variants and alias not in self.missing
        }

    def _changed(self) -> None:
        """The loaded, missing or active aliases changed: become ready if that makes it, tell the listeners."""
        if not self.ready and not self.pending():
            self.ready = True
            log.info(
                "ready to serve %s: loaded %s, no version in the registry for %s",
                self.settings.model_name,
                {a: v.version for a, v in self.variants.items()},
                sorted(self.missing),
                extra={"event": "serving.ready"},
            )
        for callback in self.on_change:
            callback()

    def _failed(
        self, alias: str, trigger: str, previous: str | None, attempted: str | None, reason: str
    ) -> ReloadResult:
        self.metrics.reloads.labels(alias, "failed", trigger).inc()
        self.metrics.reload_failures.labels(alias).inc()
        self.errors[alias] = reason
        log.error(
            "reload of %s failed, %s: %s",
            alias,
            f"version {previous} keeps serving" if previous else "nothing loaded",
            reason,
            extra={
                "alias": alias,
                "attempted_version": attempted,
                "kept_version": previous,
                "trigger": trigger,
                "event": "model.reload_failed",
            },
        )
        key = (alias, attempted)
        # The watcher retries every poll: alert once per failing version, an explicit call always.
        if trigger == "api" or key not in self._alerted_failures:
            self._alerted_failures.add(key)
            self.alerter.send(
                "serving.reload_failed",
                f"reload of {self.settings.model_name}@{alias} to version {attempted or '?'} failed; "
                + (f"version {previous} keeps serving" if previous else "no version is loaded"),
                Severity.ERROR,
                {
                    "model": self.settings.model_name,
                    "alias": alias,
                    "attempted_version": attempted or "(unresolved)",
                    "kept_version": previous or "(none)",
                    "reason": reason[:500],
                    "trigger": trigger,
                },
            )
        return ReloadResult(
            alias=alias,
            outcome="failed",
            version=previous,
            previous_version=previous,
            attempted_version=attempted,
            reason=reason,
        )

    # --- blue-green --------------------------------------------------------------------------------
    async def switch_active(self, alias: str) -> str:
        """Make `alias` the blue-green active variant here and, through the registry, everywhere."""
        pair = self.routing.switch_pair()
        if not pair:
            raise RequestError(409, "routing is not blue-green: there is no active alias to switch", "mode")
        if alias not in pair:
            raise RequestError(422, f"alias {alias!r} is not one of the blue-green pair {list(pair)}", "alias")
        if alias not in self.variants:
            raise RequestError(409, f"alias {alias!r} has no loaded version: refusing to switch traffic to it", "alias")
        try:
            await asyncio.to_thread(self.registry.set_active, alias)
        except Exception as exc:
            raise RequestError(502, f"could not record the switch in the registry: {_short(exc)}", None) from exc
        previous, self.active = self.active, alias
        self._changed()
        log.info(
            "blue-green active alias is now %s (was %s)",
            alias,
            previous,
            extra={"alias": alias, "event": "model.switched"},
        )
        if previous != alias:
            self.alerter.send(
                "serving.blue_green_switched",
                f"{self.settings.model_name}: traffic switched from {previous} to {alias}",
                Severity.INFO,
                {"model": self.settings.model_name, "active": alias, "previous": previous or "(none)"},
            )
        return alias

    # --- routing as data ----------------------------------------------------------------------------
    async def set_routing(self, record: RoutingRecord | None) -> RoutingRecord | None:
        """Route by `record` here at once and, through the registry, in every replica within a poll period
        (None: back to the stack's routing). 409 naming `routing` when it uses an alias this deployment does not
        load; 502 when the registry refuses (then nothing changes)."""
        if record is not None:
            problem = loadable_problem(record.routing, self.settings.aliases)
            if problem:
                raise RequestError(409, problem, "routing")
        try:
            await asyncio.to_thread(self.registry.set_routing, record)
        except Exception as exc:
            raise RequestError(502, f"could not record the routing in the registry: {_short(exc)}", None) from exc
        self._apply_routing(record)
        return record

    def _follow_routing(self, tagged: str | None) -> None:
        """The watcher's pass over the routing tag: apply a new record, go back to the stack's routing when the
        tag is gone, keep the current routing (logged once) when the tag cannot be applied."""
        if tagged is None:
            if self.routing_record is not None:
                self._apply_routing(None)
            return
        if (self.routing_record is not None and tagged == self.routing_record.tag_value()) or tagged == (
            self._refused_record
        ):
            return
        try:
            record = parse_routing_record(tagged)
            problem = loadable_problem(record.routing, self.settings.aliases)
        except ValueError as exc:
            problem = f"it is invalid: {exc}"
        if problem:
            self._refused_record = tagged
            log.error(
                "routing tag %s of %s is not applied, %s keeps routing: %s",
                ROUTING_TAG,
                self.settings.model_name,
                self.routing.mode,
                problem,
                extra={"event": "model.routing_refused", "tag": tagged[:500]},
            )
            return
        self._apply_routing(record)

    def _apply_routing(self, record: RoutingRecord | None) -> None:
        previous = self.routing
        self.routing_record = record
        self.routing = record.routing if record is not None else self.settings.routing
        pair = self.routing.switch_pair()
        if not pair:
            self.active = None
        elif self.active not in pair:
            self.active = pair[0]
        self._changed()
        source = f"set by {record.by} at {record.at}: {record.reason}" if record else "the stack's (tag removed)"
        log.info(
            "routing of %s is now %s (was %s), %s",
            self.settings.model_name,
            self.routing.env_value(),
            previous.env_value(),
            source,
            extra={
                "event": "model.routing_changed",
                "routing": self.routing.model_dump(mode="json"),
                "by": record.by if record else None,
                "reason": record.reason if record else None,
            },
        )

    # --- watcher -----------------------------------------------------------------------------------
    async def poll_once(self) -> None:
        """One pass: reload aliases that moved, appeared or never loaded (unless the registry still has no version
        under them) and follow the blue-green tag."""
        try:
            aliases, tags = await asyncio.to_thread(self.registry.snapshot)
        except Exception as exc:
            log.warning("registry poll failed: %s", _short(exc), extra={"event": "registry.poll_failed"})
            return
        variants = self.variants
        stale = [
            a
            for a in self.settings.aliases
            if not self._reloading(a)  # a reload under way (at start, or asked for) answers for this pass
            and (
                (a in aliases and (a not in variants or aliases[a] != variants[a].version))
                or (a not in aliases and a not in variants and a not in self.missing)
            )
        ]
        await asyncio.gather(*(self.reload(a, "watcher") for a in stale))
        self._follow_routing(tags.get(ROUTING_TAG))
        tagged = tags.get(ACTIVE_TAG)
        if tagged in self.routing.switch_pair() and tagged != self.active and tagged in self.variants:
            log.info(
                "blue-green active alias follows the registry: %s (was %s)",
                tagged,
                self.active,
                extra={"alias": tagged, "event": "model.switched"},
            )
            self.active = tagged
            self._changed()

    async def watch(self) -> None:
        """Poll forever (cancelled at shutdown)."""
        while True:
            await asyncio.sleep(self.settings.poll_seconds)
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("registry watcher pass failed")

    async def start(self) -> None:
        """Initial load: every alias, then the blue-green tag; retried by the watcher when it fails."""
        await asyncio.to_thread(lambda: self.registry)  # imports mlflow (seconds) off the event loop
        await self.reload_all("startup")
        with contextlib.suppress(Exception):
            await self.poll_once()

    def close(self) -> None:
        self.loader.close()
        for variant in self.variants.values():
            if variant.workdir and Path(variant.workdir).exists():
                shutil.rmtree(variant.workdir, ignore_errors=True)


_loads_in_flight = 0
_default_switch_interval = sys.getswitchinterval()


@contextlib.contextmanager
def _responsive_gil() -> Iterator[None]:
    """While a reload runs (registry calls and deserialization in worker threads), hand the GIL back to
    the event loop every 0.5 ms instead of every 5 ms, so requests do not queue behind those threads."""
    global _loads_in_flight
    _loads_in_flight += 1
    sys.setswitchinterval(0.0005)
    try:
        yield
    finally:
        _loads_in_flight -= 1
        if _loads_in_flight == 0:
            sys.setswitchinterval(_default_switch_interval)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (-1, version)


def _version_number(version: str) -> float:
    return float(version) if version.isdigit() else -1.0
