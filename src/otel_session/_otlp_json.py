"""OTLP JSON for logs: one `ExportLogsServiceRequest` a line, protobuf's JSON mapping with hex ids; what our
file exporter and a Collector's `file` exporter write (docs/internals.md).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import math
import re
from collections.abc import Sequence
from typing import Any

from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.sdk._logs import ReadableLogRecord

from otel_session._keys import SERVICE_NAME
from otel_session._levels import parse_level
from otel_session._record import Record
from otel_session._severity import BANDS, parse_severity, severity_of, severity_text

UNKNOWN_SERVICE = "unknown_service"
# OTLP requests of other signals, which a Collector may write into the same file: not log lines, not errors.
_OTHER_SIGNALS = ("resourceSpans", "resourceMetrics", "resourceProfiles")
_HEX = re.compile(r"[0-9a-fA-F]+")


class NotOtlpError(ValueError):
    """A line that is JSON but not an OTLP `ExportLogsServiceRequest`."""


# --- encoding --------------------------------------------------------------------------------------


def _hex_ids(request: dict[str, Any]) -> dict[str, Any]:
    for resource_logs in request.get("resourceLogs", ()):
        for scope_logs in resource_logs.get("scopeLogs", ()):
            for record in scope_logs.get("logRecords", ()):
                for key in ("traceId", "spanId"):
                    if key in record:
                        record[key] = base64.b64decode(record[key]).hex()
    return request


def encode_json_line(batch: Sequence[ReadableLogRecord]) -> str:
    """One OTLP `ExportLogsServiceRequest` as a JSON line, newline included."""
    message = MessageToDict(encode_logs(batch), use_integers_for_enums=True)
    return json.dumps(_hex_ids(message), separators=(",", ":"), ensure_ascii=False) + "\n"


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


def decode_request(line: str | bytes) -> list[Record]:
    """The log records of one OTLP-JSON line, in file order. Raises `ValueError` (a `json` error,
    or `NotOtlpError`) for a line that is not an OTLP request; an OTLP request of another signal
    (spans, metrics) holds no log records and gives []."""
    request = json.loads(line)
    if not isinstance(request, dict):
        raise NotOtlpError("not a JSON object")
    if "resourceLogs" not in request:
        if any(key in request for key in _OTHER_SIGNALS):
            return []
        raise NotOtlpError("no resourceLogs")
    records: list[Record] = []
    for resource_logs in _list(request["resourceLogs"]):
        resource_logs = _dict(resource_logs)
        resource = key_values(_dict(resource_logs.get("resource")).get("attributes"))
        service = resource.get(SERVICE_NAME)
        service = service if isinstance(service, str) and service else UNKNOWN_SERVICE
        for scope_logs in _list(resource_logs.get("scopeLogs")):
            scope_logs = _dict(scope_logs)
            scope_name = _dict(scope_logs.get("scope")).get("name")
            logger = scope_name if isinstance(scope_name, str) else ""
            for record in _list(scope_logs.get("logRecords")):
                record = _dict(record)
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


__all__ = [
    "NotOtlpError",
    "any_value",
    "decode_request",
    "encode_json_line",
    "key_values",
    "parse_id",
]
