"""Logs, spans and metrics as OTLP JSON lines in a local directory, one file a process and signal, in the format a
Collector's `file` exporter writes, so one reader serves both (docs/internals.md).
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path

from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_session._diagnostics import internal
from otel_session._otlp_json import encode_json_line, encode_metrics_json_line, encode_spans_json_line

DEFAULT_DIR = "./.otel-session/logs"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def log_dir(env: dict[str, str] | None = None) -> Path:
    return Path((env if env is not None else os.environ).get("OTEL_SESSION_LOG_DIR") or DEFAULT_DIR)


_live: weakref.WeakSet[_JsonLinesFile] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """A lock another thread held at the fork stays held forever in the child: replace each one."""
    for exporter in list(_live):
        exporter._forked()


os.register_at_fork(after_in_child=_after_fork_in_child)


class _JsonLinesFile:
    """One process's OTLP-JSON lines file, `<directory>/<service>.<pid><suffix>`: one whole line per `write`,
    a torn last line closed with a newline before the next, a forked child writing its own file."""

    suffix = ".jsonl"
    signal = "log records"

    def __init__(self, directory: str | os.PathLike[str] | None = None, service_name: str = "unknown_service") -> None:
        self.directory = Path(directory) if directory is not None else log_dir()
        self.service_name = service_name
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._fd_pid = 0
        self._torn = False  # the file's last line has no newline: start the next write with one
        self._shutdown = False
        self.failures = 0
        _live.add(self)

    @property
    def path(self) -> Path:
        name = _UNSAFE.sub("_", self.service_name) or "unknown_service"
        return self.directory / f"{name}.{os.getpid()}{self.suffix}"

    def _open(self) -> int:
        pid = os.getpid()
        if self._fd is None or self._fd_pid != pid:  # a forked child writes its own file
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                size = os.fstat(fd).st_size
                self._torn = size > 0 and os.pread(fd, 1, size - 1) != b"\n"
            except OSError:
                os.close(fd)
                raise
            self._fd, self._fd_pid = fd, pid
        return self._fd

    def _forked(self) -> None:
        self._lock = threading.Lock()
        if self._fd is not None:  # the parent's file: the child writes its own
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        self._torn = False

    def _append(self, encode: Callable[[], str], count: int) -> bool:
        """Append one encoded line; False (reported on stderr, never raised) when it could not be written."""
        if self._shutdown:
            return False
        try:
            data = encode().encode("utf-8")
            with self._lock:
                fd = self._open()
                if self._torn:
                    data = b"\n" + data
                written = 0
                try:
                    while written < len(data):
                        written += os.write(fd, data[written:])
                except OSError:
                    self._torn = self._torn or written > 0
                    raise
                self._torn = False
        except Exception as exc:
            self.failures += 1
            if self.failures == 1 or self.failures % 100 == 0:
                internal.error("otel_session: could not write %d %s to %s: %s (%d failed exports)",
                               count, self.signal, self.path, exc, self.failures)
            return False
        return True

    def _close(self) -> None:
        with self._lock:
            self._shutdown = True
            if self._fd is not None and self._fd_pid == os.getpid():
                os.close(self._fd)
            self._fd = None


class OtlpJsonFileExporter(_JsonLinesFile, LogRecordExporter):
    """Appends each batch of log records as one OTLP-JSON line to `<directory>/<service>.<pid>.jsonl`."""

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:  # type: ignore[override]
        ok = self._shutdown is False and (not batch or self._append(lambda: encode_json_line(batch), len(batch)))
        return LogRecordExportResult.SUCCESS if ok else LogRecordExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    def shutdown(self) -> None:
        self._close()


class OtlpJsonFileSpanExporter(_JsonLinesFile, SpanExporter):
    """Appends each batch of spans as one OTLP-JSON traces line to `<directory>/<service>.<pid>.spans.jsonl`,
    beside the log file of the same process."""

    suffix = ".spans.jsonl"
    signal = "spans"

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        ok = self._shutdown is False and (not spans or self._append(lambda: encode_spans_json_line(spans), len(spans)))
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    def shutdown(self) -> None:
        self._close()


class OtlpJsonFileMetricExporter(_JsonLinesFile, MetricExporter):
    """Appends each collection as one OTLP-JSON metrics line to `<directory>/<service>.<pid>.metrics.jsonl`,
    beside the log file of the same process (the SDK's default temporality and aggregation: cumulative)."""

    suffix = ".metrics.jsonl"
    signal = "metric collection(s)"

    def __init__(self, directory: str | os.PathLike[str] | None = None, service_name: str = "unknown_service") -> None:
        _JsonLinesFile.__init__(self, directory, service_name)
        MetricExporter.__init__(self)

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: object
               ) -> MetricExportResult:
        ok = self._shutdown is False and (not metrics_data.resource_metrics or self._append(
            lambda: encode_metrics_json_line(metrics_data), 1))
        return MetricExportResult.SUCCESS if ok else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: object) -> None:
        self._close()


__all__ = ["DEFAULT_DIR", "OtlpJsonFileExporter", "OtlpJsonFileMetricExporter", "OtlpJsonFileSpanExporter", "log_dir"]
