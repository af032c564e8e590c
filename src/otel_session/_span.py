"""`Span`: one span as read from an OTLP-JSON traces line, plain and immutable, beside `Record` for logs.

Numbers are OTLP's: `kind` 0 unspecified, 1 internal, 2 server, 3 client, 4 producer, 5 consumer;
`status_code` 0 unset, 1 ok, 2 error. Ids are lowercase hex (trace 32, span 16 digits).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from otel_session._record import EMPTY, iso_time

KINDS = ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
STATUS_CODES = ("UNSET", "OK", "ERROR")
# protobuf's JSON mapping spells enums by name
KIND_ENUM_NAMES = {f"SPAN_KIND_{name}": number for number, name in enumerate(KINDS)}
STATUS_ENUM_NAMES = {f"STATUS_CODE_{name}": number for number, name in enumerate(STATUS_CODES)}


class SpanEvent(NamedTuple):
    name: str
    time_unix_nano: int
    attributes: Mapping[str, Any] = EMPTY

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "time": iso_time(self.time_unix_nano), "time_unix_nano": self.time_unix_nano,
                "attributes": dict(self.attributes)}


class SpanLink(NamedTuple):
    trace_id: str
    span_id: str
    attributes: Mapping[str, Any] = EMPTY

    def as_dict(self) -> dict[str, Any]:
        return {"trace_id": self.trace_id, "span_id": self.span_id, "attributes": dict(self.attributes)}


class Span(NamedTuple):
    """One finished span. `parent_span_id` is None for a root span (or one whose parent is unknown)."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: int
    start_unix_nano: int
    end_unix_nano: int
    status_code: int = 0
    status_message: str = ""
    attributes: Mapping[str, Any] = EMPTY
    events: tuple[SpanEvent, ...] = ()
    links: tuple[SpanLink, ...] = ()
    service: str = ""
    resource: Mapping[str, Any] = EMPTY
    scope: str = ""

    @property
    def kind_name(self) -> str:
        """`INTERNAL`, `SERVER`, `CLIENT`, `PRODUCER`, `CONSUMER` or `UNSPECIFIED`."""
        return KINDS[self.kind] if 0 <= self.kind < len(KINDS) else "UNSPECIFIED"

    @property
    def status(self) -> str:
        """`UNSET`, `OK` or `ERROR`."""
        return STATUS_CODES[self.status_code] if 0 <= self.status_code < len(STATUS_CODES) else "UNSET"

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_unix_nano - self.start_unix_nano)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly object: ids, names, times (ISO and nanoseconds), status, and the rest."""
        return {
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_span_id": self.parent_span_id,
            "name": self.name,
            "kind": self.kind_name,
            "service": self.service,
            "scope": self.scope,
            "start": iso_time(self.start_unix_nano),
            "end": iso_time(self.end_unix_nano),
            "start_unix_nano": self.start_unix_nano,
            "end_unix_nano": self.end_unix_nano,
            "status": self.status,
            "status_message": self.status_message,
            "attributes": dict(self.attributes),
            "events": [e.as_dict() for e in self.events],
            "links": [link.as_dict() for link in self.links],
        }


__all__ = ["KINDS", "KIND_ENUM_NAMES", "STATUS_CODES", "STATUS_ENUM_NAMES", "Span", "SpanEvent", "SpanLink"]
