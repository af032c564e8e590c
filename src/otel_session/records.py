"""A plain, frozen snapshot of one log record, shared by capture buffers and the test fixture.

Snapshots copy what they need at the moment they are taken, so a later change to the live SDK
record (or a processor running after us) cannot change what a citation or a test saw.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from opentelemetry.sdk._logs import ReadableLogRecord, ReadWriteLogRecord

EXCEPTION_STACKTRACE = "exception.stacktrace"


@dataclass(frozen=True)
class Record:
    time_unix_nano: int
    severity_number: int
    level: str
    logger: str
    message: str
    attributes: Mapping[str, Any] = field(default_factory=dict)
    trace_id: int = 0
    span_id: int = 0

    @property
    def time(self) -> datetime:
        return datetime.fromtimestamp(self.time_unix_nano / 1e9, tz=timezone.utc)

    @property
    def session_id(self) -> str | None:
        value = self.attributes.get("session.id")
        return value if isinstance(value, str) else None

    @property
    def exception(self) -> str | None:
        value = self.attributes.get(EXCEPTION_STACKTRACE)
        return value if isinstance(value, str) else None

    def render(self) -> str:
        """One line: ISO time, level, logger, message; then the exception text, if any."""
        stamp = self.time.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        line = f"{stamp} {self.level:<5} {self.logger}: {self.message}"
        if self.exception:
            line += "\n" + self.exception.rstrip("\n")
        return line


def snapshot(record: ReadWriteLogRecord | ReadableLogRecord) -> Record:
    lr = record.log_record
    scope = record.instrumentation_scope
    severity = lr.severity_number
    timestamp = lr.timestamp or lr.observed_timestamp or 0
    return Record(
        time_unix_nano=timestamp,
        severity_number=severity.value if severity is not None else 0,
        level=lr.severity_text or (severity.name if severity is not None else "UNSPECIFIED"),
        logger=scope.name if scope is not None else "",
        message=lr.body if isinstance(lr.body, str) else str(lr.body),
        attributes=dict(lr.attributes or {}),
        trace_id=lr.trace_id or 0,
        span_id=lr.span_id or 0,
    )


def approx_size(record: Record) -> int:
    """Bytes a record holds in a buffer, near enough to bound memory."""
    size = 200 + len(record.message) + len(record.logger)
    for key, value in record.attributes.items():
        size += len(key) + (len(value) if isinstance(value, str) else 16)
    return size


def render(records: Iterable[Record]) -> str:
    return "\n".join(r.render() for r in records)
