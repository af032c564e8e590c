"""Buffer flushes across processes: a trace that fails in one process is flushed in every other one,
through the capped Redis stream `otel_session:flushes` (docs/debug-buffer.md)."""

from __future__ import annotations

import time
import uuid
from collections import deque
from typing import Any

from otel_session._buffer import Key, TraceBuffer
from otel_session._validation import parse_trace_id

STREAM = "otel_session:flushes"
MAXLEN = 10_000
READ_BATCH = 500


def wire_key(key: Key) -> str:
    return f"trace:{key:032x}" if isinstance(key, int) else key


def parse_key(text: object) -> Key | None:
    if not isinstance(text, str):
        return None
    if text.startswith("trace:"):
        try:
            return parse_trace_id(text[6:])
        except ValueError:
            return None
    return text if text.startswith("session:") and len(text) > 8 else None


class FlushSignals:
    def __init__(self, buffer: TraceBuffer, prefix: str = "", service: str = "") -> None:
        self.buffer, self.stream, self.service = buffer, prefix + STREAM, service
        self.origin = uuid.uuid4().hex
        self._pending: deque[tuple[Key, float]] = deque()
        self._last_id: str | None = None
        buffer.signal = self.put

    def put(self, key: Key) -> None:
        """A flush here (any thread): the watcher publishes it on its next poll."""
        self._pending.append((key, time.monotonic()))

    def exchange(self, client: Any) -> None:
        """Publish this process's flushes, then apply the other processes' (raises Redis errors)."""
        if not self.buffer.on:
            self._pending.clear()
            self._last_id = None  # when it is on again, read from a TTL back
            return
        self._send(client)
        self._receive(client)

    def drop_stale(self) -> None:
        """Count as lost the flushes that waited longer than the TTL (no Redis needed: the watcher
        calls it before every poll, Redis up or not)."""
        pending, cutoff = self._pending, time.monotonic() - self.buffer.settings.ttl_s
        while pending and pending[0][1] < cutoff:
            pending.popleft()
            self.buffer.count("signals_lost")

    def _send(self, client: Any) -> None:
        pending = self._pending
        items = list(pending)
        if not items:
            return
        pipe = client.pipeline(transaction=False)
        for key, _ in items:
            pipe.xadd(self.stream, {"key": wire_key(key), "origin": self.origin, "service": self.service},
                      maxlen=MAXLEN, approximate=True)
        pipe.execute()
        for _ in items:
            pending.popleft()
        self.buffer.count("signals_sent", len(items))

    def _receive(self, client: Any) -> None:
        if self._last_id is None:  # flushes of the last TTL still matter: those records are still held
            self._last_id = f"{max(0, int((time.time() - self.buffer.settings.ttl_s) * 1000))}-0"
        while True:
            found = client.xread({self.stream: self._last_id}, count=READ_BATCH)
            entries = found[0][1] if found else []
            for entry_id, fields in entries:
                self._last_id = entry_id
                key = parse_key(fields.get("key"))
                if fields.get("origin") == self.origin or key is None:
                    continue
                self.buffer.flush(key, publish=False)
                self.buffer.count("signals_received")
            if len(entries) < READ_BATCH:
                return
