"""Testing helpers: `log_capture()` (behind the pytest fixture `otel_logs`) over the SDK's in-memory
exporter, and `collected_metrics()` over `configure(metrics="memory")`. Records come back as frozen `Record`
snapshots, so what a test asserts is what was exported; each capture starts and ends at the library's defaults
(`reset()`), as structlog's `capture_logs` does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.metrics.export import MetricsData

from otel_session._capture_store import DEFAULT_LIMITS
from otel_session._configure import Telemetry, configure, configured, reset
from otel_session._keys import SESSION_ID
from otel_session._levels import parse_level
from otel_session._metric import MetricPoint
from otel_session._otlp_json import decode_metrics, encode_metrics_json_line
from otel_session._record import Record, snapshot
from otel_session._severity import severity_of
from otel_session._state import DEFAULT_BAGGAGE_KEYS


class LogCapture:
    """The records exported while a test ran."""

    def __init__(self) -> None:
        self.exporter = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
        self.telemetry: Telemetry = self.configure()

    def configure(self, **kwargs: Any) -> Telemetry:
        """`otel_session.configure(...)` that keeps exporting into this fixture; what is not
        given is reset to its default, so no test inherits another's settings."""
        settings: dict[str, Any] = {"exporter": self.exporter, "baggage_keys": DEFAULT_BAGGAGE_KEYS, "level": "INFO",
                                    **DEFAULT_LIMITS, **kwargs}
        self.telemetry = configure(**settings)
        return self.telemetry

    @property
    def records(self) -> list[Record]:
        self.telemetry.force_flush()
        return [snapshot(r) for r in self.exporter.get_finished_logs()]

    def for_session(self, session_id: str) -> list[Record]:
        return [r for r in self.records if r.attributes.get(SESSION_ID) == session_id]

    def messages(self, level: str | int | None = None) -> list[str]:
        """Messages at `level` and above (all when None), in order."""
        floor = severity_of(parse_level(level)) if level is not None else 0
        return [r.message for r in self.records if r.severity_number >= floor]

    def clear(self) -> None:
        self.exporter.clear()

    def metrics(self) -> dict[str, list[MetricPoint]]:
        """The metrics' values now, by name (`collected_metrics`); needs `.configure(metrics="memory")`."""
        return collected_metrics(self.telemetry)


@contextmanager
def log_capture() -> Iterator[LogCapture]:
    """The records exported inside the block; the root logger's level and the library's settings are
    put back afterwards."""
    root = logging.getLogger()
    level = root.level
    reset()
    logs = LogCapture()
    try:
        yield logs
    finally:
        logs.clear()
        reset()
        root.setLevel(level)


def metric_points(data: MetricsData) -> dict[str, list[MetricPoint]]:
    """The SDK's collected metrics by name, as `log_reader.read_metrics` reads them from a file: through the
    same OTLP-JSON encoding the file exporter writes, so a test sees what a file would hold."""
    found: dict[str, list[MetricPoint]] = {}
    for point in decode_metrics(encode_metrics_json_line(data)):
        found.setdefault(point.name, []).append(point)
    return found


def collected_metrics(telemetry: Telemetry | None = None) -> dict[str, list[MetricPoint]]:
    """What the metrics hold now, by name (`metric_points` of `Telemetry.metrics()`); the metrics must go to
    memory (`configure(metrics="memory")`)."""
    telemetry = telemetry if telemetry is not None else configured()
    data = telemetry.metrics() if telemetry is not None else None
    if data is None:
        raise RuntimeError('the metrics do not go to memory: configure(metrics="memory") first')
    return metric_points(data)
