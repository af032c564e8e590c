"""Logs as OTLP JSON lines in a local directory: the format an OpenTelemetry Collector's `file`
exporter writes, so one reader serves both.

Encoding goes through `opentelemetry-exporter-otlp-proto-common` (the OTLP exporter's own
encoder) and protobuf's JSON mapping; only the ids differ from that mapping, since OTLP JSON
writes trace and span ids as hex, not base64. Each process appends to its own file
(`<service>.<pid>.jsonl`), one whole line per `write`, so several processes of one service never
interleave.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

from otel_session._diagnostics import internal

DEFAULT_DIR = "./.otel-session/logs"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def log_dir(env: dict[str, str] | None = None) -> Path:
    return Path((env if env is not None else os.environ).get("OTEL_SESSION_LOG_DIR") or DEFAULT_DIR)


def _hex_ids(request: dict[str, Any]) -> dict[str, Any]:
    for resource_logs in request.get("resourceLogs", ()):
        for scope_logs in resource_logs.get("scopeLogs", ()):
            for record in scope_logs.get("logRecords", ()):
                for key in ("traceId", "spanId"):
                    if key in record:
                        record[key] = base64.b64decode(record[key]).hex()
    return request


def encode_json_line(batch: Sequence[ReadableLogRecord]) -> str:
    """One OTLP `ExportLogsServiceRequest` as a JSON line."""
    message = MessageToDict(encode_logs(batch), use_integers_for_enums=True)
    return json.dumps(_hex_ids(message), separators=(",", ":"), ensure_ascii=False) + "\n"


class OtlpJsonFileExporter(LogRecordExporter):
    def __init__(self, directory: str | os.PathLike[str] | None = None, service_name: str = "unknown_service") -> None:
        self.directory = Path(directory) if directory is not None else log_dir()
        self.service_name = service_name
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._fd_pid = 0
        self._shutdown = False
        self.failures = 0

    @property
    def path(self) -> Path:
        name = _UNSAFE.sub("_", self.service_name) or "unknown_service"
        return self.directory / f"{name}.{os.getpid()}.jsonl"

    def _open(self) -> int:
        pid = os.getpid()
        if self._fd is None or self._fd_pid != pid:  # a forked child writes its own file
            self.directory.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._fd_pid = pid
        return self._fd

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:  # type: ignore[override]
        if self._shutdown:
            return LogRecordExportResult.FAILURE
        if not batch:
            return LogRecordExportResult.SUCCESS
        try:
            data = encode_json_line(batch).encode("utf-8")
            with self._lock:
                fd = self._open()
                written = 0
                while written < len(data):
                    written += os.write(fd, data[written:])
        except Exception as exc:
            self.failures += 1
            if self.failures == 1 or self.failures % 100 == 0:
                internal.error("otel_session: could not write %d log records to %s: %s (%d failed exports)",
                               len(batch), self.path, exc, self.failures)
            return LogRecordExportResult.FAILURE
        return LogRecordExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    def shutdown(self) -> None:
        with self._lock:
            self._shutdown = True
            if self._fd is not None and self._fd_pid == os.getpid():
                os.close(self._fd)
            self._fd = None
