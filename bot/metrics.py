"""The bot platform's metrics, one small class per service, over the OpenTelemetry metrics API.

The SDK's `MeterProvider` is `otel_session.configure()`'s; before it runs the API's proxy meter stands in, so
the instruments can be made at import or app-creation time. Tests hand in a meter of their own.

Attributes are bounded words only (`outcome`, `reason`, `mode`, `status`): never a session, user or launch id
nor a room, each of which would make a time series per value. Recording never raises into a request: an
error of the SDK is caught and warned about once per instrument. Gauges report what the service's own loop
last sampled (`Sample`): their callbacks run on the SDK's export thread, so they never wait on Redis there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import ClassVar, Self, cast

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

SECONDS_SHORT = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)  # a dispatch, a join
SECONDS_LONG = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)  # a session
DEFAULT_EXPORT_INTERVAL_MS = 60_000.0  # the SDK's default for OTEL_METRIC_EXPORT_INTERVAL
SAMPLE_MIN_S, SAMPLE_MAX_S = 0.1, 5.0
READ_TIMEOUT_S = 1.0  # one sample's Redis round trips: milliseconds when Redis answers


class _WarnOnce:
    """One warning per instrument whose recording failed: a broken instrument must not flood the logs."""

    def __init__(self) -> None:
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, name: str, exc: BaseException) -> None:
        with self._lock:
            if name in self._warned:
                return
            self._warned.add(name)
        logger.warning("Metric %s could not be recorded (%s: %s); further failures of it are not reported",
                       name, type(exc).__name__, exc)


_warn_once = _WarnOnce()


def sample_every_s(env: Mapping[str, str] | None = None) -> float:
    """How often a service samples what its gauges report: twice per export (`OTEL_METRIC_EXPORT_INTERVAL`,
    milliseconds), between 0.1 s and 5 s, so an exported value is never much older than its export."""
    raw = (os.environ if env is None else env).get("OTEL_METRIC_EXPORT_INTERVAL", "")
    try:
        interval_ms = float(raw) if raw.strip() else DEFAULT_EXPORT_INTERVAL_MS
    except ValueError:
        interval_ms = DEFAULT_EXPORT_INTERVAL_MS  # the SDK warns about it itself
    return min(SAMPLE_MAX_S, max(SAMPLE_MIN_S, interval_ms / 2000))


class Sample:
    """Values sampled on a service's loop and observed on the export thread: `set` them, or `clear` them when
    the source (Redis) did not answer, so a gauge reports nothing rather than a stale value."""

    def __init__(self) -> None:
        self.values: Mapping[str, int] = {}  # replaced whole, never mutated: the export thread reads it

    def set(self, **values: int) -> None:
        self.values = {**self.values, **values}

    def clear(self) -> None:
        self.values = {}

    def callback(self, key: str, name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            try:
                value = self.values.get(key)
                return [] if value is None else [Observation(value)]
            except Exception as exc:  # never into the SDK's export thread
                _warn_once(name, exc)
                return []

        return observe


async def sample_forever(read: Callable[[], Awaitable[Mapping[str, int]]], sample: Sample, every_s: float,
                        what: str, stop: asyncio.Event) -> None:
    """Every `every_s`, `read()` (bounded by `READ_TIMEOUT_S`) into `sample`; a failure clears it, with one
    warning per streak. Runs on the service's loop until `stop` is set (or it is cancelled); never raises.

    `stop` as well as a cancel: redis-py's asyncio client now and then swallows a task's cancellation, and a
    sampler that missed one must still end, or the service's shutdown would wait for it forever."""
    failing = False
    while not stop.is_set():
        try:
            sample.set(**await asyncio.wait_for(read(), READ_TIMEOUT_S))
            failing = False
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            sample.clear()
            if not failing:
                logger.warning("Could not sample %s for the metrics (%s); its gauges report nothing until it "
                               "answers", what, type(exc).__name__)
            failing = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)


async def stop_sampler(task: asyncio.Task[None], stop: asyncio.Event) -> None:
    """Ends a `sample_forever` task: within one read's timeout even if a cancel is swallowed."""
    stop.set()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, TimeoutError):
        await asyncio.wait_for(task, READ_TIMEOUT_S + 1)


class _Instruments:
    """The safe recording calls the service classes share, and one instance per process on the global provider
    (`shared()`): the SDK keeps the first instrument of a name, so a second instance's gauges would go unread."""

    SCOPE: ClassVar[str]  # the meter's name: the service's module
    _shared: ClassVar[dict[type, _Instruments]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, meter: Meter | None = None) -> None:
        self.meter = meter or metrics.get_meter(self.SCOPE)

    @classmethod
    def shared(cls) -> Self:
        """This process's instance on the global meter provider (the API's proxy until configure() sets it)."""
        with cls._shared_lock:
            found = cls._shared.get(cls)
            if found is None:
                found = cls._shared[cls] = cls()
        return cast(Self, found)

    @staticmethod
    def _add(instrument: metrics.Counter | metrics.UpDownCounter, name: str, amount: int,
             attributes: Mapping[str, str] | None = None) -> None:
        try:
            instrument.add(amount, attributes)
        except Exception as exc:
            _warn_once(name, exc)

    @staticmethod
    def _record(instrument: metrics.Histogram, name: str, value: float, attributes: Mapping[str, str]) -> None:
        try:
            instrument.record(value, attributes)
        except Exception as exc:
            _warn_once(name, exc)

    def _gauges(self, sample: Sample, gauges: Sequence[tuple[str, str, str, str]]) -> None:
        """`(key in the sample, name, unit, description)` each."""
        for key, name, unit, description in gauges:
            self.meter.create_observable_gauge(name, [sample.callback(key, name)], unit, description)


class GatewayMetrics(_Instruments):
    """`bot.joins` by outcome; the launch queue's gauges (sampled by the gateway's loop); the log relay's
    records and refusals."""

    SCOPE = "bot.gateway"
    JOINS, RELAYED, REFUSED = "bot.joins", "bot.relay.records", "bot.relay.refusals"

    def __init__(self, meter: Meter | None = None) -> None:
        super().__init__(meter)
        m = self.meter
        self.joins = m.create_counter(self.JOINS, "{join}", "POST /join requests by outcome: queued, taken, full, "
                                      "invalid, too_large, cors_refused (a refused preflight), overloaded, "
                                      "unavailable, error")
        self.relayed = m.create_counter(self.RELAYED, "{record}", "Browser log records the relay exported")
        self.refused = m.create_counter(self.REFUSED, "{request}", "Browser log exports the relay refused, by reason")
        self.queue = Sample()
        self._gauges(self.queue, [
            ("depth", "bot.queue.depth", "{launch}", "Launches waiting in the launch queue"),
            ("claims", "bot.queue.claims", "{claim}", "Queued launches holding their room's pending claim"),
            ("processing", "bot.queue.processing", "{launch}", "Launches an operator took and has not finished"),
        ])

    def join(self, outcome: str) -> None:
        self._add(self.joins, self.JOINS, 1, {"outcome": outcome})

    def relay_accepted(self, records: int) -> None:
        if records:
            self._add(self.relayed, self.RELAYED, records)

    def relay_refused(self, reason: str) -> None:
        self._add(self.refused, self.REFUSED, 1, {"reason": reason})


JOIN_OUTCOME = "bot.join_outcome"  # the key in a request's scope state where the /join route names its outcome
# What the layers before the /join route answer: validation, the body cap, the Redis backstop, an error.
JOIN_BY_STATUS = {422: "invalid", 413: "too_large", 429: "overloaded", 503: "unavailable", 500: "error"}


class JoinOutcomes:
    """Pure ASGI, outermost on the gateway: one `bot.joins` per answer to `POST /join`, and per refused CORS
    preflight of it (Starlette's CORS answers those 400: the browser then never sends the join).

    The route names the outcomes it decides (`JOIN_OUTCOME`); the layers before it are known by their answer:
    422 invalid (validation), 413 too_large (the body cap), an exception error, and the Redis backstop's
    429 overloaded and 503 unavailable.
    """

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics, path: str = "/join") -> None:
        self.app, self.metrics, self.path = app, metrics, path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") != self.path or scope.get("method") not in ("POST", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        answered = False

        async def counted(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start" and not answered:
                answered = True
                self._count(scope, int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, counted)
        except Exception:
            if not answered:  # the app's error handler answers outside us: counted here
                self.metrics.join("error")
            raise

    def _count(self, scope: Scope, status: int) -> None:
        if scope["method"] == "OPTIONS":
            if status == 400:
                self.metrics.join("cors_refused")
            return
        self.metrics.join(scope.get("state", {}).get(JOIN_OUTCOME) or JOIN_BY_STATUS.get(status, "other"))


class OperatorMetrics(_Instruments):
    """Dispatches by outcome and their duration; join-to-running latency (observed here, when the operator
    learns its launch runs); the cold slots in use and the operators alive (sampled on the operator's loop)."""

    SCOPE = "bot.operator"
    DISPATCHES, DISPATCH_S, JOIN_S = "bot.dispatches", "bot.dispatch.duration", "bot.join.duration"

    def __init__(self, meter: Meter | None = None) -> None:
        super().__init__(meter)
        m = self.meter
        self.dispatches = m.create_counter(self.DISPATCHES, "{dispatch}", "Launch jobs dispatched, by outcome: "
                                           "warm, cold, requeued, retried, dead_lettered, skipped")
        self.dispatch_s = m.create_histogram(self.DISPATCH_S, "s", "From taking a launch job to its outcome",
                                             explicit_bucket_boundaries_advisory=SECONDS_SHORT)
        self.join_s = m.create_histogram(self.JOIN_S, "s", "From POST /join to the launch running, by mode",
                                         explicit_bucket_boundaries_advisory=SECONDS_SHORT)
        self.sample = Sample()
        self._gauges(self.sample, [
            ("cold", "bot.cold_slot.usage", "{slot}", "Cold slots in use, across every operator (BOT_MAX_COLD)"),
            ("operators", "bot.operator.count", "{operator}", "Operators whose heartbeat is alive"),
        ])

    def dispatched(self, outcome: str, seconds: float) -> None:
        attributes = {"outcome": outcome}
        self._add(self.dispatches, self.DISPATCHES, 1, attributes)
        self._record(self.dispatch_s, self.DISPATCH_S, max(0.0, seconds), attributes)

    def running(self, mode: str, seconds: float) -> None:
        """A launch started (`mode` warm or cold), `seconds` after its join."""
        if seconds >= 0:  # a clock behind the gateway's: no honest figure
            self._record(self.join_s, self.JOIN_S, seconds, {"mode": mode})


class RunnerMetrics(_Instruments):
    """Live sessions, their duration and their failures, in the process that runs them (warm or cold)."""

    SCOPE = "bot.runner"
    ACTIVE, DURATION, FAILURES = "bot.session.active", "bot.session.duration", "bot.session.failures"

    def __init__(self, meter: Meter | None = None) -> None:
        super().__init__(meter)
        m = self.meter
        self.active = m.create_up_down_counter(self.ACTIVE, "{session}", "Bot sessions running, by mode")
        self.duration = m.create_histogram(self.DURATION, "s", "A bot session's length, by mode and status",
                                           explicit_bucket_boundaries_advisory=SECONDS_LONG)
        self.failures = m.create_counter(self.FAILURES, "{session}", "Bot sessions that failed, by mode and "
                                         "reason: lock_lost, error")

    def started(self, mode: str) -> None:
        self._add(self.active, self.ACTIVE, 1, {"mode": mode})

    def ended(self, mode: str, status: str, seconds: float, failure: str = "") -> None:
        self._add(self.active, self.ACTIVE, -1, {"mode": mode})
        self._record(self.duration, self.DURATION, max(0.0, seconds), {"mode": mode, "status": status})
        if failure:
            self._add(self.failures, self.FAILURES, 1, {"mode": mode, "reason": failure})
