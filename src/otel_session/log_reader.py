"""Reading OTLP-JSON log files: what `OtlpJsonFileExporter` writes and what an OpenTelemetry
Collector's `file` exporter writes, rotated and gzip-compressed files included.

This is the public face of the reader, kept small on purpose; the work is done in
`_otlp_json` (the format) and `_follow` (files and directories). Every record is a `Record`.

    from otel_session.log_reader import LogFilter, read_logs
    for record in read_logs("./.otel-session/logs", LogFilter(sessions=frozenset({"s-1"}))):
        print(record.render())
"""

from __future__ import annotations

from otel_session._follow import LogFilter, LogTail, ReadStats, find_log_files, read_file, read_logs, read_records
from otel_session._otlp_json import NotOtlpError, decode_request
from otel_session._record import Record, iso_time, utc_time
from otel_session._severity import severity_text

LogEntry = Record
"""The old name of `Record`, kept so code written against it still runs."""

__all__ = [
    "LogEntry",
    "LogFilter",
    "LogTail",
    "NotOtlpError",
    "ReadStats",
    "Record",
    "decode_request",
    "find_log_files",
    "iso_time",
    "read_file",
    "read_logs",
    "read_records",
    "severity_text",
    "utc_time",
]
