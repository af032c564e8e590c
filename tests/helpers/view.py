"""OTLP-JSON lines written by hand for the view's tests: records at chosen times, in chosen sessions."""

from __future__ import annotations

import json
from typing import Any

BASE_NS = 1_796_000_000_000_000_000  # 2026-11-29T...Z


def _value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": str(value)}


def record(message: str, *, at_ms: float = 0, session: str | None = None, user: str | None = None,
           severity: int = 9, level: str = "INFO", trace: str | None = None, span: str | None = None,
           **attributes: Any) -> dict[str, Any]:
    attrs = dict(attributes)
    if session is not None:
        attrs["session.id"] = session
    if user is not None:
        attrs["user.id"] = user
    out: dict[str, Any] = {
        "timeUnixNano": str(BASE_NS + int(at_ms * 1_000_000)),
        "severityNumber": severity,
        "severityText": level,
        "body": {"stringValue": message},
        "attributes": [{"key": k, "value": _value(v)} for k, v in attrs.items()],
    }
    if trace:
        out["traceId"] = trace
    if span:
        out["spanId"] = span
    return out


def line(*records: dict[str, Any], service: str = "svc", logger: str = "app") -> str:
    """One `ExportLogsServiceRequest` line, newline included."""
    request = {"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeLogs": [{"scope": {"name": logger}, "logRecords": list(records)}],
    }]}
    return json.dumps(request, separators=(",", ":")) + "\n"


def span(name: str, trace: str, span_id: str, *, parent: str | None = None, start_ms: float = 0,
         end_ms: float = 1, links: tuple[tuple[str, str], ...] = (), error: bool = False,
         **attributes: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "traceId": trace, "spanId": span_id, "name": name, "kind": 2,
        "startTimeUnixNano": str(BASE_NS + int(start_ms * 1_000_000)),
        "endTimeUnixNano": str(BASE_NS + int(end_ms * 1_000_000)),
        "attributes": [{"key": k, "value": _value(v)} for k, v in attributes.items()],
        "links": [{"traceId": t, "spanId": s} for t, s in links],
        "status": {"code": 2, "message": "failed"} if error else {},
    }
    if parent:
        out["parentSpanId"] = parent
    return out


def span_line(*spans: dict[str, Any], service: str = "svc") -> str:
    """One `ExportTraceServiceRequest` line, newline included."""
    request = {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeSpans": [{"scope": {"name": service}, "spans": list(spans)}],
    }]}
    return json.dumps(request, separators=(",", ":")) + "\n"
