"""Per-trace capture buffers: the records a run logged, kept so they can be shown to its user.

Buffers are keyed by trace id, so concurrent runs never see each other's records, and bounded
(records and bytes per capture, open captures, idle time), so abandoned captures cannot grow
without limit. With no capture open the processor pays one falsy-dict check per record.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections import deque

from opentelemetry import context, trace
from opentelemetry.sdk._logs import ReadWriteLogRecord
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from otel_session._scope import Scope
from otel_session.records import Record, approx_size, snapshot

logger = logging.getLogger(__name__)

DEFAULT_LIMITS = {
    "capture_max_records": 10_000,
    "capture_max_bytes": 4_000_000,
    "capture_max_open": 1_000,
    "capture_idle_ttl_s": 3600.0,
}


class Capture:
    """The records of one trace, in order, after each record's own level gate."""

    def __init__(self, trace_id: int, max_records: int, max_bytes: int) -> None:
        self.trace_id = trace_id
        self._records: deque[tuple[Record, int]] = deque()
        self._bytes = 0
        self._max_records = max_records
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self.dropped = 0
        self.closed_reason: str | None = None
        self.last_activity = time.monotonic()

    @property
    def records(self) -> list[Record]:
        with self._lock:
            return [r for r, _ in self._records]

    def add(self, record: Record) -> None:
        size = approx_size(record)
        with self._lock:
            self.last_activity = time.monotonic()
            self._records.append((record, size))
            self._bytes += size
            while self._records and (
                len(self._records) > self._max_records or self._bytes > self._max_bytes
            ):
                _, gone = self._records.popleft()
                self._bytes -= gone
                self.dropped += 1

    def discard(self, reason: str) -> None:
        with self._lock:
            self.closed_reason = reason
            self.dropped += len(self._records)
            self._records.clear()
            self._bytes = 0

    def render(self) -> str:
        """One line a record; a first line says what was dropped or why nothing was kept."""
        lines = []
        if self.closed_reason:
            lines.append(f"[{self.closed_reason}]")
        if self.dropped and not self.closed_reason:
            lines.append(
                f"[{self.dropped} earlier records dropped: over the capture limit of "
                f"{self._max_records} records / {self._max_bytes} bytes]"
            )
        lines.extend(r.render() for r in self.records)
        return "\n".join(lines)


class CaptureRegistry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_trace: dict[int, list[Capture]] = {}
        self.limits = dict(DEFAULT_LIMITS)
        self._open = 0
        self._warned_full = False
        self._next_sweep = 0.0

    def set_limits(self, **limits: float) -> None:
        for name, value in limits.items():
            if name not in DEFAULT_LIMITS:
                raise TypeError(f"unknown capture limit {name!r}; known: {', '.join(DEFAULT_LIMITS)}")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{name} must be a positive number, not {value!r}")
        self.limits.update(limits)
        self._next_sweep = 0.0

    @property
    def open_count(self) -> int:
        return self._open

    def open(self, trace_id: int) -> Capture:
        max_records = int(self.limits["capture_max_records"])
        cap = Capture(trace_id, max_records, int(self.limits["capture_max_bytes"]))
        with self._lock:
            self._sweep(time.monotonic())
            limit = int(self.limits["capture_max_open"])
            if self._open >= limit:
                cap.discard(f"capture not started: {self._open} captures already open (capture_max_open={limit})")
                warn = not self._warned_full
                self._warned_full = True
            else:
                self.by_trace.setdefault(trace_id, []).append(cap)
                self._open += 1
                return cap
        if warn:
            logger.warning("Capture refused: %d captures are open (capture_max_open=%d); "
                           "records of new runs are not buffered until some close", self._open, limit)
        return cap

    def close(self, cap: Capture) -> None:
        with self._lock:
            self._remove(cap)

    def _remove(self, cap: Capture) -> None:
        caps = self.by_trace.get(cap.trace_id)
        if caps and cap in caps:
            caps.remove(cap)
            self._open -= 1
            if not caps:
                del self.by_trace[cap.trace_id]
            if self._open < int(self.limits["capture_max_open"]):
                self._warned_full = False

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        ttl = float(self.limits["capture_idle_ttl_s"])
        self._next_sweep = now + min(ttl / 10, 1.0)
        stale = [c for caps in self.by_trace.values() for c in caps if now - c.last_activity > ttl]
        for cap in stale:
            self._remove(cap)
            cap.discard(f"capture discarded after {ttl:g} s without activity")

    def on_emit(self, record: ReadWriteLogRecord) -> None:
        caps = self.by_trace.get(record.log_record.trace_id or 0)
        if caps:
            snap = snapshot(record)
            for cap in list(caps):
                cap.add(snap)


    def _after_fork(self) -> None:
        """A child starts with no captures: the parent's runs are not its own."""
        self._lock = threading.Lock()
        self.by_trace = {}
        self._open = 0
        self._warned_full = False


registry = CaptureRegistry()
os.register_at_fork(after_in_child=registry._after_fork)
_tracer = trace.get_tracer("otel_session")


def _random_span_context() -> SpanContext:
    return SpanContext(
        trace_id=random.getrandbits(128) or 1,
        span_id=random.getrandbits(64) or 1,
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )


class capture(Scope[Capture]):  # noqa: N801 - used like a function: `with capture() as logs:`
    """Buffer the records of the current trace (starting a span when there is none)."""

    def __init__(self, name: str = "otel_session.capture") -> None:
        self._name = name
        self._token: object | None = None
        self._span: trace.Span | None = None
        self._capture: Capture | None = None

    def __enter__(self) -> Capture:
        if self._capture is not None:
            raise RuntimeError("this capture() is already in use; create a new one")
        span_context = trace.get_current_span().get_span_context()
        if not span_context.is_valid:
            span = _tracer.start_span(self._name)
            if not span.get_span_context().is_valid:  # no SDK tracer provider: still a real trace id
                span = NonRecordingSpan(_random_span_context())
            self._span = span
            self._token = context.attach(trace.set_span_in_context(span))
            span_context = span.get_span_context()
        self._capture = registry.open(span_context.trace_id)
        return self._capture

    def __exit__(self, *exc_info: object) -> None:
        if self._capture is not None:
            registry.close(self._capture)
        if self._token is not None:
            context.detach(self._token)  # type: ignore[arg-type]
            self._token = None
        if self._span is not None:
            self._span.end()
            self._span = None
