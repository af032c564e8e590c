"""Pytest plugin (entry point `pytest11`): the `otel_logs` fixture over the SDK's in-memory exporter.

Records come back as frozen `Record` snapshots, so what a test asserts is what was exported. Every
test starts from the library's defaults (`otel_session.reset()`), as structlog's fixtures do.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter

from otel_session._capture import DEFAULT_LIMITS
from otel_session._configure import Telemetry, configure
from otel_session._levels import parse_level
from otel_session._record import Record, snapshot
from otel_session._severity import severity_of
from otel_session._state import DEFAULT_BAGGAGE_KEYS, STATE


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
        return [r for r in self.records if r.attributes.get("session.id") == session_id]

    def messages(self, level: str | int | None = None) -> list[str]:
        """Messages at `level` and above (all when None), in order."""
        floor = severity_of(parse_level(level)) if level is not None else 0
        return [r.message for r in self.records if r.severity_number >= floor]

    def clear(self) -> None:
        self.exporter.clear()


@pytest.fixture
def otel_logs() -> Iterator[LogCapture]:
    root = logging.getLogger()
    level = root.level
    STATE.reset()
    logs = LogCapture()
    yield logs
    logs.clear()
    STATE.reset()
    root.setLevel(level)
