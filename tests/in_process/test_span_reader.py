"""Reading spans and logs from files, each file once: `read_chunks` from a byte offset, `ChunkTail` over a
directory, `read_spans`; torn last lines, gzip, growing, truncated and rotated files, a Collector's traces
file. The files are written by the real span exporter (or the real encoder) from real SDK spans."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_session import OtlpJsonFileSpanExporter
from otel_session._otlp_json import encode_spans_json_line
from otel_session.log_reader import (
    BAD,
    LOGS,
    OTHER,
    TRACES,
    Chunk,
    ChunkTail,
    ReadStats,
    read_chunks,
    read_logs,
    read_spans,
)

LOG_LINE = json.dumps({"resourceLogs": [{
    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "api"}}]},
    "scopeLogs": [{"scope": {"name": "hand"}, "logRecords": [
        {"timeUnixNano": "5", "severityNumber": 9, "body": {"stringValue": "a log line"}}]}],
}]}) + "\n"


def sdk_spans(*names: str, service: str = "svc") -> list[Any]:
    """Real `ReadableSpan`s, as the SDK hands an exporter a batch."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    for name in names:
        with provider.get_tracer("tests.reader").start_as_current_span(name):
            pass
    provider.shutdown()
    return list(memory.get_finished_spans())


def names(chunks: list[Chunk]) -> list[str]:
    return [span.name for chunk in chunks for span in chunk.spans]


def test_the_span_exporter_writes_one_line_a_batch_and_read_chunks_resumes_from_an_offset(tmp_path):
    exporter = OtlpJsonFileSpanExporter(tmp_path, "svc/x")
    assert exporter.export(sdk_spans("one", "two")) == SpanExportResult.SUCCESS
    assert exporter.path == tmp_path / f"svc_x.{os.getpid()}.spans.jsonl"
    first = list(read_chunks(exporter.path))
    assert [(c.kind, c.start) for c in first] == [(TRACES, 0)] and names(first) == ["one", "two"]
    assert first[-1].end == exporter.path.stat().st_size

    assert exporter.export(sdk_spans("three")) == SpanExportResult.SUCCESS
    more = list(read_chunks(exporter.path, first[-1].end))
    assert names(more) == ["three"] and more[0].start == first[-1].end
    assert list(read_chunks(exporter.path, more[-1].end)) == []  # nothing new
    exporter.shutdown()
    assert exporter.export(sdk_spans("late")) == SpanExportResult.FAILURE


def test_a_torn_last_line_waits_for_its_rest_then_is_bad_only_when_final(tmp_path):
    path = tmp_path / "svc.1.spans.jsonl"
    whole = encode_spans_json_line(sdk_spans("whole"))
    torn = encode_spans_json_line(sdk_spans("torn"))
    path.write_text(whole + torn[:40])
    stats = ReadStats()
    chunks = list(read_chunks(path, stats=stats))
    assert names(chunks) == ["whole"] and chunks[-1].end == len(whole) and stats.summary() is None
    final = list(read_chunks(path, chunks[-1].end, final=True, stats=stats))
    assert [c.kind for c in final] == [BAD] and stats.bad_lines == {os.fspath(path): 1}

    with open(path, "a") as f:  # the writer finishes the line: read from where we stopped, it is whole
        f.write(torn[40:])
    assert names(list(read_chunks(path, chunks[-1].end))) == ["torn"]


def test_the_exporter_closes_a_torn_line_so_it_costs_one_bad_line_and_never_the_next_batch(tmp_path):
    exporter = OtlpJsonFileSpanExporter(tmp_path, "svc")
    exporter.path.parent.mkdir(parents=True, exist_ok=True)
    exporter.path.write_text(encode_spans_json_line(sdk_spans("before")) + '{"resourceSpans": [{"sco')
    assert exporter.export(sdk_spans("after")) == SpanExportResult.SUCCESS
    stats = ReadStats()
    assert [s.name for s in read_spans(exporter.path, stats=stats)] == ["before", "after"]
    assert stats.skipped_lines == 1
    exporter.shutdown()


def test_gzip_files_logs_and_spans_and_other_signals_in_one_file(tmp_path):
    path = tmp_path / "traces-2026-11-23T10-00-00.000-size.json.gz"
    spans_line = encode_spans_json_line(sdk_spans("zipped", service="collector-svc"))
    with gzip.open(path, "wt") as f:
        f.write(spans_line + LOG_LINE + "\n" + '{"resourceMetrics": []}\n' + "garbage\n")
    stats = ReadStats()
    chunks = list(read_chunks(path, stats=stats))
    assert [c.kind for c in chunks] == [TRACES, LOGS, OTHER, BAD]
    assert [r.message for r in chunks[1].records] == ["a log line"]
    assert chunks[0].spans[0].service == "collector-svc"
    assert chunks[1].start == len(spans_line)  # offsets in the uncompressed text
    assert names(list(read_chunks(path, chunks[1].start))) == []  # resumed past the spans
    assert [c.kind for c in read_chunks(path, chunks[1].start)] == [LOGS, OTHER, BAD]
    assert stats.skipped_lines == 1
    (tmp_path / "broken.json.gz").write_bytes(b"not gzip at all\n")
    assert list(read_chunks(tmp_path / "broken.json.gz", stats=stats)) == []
    assert os.fspath(tmp_path / "broken.json.gz") in stats.unreadable_files


def test_a_truncated_file_is_read_from_its_start_and_a_missing_one_gives_nothing(tmp_path):
    path = tmp_path / "svc.1.spans.jsonl"
    path.write_text(encode_spans_json_line(sdk_spans("a", "b")) + encode_spans_json_line(sdk_spans("c")))
    end = list(read_chunks(path))[-1].end
    path.write_text(encode_spans_json_line(sdk_spans("new")))  # copytruncate: shorter than where we were
    again = list(read_chunks(path, end))
    assert names(again) == ["new"] and again[0].start == 0 < end
    assert list(read_chunks(tmp_path / "gone.spans.jsonl")) == []


def test_a_collectors_rotated_traces_files_and_our_files_are_read_once_each(tmp_path):
    """The Collector's `file/traces` exporter (collector-config.yaml): `traces.json`, rotated to
    `traces-<time>.json` and maybe compressed; beside it, our own log and span files."""
    collector = tmp_path / "traces"
    collector.mkdir()
    with gzip.open(collector / "traces-2026-11-23T09-00-00.000-size.json.gz", "wt") as f:
        f.write(encode_spans_json_line(sdk_spans("old", service="gateway")))
    live = collector / "traces.json"
    live.write_text(encode_spans_json_line(sdk_spans("c1", service="gateway")))
    (tmp_path / f"svc.{os.getpid()}.jsonl").write_text(LOG_LINE)
    ours = OtlpJsonFileSpanExporter(tmp_path, "svc")
    ours.export(sdk_spans("s1"))

    tail = ChunkTail(tmp_path)
    seen = [(path.name, chunk.kind, [s.name for s in chunk.spans]) for path, chunk in tail.read()]
    assert sorted(seen) == sorted([
        (f"svc.{os.getpid()}.jsonl", LOGS, []), (f"svc.{os.getpid()}.spans.jsonl", TRACES, ["s1"]),
        ("traces.json", TRACES, ["c1"]), ("traces-2026-11-23T09-00-00.000-size.json.gz", TRACES, ["old"])])
    assert list(tail.read()) == []

    with open(live, "a") as f:  # grows, then the Collector rotates it and starts a new traces.json
        f.write(encode_spans_json_line(sdk_spans("c2", service="gateway")))
    live.rename(collector / "traces-2026-11-23T10-00-00.000-size.json")
    live.write_text(encode_spans_json_line(sdk_spans("c3", service="gateway")))
    ours.export(sdk_spans("s2"))
    later = [(path.name, [s.name for s in chunk.spans]) for path, chunk in tail.read()]
    assert sorted(later) == sorted([(f"svc.{os.getpid()}.spans.jsonl", ["s2"]),
                                    ("traces-2026-11-23T10-00-00.000-size.json", ["c2"]), ("traces.json", ["c3"])])
    ours.shutdown()

    assert [s.name for s in read_spans(tmp_path)] == ["old", "c1", "s1", "c2", "c3", "s2"]  # by start time
    assert [r.message for r in read_logs(tmp_path)] == ["a log line"]  # the span files hold no log lines
    assert tail.stats.summary() is None


def test_read_spans_of_a_missing_directory_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_spans(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError):
        list(ChunkTail(Path(tmp_path / "nowhere")).read())
