"""`Record`: the one plain, immutable log record, whether captured from the SDK or read from a file.

A snapshot copies what it needs when it is taken, so a later change to the live SDK record (or a
processor running after us) cannot change what a citation, a test or `otel-session logs` saw.
On the emit path a capture keeps an `entry` (a plain tuple: the mutable parts copied, nothing
formatted) and makes the `Record` of it only when it is read (`from_entry`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, NamedTuple

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk._logs import ReadableLogRecord, ReadWriteLogRecord
from opentelemetry.sdk.resources import Resource

from otel_session._keys import EXCEPTION_STACKTRACE, SERVICE_NAME, SESSION_ID, USER_ID
from otel_session._sdk import attributes_copy
from otel_session._severity import severity_text, severity_value

EMPTY: Mapping[str, Any] = MappingProxyType({})

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc_time(time_unix_nano: int) -> datetime:
    """A Unix time in nanoseconds as an aware UTC datetime (to the microsecond, exactly: no float)."""
    return EPOCH + timedelta(microseconds=time_unix_nano // 1000)


def iso_time(time_unix_nano: int, timespec: str = "microseconds") -> str:
    """ISO 8601 in UTC with a `Z`: `2026-11-23T10:00:00.123456Z`."""
    return utc_time(time_unix_nano).isoformat(timespec=timespec).replace("+00:00", "Z")


class Record(NamedTuple):
    """One log record. Ids are lowercase hex (trace 32, span 16 digits), None when unset."""

    time_unix_nano: int
    severity_number: int
    level: str
    logger: str
    message: str
    attributes: Mapping[str, Any]
    trace_id: str | None = None
    span_id: str | None = None
    service: str = ""
    resource: Mapping[str, Any] = EMPTY

    @property
    def time(self) -> datetime:
        return utc_time(self.time_unix_nano)

    def _text(self, key: str) -> str | None:
        value = self.attributes.get(key)
        return value if isinstance(value, str) else None

    @property
    def session_id(self) -> str | None:
        return self._text(SESSION_ID)

    @property
    def user_id(self) -> str | None:
        return self._text(USER_ID)

    @property
    def exception(self) -> str | None:
        """The `exception.stacktrace` attribute, if any."""
        return self._text(EXCEPTION_STACKTRACE)

    def render(self) -> str:
        """One line: ISO time, level, logger, message; then the exception text, if any."""
        line = f"{iso_time(self.time_unix_nano, 'milliseconds')} {self.level:<5} {self.logger}: {self.message}"
        exception = self.exception
        if exception:
            line += "\n" + exception.rstrip("\n")
        return line

    def as_dict(self) -> dict[str, Any]:
        """The `otel-session logs --json` object: the ids and names first, the other attributes last."""
        return {
            "time": iso_time(self.time_unix_nano),
            "service": self.service,
            "level": self.level,
            "logger": self.logger,
            "message": self.message,
            "session_id": self.session_id,
            "user_id": self.user_id,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "attributes": {k: v for k, v in self.attributes.items() if k not in (SESSION_ID, USER_ID)},
        }


# A process has one resource (or very few): remember the last one's service name and attributes.
_last_resource: tuple[Resource | None, str, Mapping[str, Any]] = (None, "", EMPTY)


def _service(resource: Resource | None) -> tuple[str, Mapping[str, Any]]:
    global _last_resource
    last = _last_resource
    if resource is last[0]:
        return last[1], last[2]
    if resource is None:
        return "", EMPTY
    attributes = resource.attributes  # immutable: shared, not copied
    service = attributes.get(SERVICE_NAME)
    found = (service if isinstance(service, str) else "", attributes)
    _last_resource = (resource, *found)
    return found


# Records come in runs of one trace and one span: formatting the ids is the dear part, so remember it.
@functools.lru_cache(maxsize=1024)
def _trace_hex(trace_id: int) -> str:
    return format(trace_id, "032x")


@functools.lru_cache(maxsize=1024)
def _span_hex(span_id: int) -> str:
    return format(span_id, "016x")


def snapshot(record: ReadWriteLogRecord | ReadableLogRecord, severity: int | None = None) -> Record:
    """A `Record` of an SDK record as it is now (`severity`: its number, when the caller has it)."""
    if severity is None:
        severity = severity_value(record.log_record.severity_number)
    return from_entry(entry(record, severity))


def entry(record: ReadWriteLogRecord | ReadableLogRecord, severity: int,
          attributes: Mapping[str, Any] | None = None, attributes_bytes: int = 0) -> Entry:
    """What a capture keeps of an SDK record on the emit path: everything that can still change
    (the attributes, a non-text body) copied now, the rest (ids, names, the service) formatted only
    when the capture is read (`from_entry`). The last item is the record's `record_size`.

    `attributes`, `attributes_bytes`: a read-only mapping equal to the record's attributes now,
    shared by many records (the context's session attributes, when they are all the record has),
    and its `attributes_size`; kept instead of a copy, and copied when the capture is read."""
    lr = record.log_record
    body = lr.body
    if type(body) is not str:
        body = "" if body is None else str(body)
    if attributes is None:
        live = lr.attributes
        if type(live) is BoundedAttributes and type(live._dict) is dict:
            attributes = live._dict.copy()
        else:
            attributes = attributes_copy(live)
        attributes_bytes = attributes_size(attributes)
    return (lr.timestamp or lr.observed_timestamp or 0, severity, lr.severity_text, record.instrumentation_scope,
            body, attributes, lr.trace_id, lr.span_id, record.resource,
            RECORD_OVERHEAD + len(body) + attributes_bytes)


# (time, severity number, severity text or None, scope or None, body, attributes (a dict of its own, or a
#  shared read-only mapping), trace id, span id, resource, record_size): a plain tuple, built in one step.
Entry = tuple[int, int, "str | None", Any, str, Mapping[str, Any], "int | None", "int | None", "Resource | None", int]
_new_record = tuple.__new__


def from_entry(e: Entry) -> Record:
    """The `Record` of a captured `entry`."""
    scope, attributes, trace_id, span_id = e[3], e[5], e[6], e[7]
    service, shared = _service(e[8])
    return _new_record(Record, (
        e[0],
        e[1],
        e[2] or severity_text(e[1]),
        scope.name if scope is not None else "",
        e[4],
        attributes if type(attributes) is dict else dict(attributes),  # a Record's attributes are its own
        _trace_hex(trace_id) if trace_id else None,
        _span_hex(span_id) if span_id else None,
        service,
        shared,
    ))


RECORD_OVERHEAD = 200  # the tuple, its timestamp, level, logger and the attributes dict
ATTRIBUTE_OVERHEAD = 48  # a dict slot and the key and value objects
ITEM_OVERHEAD = 8  # a slot in a list, tuple or dict inside a value
SCALAR_SIZE = 16  # a number, bool or None
_SCALARS = (int, float, bool, type(None))


def record_size(record: Record) -> int:
    """Bytes a record holds in memory, near enough to bound a buffer: text by its length, nested
    values counted all the way down. The resource is shared by every record of a process, so it is
    not counted here."""
    return RECORD_OVERHEAD + len(record.message) + attributes_size(record.attributes)


def attributes_size(attributes: Mapping[str, Any]) -> int:
    size = ATTRIBUTE_OVERHEAD * len(attributes)
    for key, value in attributes.items():
        kind = type(value)
        if kind is str:
            size += len(key) + len(value)
        elif kind in _SCALARS:
            size += len(key) + SCALAR_SIZE
        else:
            size += len(key) + value_size(value)
    return size


def value_size(value: object) -> int:
    """The bytes of one attribute value; lists, tuples and mappings (keys included) recursively,
    without recursion, so a deeply nested value cannot overflow the stack."""
    size = 0
    stack = [value]
    pop, push = stack.pop, stack.append
    while stack:
        item = pop()
        if isinstance(item, (str, bytes, bytearray)):
            size += len(item)
        elif isinstance(item, (list, tuple)):
            size += ITEM_OVERHEAD * len(item)
            for element in item:  # the common case, a list of text or numbers, without the stack
                kind = type(element)
                if kind is str:
                    size += len(element)
                elif kind in _SCALARS:
                    size += SCALAR_SIZE
                else:
                    push(element)
        elif isinstance(item, Mapping):
            size += ITEM_OVERHEAD * 2 * len(item)
            for key, element in item.items():
                push(key)
                push(element)
        else:
            size += SCALAR_SIZE
    return size


__all__ = ["EMPTY", "Entry", "Record", "attributes_size", "entry", "from_entry", "iso_time", "record_size", "snapshot",
           "utc_time", "value_size"]
