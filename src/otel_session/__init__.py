"""Session-scoped OpenTelemetry logs: session ids on every record, a level per session, and the
records of a run captured so they can be shown to its user."""

from otel_session._buffer import BufferSettings, BufferStats
from otel_session._capture import Capture, capture
from otel_session._configure import Telemetry, configure, configured
from otel_session._file_exporter import OtlpJsonFileExporter
from otel_session._flush import flush
from otel_session._levels import INHERIT, parse_level, resolve_level
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
from otel_session._state import STATE as _STATE
from otel_session._validation import id_error, text_error


def reset() -> None:
    """Back to the defaults (for tests): no captures, no redaction, the default baggage keys, no signing key. The
    pipeline `configure()` built stays; OTel's providers are set once per process."""
    _STATE.reset()


__all__ = [
    "INHERIT",
    "SECRET_PATTERNS",
    "BufferSettings",
    "BufferStats",
    "Capture",
    "OtlpJsonFileExporter",
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
    "id_error",
    "inject_env",
    "inject_headers",
    "inject_payload",
    "install_loguru_bridge",
    "parse_level",
    "reset",
    "resolve_level",
    "session",
    "text_error",
]
