"""OTLP JSON for logs, traces and metrics: one `ExportLogsServiceRequest` (`ExportTraceServiceRequest`,
`ExportMetricsServiceRequest`) a line, protobuf's JSON mapping with hex ids; what our file exporters and a
Collector's `file` exporter write (docs/internals.md).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import math
import re
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk.metrics.export import MetricsData
from opentelemetry.sdk.trace import ReadableSpan

from otel_session._keys import SERVICE_NAME
from otel_session._levels import parse_level
from otel_session._metric import KIND_FIELDS, TEMPORALITY_ENUM_NAMES, MetricPoint
from otel_session._record import Record
from otel_session._severity import BANDS, parse_severity, severity_of, severity_text
from otel_session._span import KIND_ENUM_NAMES, STATUS_ENUM_NAMES, Span, SpanEvent, SpanLink

UNKNOWN_SERVICE = "unknown_service"
LOGS, TRACES, OTHER = "logs", "traces", "other"  # what a line holds (`line_kind`)
# OTLP requests of other signals, which a Collector may write into the same file: not log lines, not errors.
_SIGNALS = {"resourceLogs": LOGS, "resourceSpans": TRACES, "resourceMetrics": OTHER, "resourceProfiles": OTHER}
_OTHER_SIGNALS = ("resourceSpans", "resourceMetrics", "resourceProfiles")
_HEX = re.compile(r"[0-9a-fA-F]+")


class NotOtlpError(ValueError):
    """A line that is JSON but not the OTLP request asked for (`ExportLogsServiceRequest`, or
    `ExportTraceServiceRequest` for `decode_spans`)."""


# --- encoding --------------------------------------------------------------------------------------


def _hex(item: dict[str, Any], keys: tuple[str, ...] = ("traceId", "spanId")) -> None:
    for key in keys:
        if key in item:
            item[key] = base64.b64decode(item[key]).hex()


def _hex_ids(request: dict[str, Any]) -> dict[str, Any]:
    for resource_logs in request.get("resourceLogs", ()):
        for scope_logs in resource_logs.get("scopeLogs", ()):
            for record in scope_logs.get("logRecords", ()):
                _hex(record)
    for resource_spans in request.get("resourceSpans", ()):
        for scope_spans in resource_spans.get("scopeSpans", ()):
            for span in scope_spans.get("spans", ()):
                _hex(span, ("traceId", "spanId", "parentSpanId"))
                for link in span.get("links", ()):
                    _hex(link)
    for resource_metrics in request.get("resourceMetrics", ()):
        for scope_metrics in resource_metrics.get("scopeMetrics", ()):
            for metric in scope_metrics.get("metrics", ()):
                for field in KIND_FIELDS:
                    for point in metric.get(field, {}).get("dataPoints", ()):
                        for exemplar in point.get("exemplars", ()):
                            _hex(exemplar)
    return request


def _line(message: Any) -> str:
    request = MessageToDict(message, use_integers_for_enums=True)
    return json.dumps(_hex_ids(request), separators=(",", ":"), ensure_ascii=False) + "\n"


def encode_json_line(batch: Sequence[ReadableLogRecord]) -> str:
    """One OTLP `ExportLogsServiceRequest` as a JSON line, newline included."""
    return _line(encode_logs(batch))


def encode_spans_json_line(batch: Sequence[ReadableSpan]) -> str:
    """One OTLP `ExportTraceServiceRequest` as a JSON line, newline included."""
    return _line(encode_spans(batch))


def encode_metrics_json_line(data: MetricsData) -> str:
    """One OTLP `ExportMetricsServiceRequest` as a JSON line, newline included."""
    return _line(encode_metrics(data))


# --- decoding --------------------------------------------------------------------------------------


def _int(value: object) -> int:
    if isinstance(value, bool):
        raise NotOtlpError(f"expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            raise NotOtlpError(f"expected an integer, got {value!r}") from None
    if value is None:
        return 0
    raise NotOtlpError(f"expected an integer, got {value!r}")


def _list(value: object) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise NotOtlpError(f"expected a list, got {type(value).__name__}")
    return value


def _dict(value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise NotOtlpError(f"expected an object, got {type(value).__name__}")
    return value


def any_value(value: object) -> Any:
    """An OTLP `AnyValue` (JSON mapping) as a plain JSON-friendly Python value."""
    value = _dict(value)
    if "stringValue" in value:
        return str(value["stringValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "intValue" in value:
        return _int(value["intValue"])
    if "doubleValue" in value:
        raw = value["doubleValue"]
        try:
            number = float(raw)
        except (TypeError, ValueError):
            raise NotOtlpError(f"bad doubleValue {raw!r}") from None
        return number if math.isfinite(number) else str(raw)  # "NaN", "Infinity" stay text: JSON has no such number
    if "arrayValue" in value:
        return [any_value(v) for v in _list(_dict(value["arrayValue"]).get("values"))]
    if "kvlistValue" in value:
        return key_values(_dict(value["kvlistValue"]).get("values"))
    if "bytesValue" in value:
        return str(value["bytesValue"])  # base64, as the JSON mapping writes it
    return None


def key_values(items: object) -> dict[str, Any]:
    """A list of OTLP `KeyValue`s as a dict."""
    out: dict[str, Any] = {}
    for item in _list(items):
        item = _dict(item)
        out[str(item.get("key", ""))] = any_value(item.get("value"))
    return out


def parse_id(value: object, size: int) -> str | None:
    """A trace (16 bytes) or span (8 bytes) id as lowercase hex: hex (OTLP JSON) or base64
    (protobuf's own JSON mapping) in; None for all zeros or anything else."""
    if not value or not isinstance(value, str):
        return None
    if len(value) == size * 2 and _HEX.fullmatch(value):
        hex_id = value.lower()
    else:
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return None
        if len(raw) != size:
            return None
        hex_id = raw.hex()
    return None if hex_id.strip("0") == "" else hex_id


def _text_severity(text: str) -> int:
    """The severity number of a record that has only a level name (OTel's or the stdlib's); 0 if unknown."""
    name = text.strip().upper()
    if name in BANDS:
        return BANDS.index(name) * 4 + 1
    with contextlib.suppress(ValueError):
        return severity_of(parse_level(name))
    return 0


def _severity(record: dict[str, Any]) -> tuple[int, str]:
    raw = record.get("severityNumber", 0)
    number = parse_severity(raw) if isinstance(raw, str) else _int(raw)
    text = record.get("severityText")
    text = text if isinstance(text, str) and text else ""
    if not number and text:
        number = _text_severity(text)
    return number, text or severity_text(number)


def _message(body: object) -> str:
    value = any_value(body)
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False)


def _service(resource: dict[str, Any]) -> str:
    service = resource.get(SERVICE_NAME)
    return service if isinstance(service, str) and service else UNKNOWN_SERVICE


def _request(line: str | bytes) -> dict[str, Any]:
    request = json.loads(line)
    if not isinstance(request, dict):
        raise NotOtlpError("not a JSON object")
    return request


def request_kind(request: dict[str, Any]) -> str | None:
    """`LOGS`, `TRACES` or `OTHER` (metrics, profiles) for a decoded OTLP request; None if it is none of them."""
    for key, kind in _SIGNALS.items():
        if key in request:
            return kind
    return None


def _items(request: dict[str, Any], signal: str, scopes: str, items: str
           ) -> Iterator[tuple[dict[str, Any], str, dict[str, Any], str]]:
    """Each item of a request (a log record, a span) with its resource, service and scope name."""
    for resource_items in _list(request[signal]):
        resource_items = _dict(resource_items)
        resource = key_values(_dict(resource_items.get("resource")).get("attributes"))
        service = _service(resource)
        for scope_items in _list(resource_items.get(scopes)):
            scope_items = _dict(scope_items)
            scope_name = _dict(scope_items.get("scope")).get("name")
            scope = scope_name if isinstance(scope_name, str) else ""
            for item in _list(scope_items.get(items)):
                yield _dict(item), service, resource, scope


def _records(request: dict[str, Any]) -> list[Record]:
    records: list[Record] = []
    for record, service, resource, logger in _items(request, "resourceLogs", "scopeLogs", "logRecords"):
        number, level = _severity(record)
        records.append(Record(
            time_unix_nano=_int(record.get("timeUnixNano")) or _int(record.get("observedTimeUnixNano")),
            severity_number=number,
            level=level,
            logger=logger,
            message=_message(record.get("body")),
            attributes=key_values(record.get("attributes")),
            trace_id=parse_id(record.get("traceId"), 16),
            span_id=parse_id(record.get("spanId"), 8),
            service=service,
            resource=resource,
        ))
    return records


def decode_request(line: str | bytes) -> list[Record]:
    """The log records of one OTLP-JSON line, in file order. Raises `ValueError` (a `json` error,
    or `NotOtlpError`) for a line that is not an OTLP request; an OTLP request of another signal
    (spans, metrics) holds no log records and gives []."""
    request = _request(line)
    if "resourceLogs" not in request:
        if any(key in request for key in _OTHER_SIGNALS):
            return []
        raise NotOtlpError("no resourceLogs")
    return _records(request)


def _enum(value: object, names: dict[str, int], what: str) -> int:
    if isinstance(value, str) and value in names:
        return names[value]
    number = _int(value)
    if number < 0:
        raise NotOtlpError(f"bad {what} {value!r}")
    return number


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _required_id(value: object, size: int, what: str) -> str:
    found = parse_id(value, size)
    if found is None:
        raise NotOtlpError(f"bad {what} {value!r}")
    return found


def _span(span: dict[str, Any], service: str, resource: dict[str, Any], scope: str) -> Span:
    status = _dict(span.get("status"))
    return Span(
        trace_id=_required_id(span.get("traceId"), 16, "traceId"),
        span_id=_required_id(span.get("spanId"), 8, "spanId"),
        parent_span_id=parse_id(span.get("parentSpanId"), 8),
        name=_text(span.get("name")),
        kind=_enum(span.get("kind"), KIND_ENUM_NAMES, "span kind"),
        start_unix_nano=_int(span.get("startTimeUnixNano")),
        end_unix_nano=_int(span.get("endTimeUnixNano")),
        status_code=_enum(status.get("code"), STATUS_ENUM_NAMES, "status code"),
        status_message=_text(status.get("message")),
        attributes=key_values(span.get("attributes")),
        events=tuple(
            SpanEvent(_text(event.get("name")), _int(event.get("timeUnixNano")), key_values(event.get("attributes")))
            for event in map(_dict, _list(span.get("events")))
        ),
        links=tuple(
            SpanLink(_required_id(link.get("traceId"), 16, "link traceId"),
                     _required_id(link.get("spanId"), 8, "link spanId"), key_values(link.get("attributes")))
            for link in map(_dict, _list(span.get("links")))
        ),
        service=service,
        resource=resource,
        scope=scope,
    )


def _spans(request: dict[str, Any]) -> list[Span]:
    return [_span(span, service, resource, scope)
            for span, service, resource, scope in _items(request, "resourceSpans", "scopeSpans", "spans")]


def decode_spans(line: str | bytes) -> list[Span]:
    """The spans of one OTLP-JSON traces line, in file order. Lenient about what protobuf's JSON mapping
    allows (numbers as strings, enum names, base64 ids), strict about shape: raises `ValueError` (a `json`
    error, or `NotOtlpError`) for a line that is not an OTLP request or a span without valid ids; an OTLP
    request of another signal (logs, metrics) holds no spans and gives []."""
    request = _request(line)
    if "resourceSpans" not in request:
        if request_kind(request) is not None:
            return []
        raise NotOtlpError("no resourceSpans")
    return _spans(request)


def _number(value: object) -> int | float | None:
    """A data point's number: an int (`asInt`, maybe a string) or a float (`asDouble`, maybe "NaN")."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise NotOtlpError(f"expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise NotOtlpError(f"expected a number, got {value!r}") from None
    raise NotOtlpError(f"expected a number, got {value!r}")


def _point(metric: dict[str, Any], kind: str, body: dict[str, Any], point: dict[str, Any], service: str,
           resource: dict[str, Any], scope: str) -> MetricPoint:
    if "asInt" in point:
        value: int | float | None = _int(point["asInt"])
    elif "asDouble" in point:
        value = _number(point["asDouble"])
    else:
        value = _number(point.get("sum"))  # histograms and summaries (absent: 0 in proto3, None here)
    return MetricPoint(
        name=_text(metric.get("name")),
        kind=kind,
        value=value,
        attributes=key_values(point.get("attributes")),
        time_unix_nano=_int(point.get("timeUnixNano")),
        start_time_unix_nano=_int(point.get("startTimeUnixNano")),
        unit=_text(metric.get("unit")),
        monotonic=body.get("isMonotonic") is True,
        temporality=_enum(body.get("aggregationTemporality"), TEMPORALITY_ENUM_NAMES, "aggregation temporality"),
        count=_int(point.get("count")),
        bucket_counts=tuple(_int(n) for n in _list(point.get("bucketCounts"))),
        explicit_bounds=tuple(float(_number(b) or 0) for b in _list(point.get("explicitBounds"))),
        min=None if point.get("min") is None else float(_number(point["min"]) or 0),
        max=None if point.get("max") is None else float(_number(point["max"]) or 0),
        service=service,
        resource=resource,
        scope=scope,
    )


def _metric_points(request: dict[str, Any]) -> list[MetricPoint]:
    points: list[MetricPoint] = []
    for metric, service, resource, scope in _items(request, "resourceMetrics", "scopeMetrics", "metrics"):
        for field, kind in KIND_FIELDS.items():
            if field in metric:
                body = _dict(metric[field])
                points.extend(_point(metric, kind, body, _dict(point), service, resource, scope)
                              for point in _list(body.get("dataPoints")))
    return points


def decode_metrics(line: str | bytes) -> list[MetricPoint]:
    """The data points of one OTLP-JSON metrics line (ours, or a Collector's `metrics.json`), in file order.
    Lenient about what protobuf's JSON mapping allows (numbers as strings, enum names), strict about shape:
    raises `ValueError` (a `json` error, or `NotOtlpError`) for a line that is not an OTLP request; an OTLP
    request of another signal (logs, spans) holds no metrics and gives []."""
    request = _request(line)
    if "resourceMetrics" not in request:
        if request_kind(request) is not None:
            return []
        raise NotOtlpError("no resourceMetrics")
    return _metric_points(request)


class Decoded(NamedTuple):
    """What one line holds: its kind (`LOGS`, `TRACES` or `OTHER`), and its log records or its spans."""

    kind: str
    records: list[Record]
    spans: list[Span]


def decode_line(line: str | bytes, *, spans: bool = True) -> Decoded:
    """One OTLP-JSON line of any signal, parsed once: logs give records, traces give spans (unless `spans`
    is false: a reader of logs only skips them undecoded), metrics and profiles give nothing. Raises
    `ValueError` (a `json` error, or `NotOtlpError`) for anything else."""
    request = _request(line)
    kind = request_kind(request)
    if kind == LOGS:
        return Decoded(LOGS, _records(request), [])
    if kind == TRACES:
        return Decoded(TRACES, [], _spans(request) if spans else [])
    if kind == OTHER:
        return Decoded(OTHER, [], [])
    raise NotOtlpError("not an OTLP logs, traces, metrics or profiles request")


__all__ = [
    "LOGS",
    "OTHER",
    "TRACES",
    "Decoded",
    "NotOtlpError",
    "any_value",
    "decode_line",
    "decode_metrics",
    "decode_request",
    "decode_spans",
    "encode_json_line",
    "encode_metrics_json_line",
    "encode_spans_json_line",
    "key_values",
    "parse_id",
    "request_kind",
]
