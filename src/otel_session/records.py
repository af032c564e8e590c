"""A plain, frozen snapshot of one log record, shared by capture buffers and the test fixture.

Snapshots copy what they need at the moment they are taken, so a later change to the live SDK
record (or a processor running after us) cannot change what a citation or a test saw.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

from opentelemetry.sdk._logs import ReadableLogRecord, ReadWriteLogRecord

from otel_session._sdk import attributes_copy, severity_value

EXCEPTION_STACKTRACE = "exception.stacktrace"


class Record(NamedTuple):
    """Immutable and cheap to build: one is made per captured record on the emit path."""

    time_unix_nano: int
    severity_number: int
    level: str
    logger: str
    message: str
    attributes: Mapping[str, Any]
    trace_id: int = 0
    span_id: int = 0

    @property
    def time(self) -> datetime:
        return datetime.fromtimestamp(self.time_unix_nano / 1e9, tz=UTC)

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
    body = lr.body
    return Record(
        lr.timestamp or lr.observed_timestamp or 0,
        severity_value(severity),
        lr.severity_text or (severity.name if severity is not None else "UNSPECIFIED"),
        scope.name if scope is not None else "",
        body if isinstance(body, str) else str(body),
        attributes_copy(lr.attributes),
        lr.trace_id or 0,
        lr.span_id or 0,
    )


def approx_size(record: Record) -> int:
    """Bytes a record holds in a buffer, near enough to bound memory."""
    size = 200 + len(record.message)
    for value in record.attributes.values():
        size += 48 + (len(value) if isinstance(value, str) else 16)
    return size
