"""Session-scoped OpenTelemetry logs: session ids on every record, a level per session, and the
records of a run captured so they can be shown to its user."""

from otel_session.capture import Capture, capture
from otel_session.configure import Telemetry, configure, configured
from otel_session.file_exporter import OtlpJsonFileExporter
from otel_session._levels import INHERIT, parse_level, resolve_level
from otel_session.loguru_bridge import install_loguru_bridge
from otel_session.processor import SessionLogProcessor
from otel_session.propagation import (
    extract_env,
    extract_headers,
    extract_payload,
    inject_env,
    inject_headers,
    inject_payload,
)
from otel_session.records import Record
from otel_session.redaction import SECRET_PATTERNS, add_redaction
from otel_session.session import SessionInfo, attach, current, session

__all__ = [
    "INHERIT",
    "SECRET_PATTERNS",
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
    "inject_env",
    "inject_headers",
    "inject_payload",
    "install_loguru_bridge",
    "parse_level",
    "resolve_level",
    "session",
]
