"""The open captures: each keeps one run's records, bounded, so they can be shown to its user.

A capture lives in the context that opened it (under `CAPTURES_KEY`), so it receives the records of
that context and of contexts derived from it, never a sibling capture's (docs/levels-and-captures.md).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

from opentelemetry.context import create_key

from otel_session._record import Entry, Record, from_entry, record_size
from otel_session._severity import severity_of

logger = logging.getLogger(__name__)

CAPTURES_KEY = create_key("otel_session.captures")  # the captures open in a context, outermost first

DEFAULT_LIMITS = {
    "capture_max_records": 10_000,
    "capture_max_bytes": 4_000_000,
    "capture_max_open": 1_000,
    "capture_idle_ttl_s": 3600.0,
}


class Capture:
    """The records of one context, in order, at or above the capture's own level."""

    def __init__(self, level: int, max_records: int, max_bytes: int) -> None:
        self.level = level
        self.severity = severity_of(level)
        # Entries (`_record.entry`, size last) from the emit path, or (Record, size) pairs: one
        # tuple a record, made a `Record` only when the capture is read.
        self._entries: deque[tuple[Any, ...]] = deque()
        self._bytes = 0
        self._max_records = max_records
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self.dropped = 0
        self.closed = False
        self.closed_reason: str | None = None
        self.last_activity = time.time_ns()  # the newest record's timestamp, once records come

    @property
    def records(self) -> list[Record]:
        with self._lock:
            entries = self._entries
            if any(len(e) != 2 for e in entries):  # once: later reads get the same Records
                self._entries = entries = deque(e if len(e) == 2 else (from_entry(e), e[-1]) for e in entries)
            return [e[0] for e in entries]

    @property
    def size(self) -> int:
        """Bytes held, by the records' real size."""
        return self._bytes

    def add(self, record: Record, size: int | None = None) -> None:
        """Keep a record (`size`: its `record_size`, when the caller has it already)."""
        self._keep((record, record_size(record) if size is None else size), record.time_unix_nano)

    def keep(self, entry: Entry) -> None:
        """Keep a record's `_record.entry` (the emit path: `_keep`, inlined)."""
        if self.closed:
            return
        with self._lock:
            entries = self._entries
            self.last_activity = entry[0]  # the record's timestamp: no clock call per record
            entries.append(entry)
            self._bytes += entry[-1]
            while self._bytes > self._max_bytes or len(entries) > self._max_records:
                self._bytes -= entries.popleft()[-1]
                self.dropped += 1

    def _keep(self, item: tuple[Any, ...], time_unix_nano: int) -> None:
        if self.closed:
            return
        with self._lock:
            entries = self._entries
            self.last_activity = time_unix_nano
            entries.append(item)
            self._bytes += item[-1]
            while self._bytes > self._max_bytes or len(entries) > self._max_records:
                self._bytes -= entries.popleft()[-1]
                self.dropped += 1

    def discard(self, reason: str) -> None:
        with self._lock:
            self.closed = True
            self.closed_reason = reason
            self.dropped += len(self._entries)
            self._entries.clear()
            self._bytes = 0

    def render(self) -> str:
        """One line a record; a first line says what was dropped or why nothing was kept."""
        lines = []
        if self.closed_reason:
            lines.append(f"[{self.closed_reason}]")
        elif self.dropped:
            lines.append(f"[{self.dropped} earlier records dropped: over the capture limit of "
                         f"{self._max_records} records / {self._max_bytes} bytes]")
        lines.extend(r.render() for r in self.records)
        return "\n".join(lines)


class CaptureRegistry:
    """The open captures: bounded in number, swept when idle."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: set[Capture] = set()
        self.limits = dict(DEFAULT_LIMITS)
        self._warned_full = False
        self._next_sweep = 0

    def set_limits(self, **limits: float) -> None:
        for name, value in limits.items():
            if name not in DEFAULT_LIMITS:
                raise TypeError(f"unknown capture limit {name!r}; known: {', '.join(DEFAULT_LIMITS)}")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{name} must be a positive number, not {value!r}")
        self.limits.update(limits)
        self._next_sweep = 0

    @property
    def open_count(self) -> int:
        return len(self._open)

    def open(self, level: int) -> Capture:
        cap = Capture(level, int(self.limits["capture_max_records"]), int(self.limits["capture_max_bytes"]))
        with self._lock:
            self._sweep(time.time_ns())
            limit = int(self.limits["capture_max_open"])
            if len(self._open) < limit:
                self._open.add(cap)
                return cap
            cap.discard(f"capture not started: {len(self._open)} captures already open (capture_max_open={limit})")
            warn, self._warned_full = not self._warned_full, True
        if warn:
            logger.warning("Capture refused: %d captures are open (capture_max_open=%d); records of new runs "
                           "are not kept until some close", len(self._open), limit)
        return cap

    def close(self, cap: Capture) -> None:
        with self._lock:
            self._close(cap)

    def _close(self, cap: Capture) -> None:
        cap.closed = True
        if cap in self._open:
            self._open.discard(cap)
            if len(self._open) < int(self.limits["capture_max_open"]):
                self._warned_full = False

    def _sweep(self, now: int) -> None:
        if now < self._next_sweep:
            return
        ttl = float(self.limits["capture_idle_ttl_s"])
        self._next_sweep = now + int(min(ttl / 10, 1.0) * 1e9)
        stale = [c for c in self._open if now - c.last_activity > ttl * 1e9]
        for cap in stale:
            self._close(cap)
            cap.discard(f"capture discarded after {ttl:g} s without activity")

    def reset(self) -> None:
        with self._lock:
            for cap in list(self._open):
                self._close(cap)
            self.limits = dict(DEFAULT_LIMITS)
            self._warned_full = False
            self._next_sweep = 0

    def after_fork(self) -> None:
        """A child starts with no captures: the parent's runs are not its own."""
        self._lock = threading.Lock()
        for cap in self._open:
            cap.closed = True
        self._open = set()
        self._warned_full = False
