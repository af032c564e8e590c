"""The OTLP-JSON line format: what the encoder writes, and what the decoder accepts from any writer
(the SDK encoder, a Collector, protobuf's own JSON mapping) or refuses."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from google.protobuf.json_format import MessageToJson
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import NonRecordingSpan, SpanContext, set_span_in_context

from otel_session._otlp_json import NotOtlpError, any_value, decode_request, encode_json_line, parse_id

TRACE_HEX = "0af7651916cd43dd8448eb211c80319c"
SPAN_HEX = "00f067aa0ba902b7"


def line(*records: dict[str, Any], resource: list[dict[str, Any]] | None = None, scope: Any = None) -> str:
    return json.dumps({"resourceLogs": [{
        "resource": {"attributes": resource if resource is not None else
                     [{"key": "service.name", "value": {"stringValue": "api"}}]},
        "scopeLogs": [{"scope": scope if scope is not None else {"name": "hand"}, "logRecords": list(records)}],
    }]})


@pytest.fixture
def sdk_records():
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=Resource.create({"service.name": "enc"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    span = NonRecordingSpan(SpanContext(int(TRACE_HEX, 16), int(SPAN_HEX, 16), is_remote=False))
    logger = provider.get_logger("tests.enc")
    logger.emit(LogRecord(timestamp=10, context=set_span_in_context(span), severity_number=SeverityNumber.WARN,
                          severity_text="WARNING", body="in a span", attributes={"n": 1, "xs": [1.5, 2.5]}))
    logger.emit(LogRecord(timestamp=20, severity_number=SeverityNumber.INFO, body="no span"))
    yield exporter.get_finished_logs()
    provider.shutdown()


def test_the_encoder_writes_one_line_with_hex_ids(sdk_records):
    text = encode_json_line(sdk_records)
    assert text.endswith("\n") and text.count("\n") == 1
    request = json.loads(text)
    first, second = request["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
    assert (first["traceId"], first["spanId"]) == (TRACE_HEX, SPAN_HEX)
    assert "traceId" not in second or second["traceId"] in ("", "0" * 32)
    assert first["severityNumber"] == 13  # a number, not an enum name
    decoded = decode_request(text)
    assert [(r.message, r.level, r.severity_number, r.trace_id, r.span_id, r.service) for r in decoded] == [
        ("in a span", "WARNING", 13, TRACE_HEX, SPAN_HEX, "enc"), ("no span", "INFO", 9, None, None, "enc")]
    assert decoded[0].attributes == {"n": 1, "xs": [1.5, 2.5]}


def test_protobufs_own_json_mapping_reads_the_same(sdk_records):
    """base64 ids, string int64s and enum names: what `MessageToJson` writes without our hex ids."""
    text = MessageToJson(encode_logs(sdk_records), indent=None)
    assert "SEVERITY_NUMBER_WARN" in text
    decoded = decode_request(text)
    assert [(r.message, r.severity_number, r.trace_id, r.span_id, r.time_unix_nano) for r in decoded] == [
        ("in a span", 13, TRACE_HEX, SPAN_HEX, 10), ("no span", 9, None, None, 20)]


@pytest.mark.parametrize(("value", "size", "expected"), [
    (TRACE_HEX.upper(), 16, TRACE_HEX),
    (base64.b64encode(bytes.fromhex(TRACE_HEX)).decode(), 16, TRACE_HEX),
    (SPAN_HEX, 8, SPAN_HEX),
    ("0" * 32, 16, None),
    (base64.b64encode(bytes(16)).decode(), 16, None),
    ("abc", 16, None),
    (TRACE_HEX, 8, None),
    ("", 16, None),
    (None, 16, None),
    (12345, 16, None),
])
def test_ids(value, size, expected):
    assert parse_id(value, size) == expected


@pytest.mark.parametrize(("fields", "number", "level"), [
    ({"severityNumber": 17}, 17, "ERROR"),
    ({"severityNumber": "21"}, 21, "FATAL"),
    ({"severityNumber": "SEVERITY_NUMBER_INFO2"}, 10, "INFO"),
    ({"severityNumber": 6, "severityText": "debug2"}, 6, "debug2"),  # a writer's own text is kept
    ({"severityText": "TRACE"}, 1, "TRACE"),
    ({"severityText": "warning"}, 13, "warning"),
    ({"severityText": "CRITICAL"}, 21, "CRITICAL"),
    ({"severityText": "loud"}, 0, "loud"),
    ({}, 0, "UNSPECIFIED"),
])
def test_severity(fields, number, level):
    (record,) = decode_request(line({"timeUnixNano": "1", **fields}))
    assert (record.severity_number, record.level) == (number, level)


def test_values_bodies_and_resources():
    (record,) = decode_request(line({
        "observedTimeUnixNano": "7",
        "body": {"kvlistValue": {"values": [{"key": "a", "value": {"intValue": "3"}}]}},
        "attributes": [
            {"key": "s", "value": {"stringValue": "x"}},
            {"key": "b", "value": {"boolValue": True}},
            {"key": "d", "value": {"doubleValue": 0.5}},
            {"key": "nan", "value": {"doubleValue": "NaN"}},
            {"key": "raw", "value": {"bytesValue": "AAE="}},
            {"key": "list", "value": {"arrayValue": {"values": [{"intValue": 1}, {"stringValue": "two"}]}}},
            {"key": "empty", "value": {}},
        ],
    }, resource=[], scope={}))
    assert record.time_unix_nano == 7
    assert record.message == '{"a": 3}'  # a structured body as JSON text
    assert record.attributes == {"s": "x", "b": True, "d": 0.5, "nan": "NaN", "raw": "AAE=", "list": [1, "two"],
                                 "empty": None}
    assert (record.service, record.logger, dict(record.resource)) == ("unknown_service", "", {})
    assert any_value({"arrayValue": {}}) == []


def test_records_of_one_resource_share_its_attributes():
    first, second = decode_request(line({"body": {"stringValue": "1"}}, {"body": {"stringValue": "2"}}))
    assert first.resource is second.resource and first.service == "api"


@pytest.mark.parametrize("text", [
    "[1, 2]",
    '{"hello": "world"}',
    '{"resourceLogs": 3}',
    '{"resourceLogs": [{"scopeLogs": 7}]}',
    '{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"timeUnixNano": "soon"}]}]}]}',
    '{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"timeUnixNano": true}]}]}]}',
    '{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {"doubleValue": "many"}}]}]}]}',
])
def test_json_that_is_not_an_otlp_logs_request_raises(text):
    with pytest.raises(NotOtlpError):
        decode_request(text)


def test_garbage_raises_a_value_error_and_other_signals_hold_no_logs():
    with pytest.raises(ValueError):
        decode_request("not json")
    with pytest.raises(ValueError):
        decode_request(b"\xff\xfe")
    assert decode_request('{"resourceSpans": []}') == []
    assert decode_request('{"resourceMetrics": [{}]}') == []
