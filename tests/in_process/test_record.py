"""`Record`: one type for captured records and records read back from files, its snapshot of a real
SDK record, and the memory a capture buffer charges for it."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

import pytest
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.context import Context
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

from otel_session import log_reader
from otel_session._otlp_json import decode_request, encode_json_line
from otel_session._record import EMPTY, Record, record_size, snapshot

TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
SPAN_ID = 0x00F067AA0BA902B7


class Keep(LogRecordProcessor):
    """The records the SDK hands its processors, as they are handed."""

    def __init__(self) -> None:
        self.records: list[ReadWriteLogRecord] = []

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:  # type: ignore[override]
        self.records.append(log_record)

    def emit(self, log_record: ReadWriteLogRecord) -> None:  # older SDKs call this name
        self.on_emit(log_record)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


@pytest.fixture
def emitted() -> Iterator[tuple[LoggerProvider, Keep]]:
    provider = LoggerProvider(resource=Resource.create({"service.name": "records-svc", "host.name": "h1"}))
    keep = Keep()
    provider.add_log_record_processor(keep)
    yield provider, keep
    provider.shutdown()


def in_span() -> Context:
    span = NonRecordingSpan(SpanContext(TRACE_ID, SPAN_ID, is_remote=False, trace_flags=TraceFlags(1)))
    return set_span_in_context(span)


def test_snapshot_of_an_sdk_record_has_hex_ids_service_and_a_copy_of_the_attributes(emitted):
    provider, keep = emitted
    provider.get_logger("tests.record").emit(LogRecord(
        timestamp=1_795_000_000_123_456_789, context=in_span(), severity_number=SeverityNumber.WARN,
        severity_text="WARNING", body="disk low", attributes={"session.id": "s-1", "user.id": "u-1", "n": 3}))
    live = keep.records[0]
    record = snapshot(live)
    assert record == Record(1_795_000_000_123_456_789, 13, "WARNING", "tests.record", "disk low",
                            {"session.id": "s-1", "user.id": "u-1", "n": 3}, "0af7651916cd43dd8448eb211c80319c",
                            "00f067aa0ba902b7", "records-svc", record.resource)
    assert record.resource["host.name"] == "h1"
    assert (record.session_id, record.user_id, record.exception) == ("s-1", "u-1", None)
    live.log_record.attributes["late"] = "added after"  # type: ignore[index]
    assert "late" not in record.attributes  # a snapshot, not a view


def test_snapshot_without_a_span_severity_text_or_string_body(emitted):
    provider, keep = emitted
    provider.get_logger("tests.record").emit(LogRecord(
        observed_timestamp=5_000_000_000, severity_number=SeverityNumber.ERROR2, body={"k": [1, 2]}))
    provider.get_logger("tests.record").emit(LogRecord(timestamp=1))
    first, second = (snapshot(r) for r in keep.records)
    assert (first.trace_id, first.span_id) == (None, None)
    assert (first.time_unix_nano, first.severity_number, first.level) == (5_000_000_000, 18, "ERROR")
    assert first.message == str({"k": [1, 2]})
    assert (second.severity_number, second.level, second.message, second.attributes) == (0, "UNSPECIFIED", "", {})


def test_render_and_as_dict(emitted):
    provider, keep = emitted
    provider.get_logger("svc.work").emit(LogRecord(
        timestamp=1_795_000_000_123_456_789, context=in_span(), severity_number=SeverityNumber.ERROR,
        severity_text="ERROR", body="failed",
        attributes={"session.id": "s-1", "exception.stacktrace": "Traceback...\nValueError: x\n", "job": 2}))
    record = snapshot(keep.records[0])
    assert record.render() == "2026-11-18T11:06:40.123Z ERROR svc.work: failed\nTraceback...\nValueError: x"
    assert record.time.isoformat() == "2026-11-18T11:06:40.123456+00:00"  # exact: no float on the way
    assert record.as_dict() == {
        "time": "2026-11-18T11:06:40.123456Z", "service": "records-svc", "level": "ERROR", "logger": "svc.work",
        "message": "failed", "session_id": "s-1", "user_id": None, "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "span_id": "00f067aa0ba902b7",
        "attributes": {"exception.stacktrace": "Traceback...\nValueError: x\n", "job": 2}}


def test_a_record_written_and_read_back_is_the_same_record(emitted):
    provider, keep = emitted
    provider.get_logger("tests.round").emit(LogRecord(
        timestamp=1_795_000_000_000_000_001, context=in_span(), severity_number=SeverityNumber.INFO,
        severity_text="INFO", body="hello", attributes={"session.id": "s-1", "tags": ["a", "b"], "ok": True}))
    live = keep.records[0]
    (read,) = decode_request(encode_json_line([live]))
    captured = snapshot(live)
    assert read._replace(resource=EMPTY) == captured._replace(resource=EMPTY, attributes=read.attributes)
    assert dict(read.attributes) == {"session.id": "s-1", "tags": ["a", "b"], "ok": True}
    assert read.resource["service.name"] == captured.resource["service.name"] == "records-svc"
    assert json.dumps(read.as_dict()) == json.dumps(captured.as_dict())


def test_one_record_type_everywhere():
    import otel_session

    assert log_reader.Record is log_reader.LogEntry is otel_session.Record is Record
    record = Record(0, 9, "INFO", "x", "m", {})
    assert (record.trace_id, record.span_id, record.service, record.resource) == (None, None, "", {})
    assert record.resource is Record(1, 9, "INFO", "y", "n", {}).resource  # one shared empty mapping
    with pytest.raises(TypeError):
        record.resource["k"] = "v"  # type: ignore[index]


# --- record_size ------------------------------------------------------------------------------------


def sized(message: str = "", **attributes: object) -> int:
    return record_size(Record(0, 9, "INFO", "logger", message, attributes))


def test_size_counts_text_by_its_length():
    base = sized()
    assert sized("x" * 10_000) - base == 10_000
    one = sized(a="")
    assert sized(a="y" * 5_000) - one == 5_000
    assert sized(**{"k" * 300: ""}) - one == 299  # keys count too
    assert sized(a=b"z" * 4_000) - one == 4_000  # bytes by length


def test_a_million_element_list_counts_at_least_a_megabyte():
    assert sized(big=list(range(1_000_000))) >= 1_000_000
    assert sized(big=["x"] * 1_000_000) >= 1_000_000
    assert sized(big=tuple(range(1_000_000))) >= 1_000_000


def test_nested_values_count_all_the_way_down():
    one = sized(a="")
    assert sized(a=[["x" * 1_000] * 10] * 10) - one >= 100_000
    assert sized(a={"k" * 2_000: "v" * 3_000}) - one >= 5_000  # dict keys and values
    assert sized(a={"deep": [{"text": "t" * 7_000}]}) - one >= 7_000
    assert sized(a=1) == sized(a=1.5) == sized(a=True) == sized(a=None)  # scalars: one small constant
    assert sized(a=1) - one < 64


def test_a_deeply_nested_value_does_not_overflow_the_stack():
    value: list[object] = ["leaf"]
    for _ in range(sys.getrecursionlimit() * 3):
        value = [value]
    assert sized(a=value) > sized(a="leaf")


def test_every_record_and_every_attribute_costs_something():
    assert sized() > 0
    assert sized(a="", b="") > sized(a="") > sized()


def test_the_common_record_stays_a_small_number_of_bytes():
    size = sized("GET /health 200", **{"session.id": "s-1", "user.id": "u-1", "user.name": "Ada"})
    assert 200 < size < 1_000


def test_a_list_attribute_of_an_sdk_record_is_counted_by_its_real_size(emitted):
    provider, keep = emitted
    logger = provider.get_logger("tests.size")
    logger.emit(LogRecord(timestamp=1, body="m", attributes={"rows": list(range(100_000))}))
    assert record_size(snapshot(keep.records[0])) >= 100_000
