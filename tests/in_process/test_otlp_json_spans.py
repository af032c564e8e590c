"""The OTLP-JSON traces line format: what the encoder writes from real SDK spans, and what the decoder
accepts from any writer (the SDK encoder, a Collector, protobuf's own JSON mapping) or refuses."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from google.protobuf.json_format import MessageToJson
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from otel_session._otlp_json import (
    LOGS,
    OTHER,
    TRACES,
    NotOtlpError,
    decode_line,
    decode_request,
    decode_spans,
    encode_spans_json_line,
)
from otel_session.log_reader import Span

TRACE_HEX = "0af7651916cd43dd8448eb211c80319c"
SPAN_HEX = "00f067aa0ba902b7"
PARENT_HEX = "b7ad6b7169203331"


@pytest.fixture
def sdk_spans():
    """Real SDK spans: a server root, a child with an event, a link, attributes and an error status."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "enc-spans", "deployment": "test"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests.spans")
    with tracer.start_as_current_span("join", kind=SpanKind.SERVER, attributes={"http.route": "/join"}) as root:  # noqa: SIM117 - links root
        with tracer.start_as_current_span("dispatch", kind=SpanKind.CLIENT,
                                          links=[Link(root.get_span_context(), {"link.why": "page"})]) as child:
            child.add_event("queued", {"queue.depth": 3, "tags": ["a", "b"]})
            child.set_attribute("retry", 1.5)
            child.set_status(Status(StatusCode.ERROR, "room busy"))
    yield exporter.get_finished_spans()
    provider.shutdown()


def _expected(spans: Any) -> list[tuple[Any, ...]]:
    out = []
    for span in spans:
        ctx = span.get_span_context()
        out.append((format(ctx.trace_id, "032x"), format(ctx.span_id, "016x"),
                    format(span.parent.span_id, "016x") if span.parent else None, span.name,
                    span.start_time, span.end_time))
    return out


def _shape(spans: list[Span]) -> list[tuple[Any, ...]]:
    return [(s.trace_id, s.span_id, s.parent_span_id, s.name, s.start_unix_nano, s.end_unix_nano) for s in spans]


def test_the_encoder_writes_one_traces_line_with_hex_ids_that_decodes_to_the_spans(sdk_spans):
    text = encode_spans_json_line(sdk_spans)
    assert text.endswith("\n") and text.count("\n") == 1
    raw = json.loads(text)["resourceSpans"][0]["scopeSpans"][0]["spans"]
    child = next(s for s in raw if s["name"] == "dispatch")
    assert child["traceId"] == format(sdk_spans[0].context.trace_id, "032x")
    assert child["parentSpanId"] == format(sdk_spans[1].context.span_id, "016x")
    assert child["links"][0]["spanId"] == child["parentSpanId"]  # hex in links too
    assert child["kind"] == 3 and child["status"]["code"] == 2  # numbers, not enum names

    spans = decode_spans(text)
    assert _shape(spans) == _expected(sdk_spans)
    dispatch, join = spans
    assert (join.kind_name, join.status, join.parent_span_id) == ("SERVER", "UNSET", None)
    assert (dispatch.kind, dispatch.kind_name) == (3, "CLIENT")
    assert (dispatch.status_code, dispatch.status, dispatch.status_message) == (2, "ERROR", "room busy")
    assert dispatch.attributes == {"retry": 1.5} and join.attributes == {"http.route": "/join"}
    assert [(e.name, e.attributes) for e in dispatch.events] == [("queued", {"queue.depth": 3, "tags": ["a", "b"]})]
    assert dispatch.events[0].time_unix_nano == sdk_spans[0].events[0].timestamp
    assert [(link.trace_id, link.span_id, dict(link.attributes)) for link in dispatch.links] == [
        (join.trace_id, join.span_id, {"link.why": "page"})]
    assert dispatch.service == "enc-spans" and dispatch.resource["deployment"] == "test"
    assert dispatch.scope == "tests.spans"
    assert dispatch.duration_ns == dispatch.end_unix_nano - dispatch.start_unix_nano > 0
    as_dict = dispatch.as_dict()
    assert json.loads(json.dumps(as_dict)) == as_dict
    assert (as_dict["kind"], as_dict["status"], as_dict["links"][0]["span_id"]) == ("CLIENT", "ERROR", join.span_id)


def test_protobufs_own_json_mapping_reads_the_same(sdk_spans):
    """Base64 ids, 64-bit numbers as strings, enum names: what MessageToJson writes."""
    text = MessageToJson(encode_spans(sdk_spans))
    raw = json.loads(text)["resourceSpans"][0]["scopeSpans"][0]["spans"]
    child = next(s for s in raw if s["name"] == "dispatch")
    assert len(child["traceId"]) == 24 and child["kind"] == "SPAN_KIND_CLIENT"  # base64, an enum name
    assert child["status"]["code"] == "STATUS_CODE_ERROR" and isinstance(child["startTimeUnixNano"], str)
    assert decode_spans(text) == decode_spans(encode_spans_json_line(sdk_spans))


def _line(*spans: dict[str, Any]) -> str:
    return json.dumps({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "api"}}]},
        "scopeSpans": [{"scope": {"name": "hand"}, "spans": list(spans)}],
    }]})


GOOD: dict[str, Any] = {"traceId": TRACE_HEX, "spanId": SPAN_HEX, "parentSpanId": PARENT_HEX, "name": "work",
                        "kind": "2", "startTimeUnixNano": "100", "endTimeUnixNano": 250,
                        "status": {"code": "1"},
                        "events": [{"name": "e", "timeUnixNano": "120"}],
                        "links": [{"traceId": TRACE_HEX.upper(), "spanId": PARENT_HEX}]}


def test_numbers_as_strings_upper_case_hex_and_missing_optional_fields_are_accepted():
    (span,) = decode_spans(_line(GOOD))
    assert (span.kind, span.start_unix_nano, span.end_unix_nano, span.status) == (2, 100, 250, "OK")
    assert span.events[0].time_unix_nano == 120 and span.links[0].trace_id == TRACE_HEX
    (bare,) = decode_spans(_line({"traceId": TRACE_HEX, "spanId": SPAN_HEX}))
    assert bare == Span(TRACE_HEX, SPAN_HEX, None, "", 0, 0, 0, service="api",
                        resource={"service.name": "api"}, scope="hand")
    assert decode_spans(json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [GOOD]}]}]}))[0].service == (
        "unknown_service")
    assert decode_spans(_line({**GOOD, "parentSpanId": ""}))[0].parent_span_id is None  # a root span


def _broken(path: tuple[Any, ...], value: Any) -> str:
    span = copy.deepcopy(GOOD)
    target = span
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return _line(span)


@pytest.mark.parametrize("text", [
    "[]", '"resourceSpans"', "{}", '{"spans": []}', '{"resourceSpans": {}}', '{"resourceSpans": [7]}',
    '{"resourceSpans": [{"scopeSpans": [{"spans": 3}]}]}', '{"resourceSpans": [{"scopeSpans": [{"spans": ["x"]}]}]}',
    _broken(("traceId",), "zz"), _broken(("traceId",), "0" * 32), _broken(("spanId",), None),
    _broken(("spanId",), TRACE_HEX), _broken(("kind",), "SPAN_KIND_SIDEWAYS"), _broken(("kind",), -1),
    _broken(("startTimeUnixNano",), "soon"), _broken(("status",), "ok"), _broken(("status", "code"), "fine"),
    _broken(("events",), {"name": "e"}), _broken(("events", 0, "timeUnixNano"), [1]),
    _broken(("links", 0, "spanId"), "short"), _broken(("links",), [None, 3]),
    _broken(("attributes",), [{"key": "k", "value": {"doubleValue": "many"}}]),
])
def test_json_that_is_not_an_otlp_traces_request_raises(text):
    with pytest.raises(NotOtlpError):
        decode_spans(text)
    with pytest.raises(NotOtlpError):
        decode_line(text)


def test_garbage_raises_a_value_error_and_each_line_says_what_it_holds(sdk_spans):
    for garbage in ("", "{", "not json", b"\xff\xfe"):
        with pytest.raises(ValueError):
            decode_spans(garbage)
    logs = '{"resourceLogs": []}'
    assert decode_spans(logs) == [] and decode_spans('{"resourceMetrics": []}') == []
    traces = encode_spans_json_line(sdk_spans)
    assert decode_request(traces) == []  # a span line is not a log line, and not an error either
    assert decode_line(traces) == (TRACES, [], decode_spans(traces))
    assert decode_line(traces, spans=False) == (TRACES, [], [])  # a reader of logs skips spans undecoded
    assert decode_line(logs) == (LOGS, [], [])
    assert decode_line('{"resourceProfiles": []}') == (OTHER, [], [])
