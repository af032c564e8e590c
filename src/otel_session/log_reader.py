"""Reading OTLP-JSON files: what our file exporters write and what an OpenTelemetry Collector's `file`
exporter writes (logs, traces and metrics), rotated and gzip-compressed files included.

This is the public face of the reader, kept small on purpose; the work is done in
`_otlp_json` (the format) and `_follow` (files and directories). Every log record is a `Record`,
every span a `Span`, every metric data point a `MetricPoint`.

    from otel_session.log_reader import LogFilter, read_logs, read_spans
    for record in read_logs("./.otel-session/logs", LogFilter(sessions=frozenset({"s-1"}))):
        print(record.render())
    spans = read_spans("./.otel-session/logs")
    points = read_metrics("./.otel-session/logs")  # metric name -> its data points, in time order

An indexer reads each file once, logs and spans together, from where it stopped:

    from otel_session.log_reader import read_chunks
    for chunk in read_chunks(path, offset):  # chunk.kind: "logs", "traces", "other" or "bad"
        index(chunk.records, chunk.spans); offset = chunk.end
"""

from __future__ import annotations

from otel_session._follow import (
    BAD,
    LOGS,
    OTHER,
    TRACES,
    Chunk,
    ChunkTail,
    LogFilter,
    LogTail,
    ReadStats,
    find_log_files,
    read_chunks,
    read_file,
    read_logs,
    read_metrics,
    read_records,
    read_spans,
)
from otel_session._metric import MetricPoint
from otel_session._otlp_json import Decoded, NotOtlpError, decode_line, decode_metrics, decode_request, decode_spans
from otel_session._record import Record, iso_time, utc_time
from otel_session._severity import severity_text
from otel_session._span import Span, SpanEvent, SpanLink

LogEntry = Record
"""The old name of `Record`, kept so code written against it still runs."""

__all__ = [
    "BAD",
    "LOGS",
    "OTHER",
    "TRACES",
    "Chunk",
    "ChunkTail",
    "Decoded",
    "LogEntry",
    "LogFilter",
    "LogTail",
    "MetricPoint",
    "NotOtlpError",
    "ReadStats",
    "Record",
    "Span",
    "SpanEvent",
    "SpanLink",
    "decode_line",
    "decode_metrics",
    "decode_request",
    "decode_spans",
    "find_log_files",
    "iso_time",
    "read_chunks",
    "read_file",
    "read_logs",
    "read_metrics",
    "read_records",
    "read_spans",
    "severity_text",
    "utc_time",
]
