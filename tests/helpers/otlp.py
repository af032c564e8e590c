"""A loopback OTLP/HTTP receiver for tests: what a Collector's otlp receiver would get, decoded. With `forward`,
a tap in front of a real Collector: it keeps what each service sent and passes every request on unchanged, so a
test can compare what the services sent with what the Collector wrote."""

from __future__ import annotations

import gzip
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.helpers.support import LoopbackHTTP

_DECODERS: dict[str, tuple[type[Any], type[Any]]] = {
    "/v1/logs": (ExportLogsServiceRequest, ExportLogsServiceResponse),
    "/v1/traces": (ExportTraceServiceRequest, ExportTraceServiceResponse),
    "/v1/metrics": (ExportMetricsServiceRequest, ExportMetricsServiceResponse),
}


@dataclass
class Received:
    path: str
    content_type: str
    content_encoding: str
    message: Any


class OtlpReceiver(LoopbackHTTP):
    """Accepts OTLP/HTTP protobuf on `/v1/logs`, `/v1/traces` and `/v1/metrics`, like a Collector's otlp receiver;
    with `forward` (a Collector's OTLP/HTTP endpoint), every request also goes on to it, and the Collector's answer
    is the answer: a request it refused is not counted as received."""

    def __init__(self, forward: str | None = None) -> None:
        self.requests: list[Received] = []
        self.refused: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                answer = self._forward(forward, raw) if forward is not None else None
                if answer is not None and answer[0] != 200:
                    receiver.refused.append(self.path)
                    self._reply(*answer)
                    return
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                decoders = _DECODERS.get(self.path)
                if decoders is None:
                    if answer is None:
                        receiver.refused.append(self.path)
                    self._reply(*(answer or (404, b"", "")))
                    return
                request_type, response_type = decoders
                receiver.requests.append(Received(self.path, self.headers.get("Content-Type", ""), encoding,
                                                  request_type.FromString(body)))
                self._reply(*(answer or (200, response_type().SerializeToString(), "application/x-protobuf")))

            def _forward(self, target: str, raw: bytes) -> tuple[int, bytes, str]:
                """The request passed on as it came; the Collector's answer (503 when it cannot be reached)."""
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "content-encoding")}
                request = urllib.request.Request(target + self.path, data=raw, headers=headers, method="POST")
                try:
                    with urllib.request.urlopen(request, timeout=10) as answer:
                        return answer.status, answer.read(), answer.headers.get("Content-Type", "")
                except urllib.error.HTTPError as error:
                    return error.code, error.read(), error.headers.get("Content-Type", "")
                except OSError:
                    return 503, b"", ""

            def _reply(self, status: int, reply: bytes, kind: str) -> None:
                self.send_response(status)
                if kind:
                    self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        super().__init__(Handler)

    def of(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    def log_records(self) -> list[dict[str, Any]]:
        out = []
        for received in self.of("/v1/logs"):
            for resource_logs in received.message.resource_logs:
                resource = _attributes(resource_logs.resource.attributes)
                for scope_logs in resource_logs.scope_logs:
                    for record in scope_logs.log_records:
                        out.append({
                            "resource": resource, "scope": scope_logs.scope.name,
                            "body": _value(record.body), "severity_number": record.severity_number,
                            "severity_text": record.severity_text, "attrs": _attributes(record.attributes),
                            "trace_id": record.trace_id.hex(), "span_id": record.span_id.hex(),
                            "time_unix_nano": record.time_unix_nano,
                        })
        return out

    def spans(self) -> list[dict[str, Any]]:
        out = []
        for received in self.of("/v1/traces"):
            for resource_spans in received.message.resource_spans:
                resource = _attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        out.append({
                            "resource": resource, "scope": scope_spans.scope.name, "name": span.name,
                            "trace_id": span.trace_id.hex(), "span_id": span.span_id.hex(),
                            "parent_span_id": span.parent_span_id.hex(), "flags": span.flags,
                            "attrs": _attributes(span.attributes),
                            "links": [{"trace_id": link.trace_id.hex(), "span_id": link.span_id.hex(),
                                       "trace_state": link.trace_state, "flags": link.flags,
                                       "attrs": _attributes(link.attributes)}
                                      for link in span.links],
                        })
        return out


    def metric_points(self) -> list[dict[str, Any]]:
        """Every number data point received (sums and gauges), decoded straight from the protobuf."""
        out = []
        for received in self.of("/v1/metrics"):
            for resource_metrics in received.message.resource_metrics:
                resource = _attributes(resource_metrics.resource.attributes)
                for scope_metrics in resource_metrics.scope_metrics:
                    for metric in scope_metrics.metrics:
                        kind = metric.WhichOneof("data")
                        if kind not in ("sum", "gauge"):
                            continue
                        for point in getattr(metric, kind).data_points:
                            out.append({
                                "resource": resource, "scope": scope_metrics.scope.name, "name": metric.name,
                                "unit": metric.unit, "kind": kind, "attrs": _attributes(point.attributes),
                                "value": getattr(point, point.WhichOneof("value")),
                            })
        return out


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def _attributes(attributes: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in attributes}


class Answering(LoopbackHTTP):
    """A loopback HTTP server that answers every POST with `status` and counts them."""

    def __init__(self, status: int) -> None:
        answering = self
        self.posts = 0

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                answering.posts += 1
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        super().__init__(Handler)
        self.url += "/v1/logs"
