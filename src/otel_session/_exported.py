"""How many log records our exporters were handed, and how many of those failed: counted once per batch
where the batch is exported (the batch processor's thread), never on the logging call, and read by the
`otel_session.log.exported` metric."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

OTHER_ERROR = "_OTHER"  # `error.type` of a failed export that raised nothing (the semantic conventions' fallback)


class ExportTally:
    """Records handed to an exporter since the process started, by (exporter name, error type or None)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str | None], int] = {}

    def add(self, exporter: str, error: str | None, count: int) -> None:
        with self._lock:
            key = (exporter, error)
            self._counts[key] = self._counts.get(key, 0) + count

    def counts(self) -> dict[tuple[str, str | None], int]:
        with self._lock:
            return dict(self._counts)

    def after_fork(self) -> None:
        """A child counts its own exports (what its parent exported is the parent's)."""
        self._lock = threading.Lock()
        self._counts = {}


TALLY = ExportTally()
os.register_at_fork(after_in_child=lambda: TALLY.after_fork())


class CountingExporter(LogRecordExporter):
    """`inner`, with each batch it is handed counted in `TALLY` under `name` (configure()'s exporter name)."""

    def __init__(self, inner: LogRecordExporter, name: str, tally: ExportTally = TALLY) -> None:
        self.inner = inner
        self.name = name
        self._tally = tally

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:  # type: ignore[override]
        try:
            result = self.inner.export(batch)  # type: ignore[arg-type]
        except Exception as exc:
            self._tally.add(self.name, type(exc).__qualname__, len(batch))
            raise
        ok = result is None or result == LogRecordExportResult.SUCCESS  # the SDK's in-memory exporter says nothing
        self._tally.add(self.name, None if ok else OTHER_ERROR, len(batch))
        return result

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self.inner.shutdown()  # type: ignore[no-untyped-call]


__all__ = ["OTHER_ERROR", "TALLY", "CountingExporter", "ExportTally"]
