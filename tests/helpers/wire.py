"""What a Collector would receive: an exporter that encodes each batch to OTLP protobuf at export
time (an in-memory exporter keeps live records and hides ordering bugs), and its decoding."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult


class SerialisingExporter(LogRecordExporter):
    def __init__(self) -> None:
        self.payloads: list[bytes] = []

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:  # type: ignore[override]
        self.payloads.append(encode_logs(batch).SerializeToString())
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    def decoded(self) -> list[tuple[Any, Any, bytes]]:
        """(scope, log record, the payload it came in) for every exported record, in order."""
        out = []
        for payload in self.payloads:
            for resource_logs in ExportLogsServiceRequest.FromString(payload).resource_logs:
                for scope_logs in resource_logs.scope_logs:
                    out.extend((scope_logs.scope, record, payload) for record in scope_logs.log_records)
        return out


def attributes(record: Any) -> dict[str, Any]:
    """A decoded record's attributes as plain values."""
    return {kv.key: getattr(kv.value, kv.value.WhichOneof("value") or "string_value") for kv in record.attributes}
