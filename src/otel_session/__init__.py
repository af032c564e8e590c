"""Session-scoped OpenTelemetry logs: session ids on every record, a level per session, and the
records of a run captured so they can be shown to its user. Importing this changes nothing in the
process; `configure()` does."""

from otel_session._buffer import BufferSettings, BufferStats
from otel_session._capture import capture
from otel_session._capture_store import Capture
from otel_session._configure import Telemetry, configure, configured, reset
from otel_session._export_guard import ExportStats
from otel_session._file_exporter import OtlpJsonFileExporter, OtlpJsonFileMetricExporter, OtlpJsonFileSpanExporter
from otel_session._flush import flush, flush_buffer
from otel_session._levels import parse_level
from otel_session._loguru_bridge import install_loguru_bridge
from otel_session._processor import SessionLogProcessor
from otel_session._propagation import (
    extract_env,
    extract_headers,
    extract_payload,
    inject_env,
    inject_headers,
    inject_payload,
)
from otel_session._record import Record
from otel_session._redaction import SECRET_PATTERNS, add_redaction
from otel_session._session import SessionInfo, attach, current, session
from otel_session._validation import id_error, text_error

__all__ = [
    "SECRET_PATTERNS",
    "BufferSettings",
    "BufferStats",
    "Capture",
    "ExportStats",
    "OtlpJsonFileExporter",
    "OtlpJsonFileMetricExporter",
    "OtlpJsonFileSpanExporter",
    "Record",
    "SessionInfo",
    "SessionLogProcessor",
    "Telemetry",
    "add_redaction",
    "attach",
    "capture",
    "configure",
    "configured",
    "current",
    "extract_env",
    "extract_headers",
    "extract_payload",
    "flush",
    "flush_buffer",
    "id_error",
    "inject_env",
    "inject_headers",
    "inject_payload",
    "install_loguru_bridge",
    "parse_level",
    "reset",
    "session",
    "text_error",
]
