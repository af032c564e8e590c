"""The debug buffer: records below their export level kept per trace, exported only if it fails.

What is buffered, when it is flushed, dropped or evicted, and the bounds: docs/debug-buffer.md.
The lock is held only to append or pop; exporting happens outside it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from otel_session import _sdk
from otel_session._keys import BUFFERED, EVICTED
from otel_session._levels import parse_level
from otel_session._record import attributes_size, value_size
from otel_session._severity import severity_of

Key = int | str  # a trace id, or "session:<id>" for records with no trace
Export = Callable[[Any], None]  # what exports a flushed record: the processor that buffered it

ERROR_SEVERITY = severity_of(logging.ERROR)  # a record at or above it fails its trace
_WARN = severity_of(logging.WARNING)  # the eviction notice's
# What a buffered SDK record costs in memory beyond its body and attributes (the ReadWriteLogRecord, its
# LogRecord, the BoundedAttributes and their lock, our slot): measured with tracemalloc in the buffer's
# tests, which fail when the estimate drifts.
BUFFERED_OVERHEAD = 850
MAX_TTL_S = 24 * 3600.0
SWEEP_S = 1.0
# Traces whose every buffered record was evicted keep a small note (for the notice), for this many at most.
MAX_LOST_TRACES = 1000
_OFF = ("", "OFF", "NONE", "FALSE", "0")


@dataclasses.dataclass(frozen=True)
class BufferSettings:
    """`level`: the stdlib level records are buffered from (None: the buffer is off)."""

    level: int | None = None
    max_bytes: int = 8_000_000
    ttl_s: float = 120.0

    def __post_init__(self) -> None:
        if isinstance(self.max_bytes, bool) or not isinstance(self.max_bytes, int) or self.max_bytes < 1:
            raise ValueError(f"buffer_max_bytes must be a positive whole number of bytes, not {self.max_bytes!r}")
        ttl = self.ttl_s
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 0 < ttl <= MAX_TTL_S:
            raise ValueError(f"buffer_ttl_s must be a number of seconds above 0 and at most {MAX_TTL_S:.0f}, "
                             f"not {ttl!r}")

    @classmethod
    def merged(cls, current: BufferSettings, level: str | int | None, max_bytes: int | None,
               ttl_s: float | None, env: Mapping[str, str] | None = None) -> BufferSettings:
        """The arguments, else `OTEL_SESSION_BUFFER_*`, else what is set now."""
        env = os.environ if env is None else env
        name = "buffer_level"
        if level is None and env.get("OTEL_SESSION_BUFFER_LEVEL") is not None:
            level, name = env["OTEL_SESSION_BUFFER_LEVEL"], "OTEL_SESSION_BUFFER_LEVEL"
        new_level = current.level
        if level is not None:
            new_level = None if isinstance(level, str) and level.strip().upper() in _OFF else _level(level, name)
        return cls(
            new_level,
            max_bytes if max_bytes is not None else _number(env, "OTEL_SESSION_BUFFER_MAX_BYTES", int,
                                                            current.max_bytes),
            ttl_s if ttl_s is not None else _number(env, "OTEL_SESSION_BUFFER_TTL_S", float, current.ttl_s),
        )


def _level(value: str | int, name: str) -> int:
    try:
        return parse_level(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: {exc} (or OFF)") from None


def _number(env: Mapping[str, str], name: str, kind: type[int] | type[float], default: Any) -> Any:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a {'whole ' if kind is int else ''}number") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{name}={raw!r} is not a finite number")
    return value


@dataclasses.dataclass(frozen=True)
class BufferStats:
    """Counts since this process turned the buffer on (`buffered`, `buffered_bytes`: now)."""

    buffered: int = 0
    buffered_bytes: int = 0
    flushed: int = 0  # buffered records exported by a flush
    dropped: int = 0  # buffered records whose trace did not fail within the TTL
    evicted: int = 0  # buffered records pushed out by max_bytes
    flushes: int = 0  # traces flushed here (local and remote)
    signals_sent: int = 0  # flushes published to the other processes
    signals_received: int = 0  # flushes of other processes applied here
    signals_lost: int = 0  # flushes that could not be published within the TTL (Redis away)


class _Buffered:
    __slots__ = ("alive", "at", "export", "key", "record", "size")

    def __init__(self, record: Any, size: int, at: float, key: Key, export: Export) -> None:
        self.record: Any = record
        self.size, self.at, self.key, self.export, self.alive = size, at, key, export, True


class _Trace:
    __slots__ = ("evicted", "items", "last", "lost")

    def __init__(self) -> None:
        self.items: deque[_Buffered] = deque()
        self.evicted = 0
        # When eviction took every buffered record: a bodiless copy of the last one and its exporter, to
        # make the eviction notice from (otherwise it is made from the oldest record still buffered).
        self.lost: tuple[Any, Export] | None = None
        self.last = 0.0


class TraceBuffer:
    """The buffered records of this process, and the traces flushed lately."""

    def __init__(self, context_key: Callable[[str], bool]) -> None:
        """`context_key`: whether an attribute came from the context (the configured baggage keys)."""
        self._lock = threading.Lock()
        self.context_key = context_key
        self.settings = BufferSettings()
        self._traces: dict[Key, _Trace] = {}
        self._order: deque[_Buffered] = deque()  # every buffered record, oldest first (flushed ones lazily removed)
        self._open: dict[Key, float] = {}  # flushed trace -> until when its records are exported directly
        self._lost_only: dict[Key, None] = {}  # traces holding only an eviction note, oldest first
        self._bytes = 0
        self._next_sweep = 0.0
        self._counts = dict.fromkeys(("flushed", "dropped", "evicted", "flushes", "signals_sent",
                                      "signals_received", "signals_lost"), 0)
        # Set by the Redis watcher: tells the other processes that a key was flushed here.
        self.signal: Callable[[Key], None] | None = None

    @property
    def on(self) -> bool:
        return self.settings.level is not None

    def configure(self, settings: BufferSettings) -> None:
        with self._lock:
            off = settings.level is None
            self.settings = settings
        if off:
            self.clear()

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    # -- the emit path --------------------------------------------------------------------------

    def add(self, key: Key, record: Any, body: object, export: Export) -> bool:
        """Buffer `record` of `key`, to be exported with `export` (the processor that buffered it) if
        its trace fails; False when that key failed lately (export it directly)."""
        now = time.monotonic()
        attributes = _sdk.raw_attributes(record.log_record.attributes)
        size = BUFFERED_OVERHEAD + (len(body) if type(body) is str else value_size(body))
        if attributes:
            size += attributes_size(attributes)
        with self._lock:
            if self._open and self._open.get(key, 0.0) > now:
                return False
            trace = self._traces.get(key)
            if trace is None:
                trace = self._traces[key] = _Trace()
            elif trace.lost is not None:  # the notice can be made from this record now
                trace.lost = None
                self._lost_only.pop(key, None)
            item = _Buffered(record, size, now, key, export)
            trace.items.append(item)
            trace.last = now
            self._order.append(item)
            self._bytes += size
            if self._bytes > self.settings.max_bytes:
                self._evict()
            if now >= self._next_sweep or self._order[0].at <= now - self.settings.ttl_s:
                self._expire(now)
        return True

    def _evict(self) -> None:
        order, traces = self._order, self._traces
        while self._bytes > self.settings.max_bytes and order:
            item = order.popleft()
            if not item.alive:
                continue
            trace = traces[item.key]
            trace.items.popleft()
            trace.evicted += 1
            if not trace.items:
                self._note_lost(item.key, trace, item)
            self._release(item)
            self._counts["evicted"] += 1

    def _note_lost(self, key: Key, trace: _Trace, item: _Buffered) -> None:
        trace.lost = _sdk.derived_record(item.record, "", _WARN, "WARN", self._context_attributes(item.record)), \
            item.export
        lost_only = self._lost_only
        lost_only[key] = None
        if len(lost_only) > MAX_LOST_TRACES:
            oldest = next(iter(lost_only))
            del lost_only[oldest]
            self._traces.pop(oldest, None)

    def _release(self, item: _Buffered) -> None:
        item.alive = False
        item.record = None
        self._bytes -= item.size

    def _expire(self, now: float) -> None:
        """Drop what was buffered `ttl_s` ago; once a second, forget traces and flushes past their TTL."""
        cutoff = now - self.settings.ttl_s
        order, traces = self._order, self._traces
        while order and (not order[0].alive or order[0].at <= cutoff):
            item = order.popleft()
            if item.alive:
                trace = traces[item.key]
                trace.items.popleft()
                self._release(item)
                self._counts["dropped"] += 1
                if not trace.items:  # what eviction took before is past the TTL too
                    del traces[item.key]
                    self._lost_only.pop(item.key, None)
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_S
            for key in [k for k, t in traces.items() if not t.items and t.last <= cutoff]:
                del traces[key]
                self._lost_only.pop(key, None)
            for key in [k for k, until in self._open.items() if until <= now]:
                del self._open[key]

    # -- flushing -------------------------------------------------------------------------------

    def flush(self, key: Key, *, publish: bool = True) -> int:
        """Export `key`'s buffered records (and a notice of any evicted), keep exporting its records for
        `ttl_s`, and tell the other processes (once per TTL). The number of buffered records exported."""
        if not self.on:
            return 0
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            was_open = self._open.get(key, 0.0) > now
            self._open[key] = now + self.settings.ttl_s
            trace = self._traces.pop(key, None)
            self._lost_only.pop(key, None)
            records: list[tuple[Any, Export]] = []
            lost, evicted = None, 0
            if trace is not None:
                if trace.evicted:
                    lost = (trace.items[0].record, trace.items[0].export) if trace.items else trace.lost
                    evicted = trace.evicted
                for item in trace.items:
                    records.append((item.record, item.export))
                    self._release(item)
            self._counts["flushed"] += len(records)
            self._counts["flushes"] += 1
        if lost is not None:
            template, export = lost
            export(_sdk.derived_record(
                template, f"otel_session: {evicted} buffered record(s) of this trace were evicted before this flush "
                          f"(buffer_max_bytes={self.settings.max_bytes})",
                _WARN, "WARN", {**self._context_attributes(template), BUFFERED: True, EVICTED: evicted}))
        for record, export in records:
            _sdk.add_attributes(record.log_record, ((BUFFERED, True),), 0)  # type: ignore[arg-type]
            export(record)
        if publish and not was_open and self.signal is not None:
            self.signal(key)
        return len(records)

    def _context_attributes(self, record: Any) -> dict[str, Any]:
        """What the eviction notice carries of a buffered record: its session attributes."""
        attributes = _sdk.raw_attributes(record.log_record.attributes) or {}
        return {k: v for k, v in attributes.items() if self.context_key(k)}

    # -- reporting and lifecycle ----------------------------------------------------------------

    def stats(self) -> BufferStats:
        with self._lock:
            self._expire(time.monotonic())
            return BufferStats(buffered=sum(len(t.items) for t in self._traces.values()), buffered_bytes=self._bytes,
                               **self._counts)

    def clear(self) -> None:
        """Forget everything buffered (nothing is exported)."""
        with self._lock:
            self._traces.clear()
            self._order.clear()
            self._open.clear()
            self._lost_only.clear()
            self._bytes = 0

    def reset(self) -> None:
        self.clear()
        with self._lock:
            self.settings = BufferSettings()
            self._counts = dict.fromkeys(self._counts, 0)

    def after_fork(self) -> None:
        """A child buffers none of its parent's records: they are the parent's to flush."""
        self._lock = threading.Lock()
        self.clear()


__all__ = ["ERROR_SEVERITY", "BufferSettings", "BufferStats", "Key", "TraceBuffer"]
