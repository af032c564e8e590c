import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, LogRecordExportResult, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from otel_session import configure, session
from otel_session._file_exporter import OtlpJsonFileExporter
from otel_session._otlp_json import encode_json_line
from otel_session.log_reader import ReadStats, read_records
from tests.helpers.support import ROOT, otlp_records


def test_serialising_file_exporter_shows_session_attributes_in_otlp_json(tmp_path, monkeypatch, otel_logs):
    monkeypatch.setenv("OTEL_SESSION_LOG_DIR", str(tmp_path))
    telemetry = configure(exporter="file", level="INFO")  # batch processor + a copying, encoding exporter
    assert telemetry.exporter_name == "file"
    tracer = trace.get_tracer("tests")
    with tracer.start_as_current_span("job") as span, session(session_id="s-file", user_id="u-1", log_level="DEBUG"):
        logging.getLogger("tests.file").debug("debug line %s", "one")
        logging.getLogger("tests.file").warning("warn line")
    logging.getLogger("tests.file").info("no session")
    telemetry.force_flush()
    records = otlp_records(tmp_path)
    assert [r["message"] for r in records] == ["debug line one", "warn line", "no session"]
    first = records[0]
    assert first["file"] == f"otel-session-tests.{os.getpid()}.jsonl"
    assert first["resource"]["service.name"] == first["service"] == "otel-session-tests"
    assert first["scope"] == "tests.file"
    assert first["attrs"]["session.id"] == "s-file" and first["attrs"]["user.id"] == "u-1"
    raw = first["raw"]
    assert raw["severityNumber"] == 5 and raw["severityText"] == "DEBUG"
    assert raw["traceId"] == format(span.get_span_context().trace_id, "032x")
    assert raw["spanId"] == format(span.get_span_context().span_id, "016x")
    assert int(raw["timeUnixNano"]) > 0
    assert "session.id" not in records[2]["attrs"]


def test_processes_of_one_service_write_their_own_files(tmp_path):
    script = textwrap.dedent(
        """
        import logging, sys
        from otel_session import configure, session
        t = configure(service_name="svc/one", exporter="file")
        with session(session_id=sys.argv[1]):
            for i in range(200):
                logging.getLogger("child").info("line %d", i)
        t.shutdown()
        """
    )
    env = {**os.environ, "OTEL_SESSION_LOG_DIR": str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-c", script, f"p{i}"], env=env) for i in range(3)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    files = sorted(p.name for p in tmp_path.glob("*.jsonl") if not p.name.endswith(".metrics.jsonl"))
    assert len(files) == 3 and all(f.startswith("svc_one.") for f in files)
    assert sorted(p.name for p in tmp_path.glob("*.metrics.jsonl")) == [f[:-len("jsonl")] + "metrics.jsonl"
                                                                         for f in files]
    records = otlp_records(tmp_path)
    assert len(records) == 600
    for name in files:
        sessions = {r["attrs"]["session.id"] for r in records if r["file"] == name}
        assert len(sessions) == 1


def test_a_failing_file_export_is_reported_on_stderr_and_never_loops_back(tmp_path, capsys, otel_logs):
    from otel_session import OtlpJsonFileExporter

    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    exporter = OtlpJsonFileExporter(blocked / "logs", "svc")
    telemetry = configure(exporter=exporter)
    for i in range(3):
        logging.getLogger("tests.file").warning("cannot be written %d", i)
        telemetry.force_flush()  # one batch each, whether the export is synchronous or batched
    assert exporter.failures == 3
    err = capsys.readouterr().err
    assert err.count("could not write 1 log records") == 1  # reported once, not per failure
    otel_logs.configure()
    logging.getLogger("tests.file").warning("flows again")
    assert otel_logs.messages() == ["flows again"]  # no failure report was fed back into the pipeline


def test_a_forked_child_writes_its_own_file_and_inherits_no_captures(tmp_path, monkeypatch, otel_logs):
    from otel_session import capture
    from otel_session._state import STATE

    monkeypatch.setenv("OTEL_SESSION_LOG_DIR", str(tmp_path))
    telemetry = configure(exporter="file")
    with capture(), session(session_id="parent"):
        logging.getLogger("tests.fork").warning("before fork")
        pid = os.fork()
        if pid == 0:  # child
            code = 0 if STATE.captures.open_count == 0 else 3
            with session(session_id="child"):
                logging.getLogger("tests.fork").warning("in child")
            telemetry.force_flush()
            os._exit(code)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    telemetry.force_flush()
    by_file = {}
    for r in otlp_records(tmp_path):
        by_file.setdefault(r["file"], []).append((r["attrs"]["session.id"], r["message"]))
    assert by_file == {
        f"otel-session-tests.{os.getpid()}.jsonl": [("parent", "before fork")],
        f"otel-session-tests.{pid}.jsonl": [("child", "in child")],
    }


# --- torn lines and forks: the exporter on its own, fed real SDK records ------------------------------


def sdk_batch(*messages: str) -> list[Any]:
    """Real `ReadableLogRecord`s, as the SDK hands an exporter a batch."""
    memory = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=Resource.create({"service.name": "svc"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    for i, message in enumerate(messages):
        provider.get_logger("tests.torn").emit(LogRecord(timestamp=1_000 + i, severity_number=SeverityNumber.INFO,
                                                         body=message, attributes={"session.id": "s-torn"}))
    provider.shutdown()
    return list(memory.get_finished_logs())


def test_a_torn_last_line_costs_one_bad_line_and_never_the_next_batch(tmp_path):
    exporter = OtlpJsonFileExporter(tmp_path, "svc")
    whole = encode_json_line(sdk_batch("before the crash"))
    exporter.path.write_text(whole + whole[:37])  # a crash mid-write; this pid starts again on the same file
    assert exporter.export(sdk_batch("one", "two", "three")) == LogRecordExportResult.SUCCESS
    assert exporter.export(sdk_batch("four")) == LogRecordExportResult.SUCCESS
    exporter.shutdown()
    stats = ReadStats()
    assert [r.message for r in read_records(tmp_path, stats=stats)] == ["before the crash", "one", "two", "three",
                                                                      "four"]
    assert stats.bad_lines == {str(exporter.path): 1}


def test_a_file_that_ends_cleanly_gets_no_blank_lines(tmp_path):
    exporter = OtlpJsonFileExporter(tmp_path, "svc")
    exporter.path.write_text(encode_json_line(sdk_batch("earlier")))
    exporter.export(sdk_batch("later"))
    exporter.shutdown()
    assert [json.loads(line) for line in exporter.path.read_text().split("\n")[:-1]]  # every line is a request


FULL_DISK = textwrap.dedent(
    """
    import resource, signal, sys
    from pathlib import Path
    from otel_session._file_exporter import OtlpJsonFileExporter
    from tests.processes.test_file_export import sdk_batch

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
    exporter = OtlpJsonFileExporter(Path(sys.argv[1]), "svc")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    assert exporter.export(sdk_batch("first")).name == "SUCCESS"
    size = exporter.path.stat().st_size
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 40, hard))  # the disk fills up mid-line
    assert exporter.export(sdk_batch("lost " + "x" * 500)).name == "FAILURE"
    assert exporter.path.stat().st_size == size + 40  # a torn line on disk
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # space again
    assert exporter.export(sdk_batch("after", "the disk filled")).name == "SUCCESS"
    exporter.shutdown()
    """
)


def test_a_write_that_failed_part_way_is_closed_off_by_the_next_one(tmp_path):
    result = subprocess.run([sys.executable, "-c", FULL_DISK, str(tmp_path)], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "could not write 1 log records" in result.stderr
    stats = ReadStats()
    assert [r.message for r in read_records(tmp_path, stats=stats)] == ["first", "after", "the disk filled"]
    assert stats.skipped_lines == 1


def test_a_child_forked_while_another_thread_holds_the_lock_can_still_export(tmp_path):
    exporter = OtlpJsonFileExporter(tmp_path, "svc")
    assert exporter.export(sdk_batch("parent before")) == LogRecordExportResult.SUCCESS
    batch = sdk_batch("from the child")
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with exporter._lock:
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(10)
        pid = os.fork()
        if pid == 0:  # the child: the holder thread does not exist here, its lock must not either
            code = 0 if exporter.export(batch) == LogRecordExportResult.SUCCESS else 1
            os._exit(code)
        deadline = time.monotonic() + 20
        while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail("the forked child hung on the exporter's lock")
            time.sleep(0.02)
        assert os.waitstatus_to_exitcode(done[1]) == 0
    finally:
        release.set()
        holder.join()
    assert exporter.export(sdk_batch("parent after")) == LogRecordExportResult.SUCCESS
    exporter.shutdown()
    by_file = {}
    for path in sorted(tmp_path.glob("*.jsonl")):
        by_file[path.name] = [r.message for r in read_records(path)]
    assert by_file == {f"svc.{os.getpid()}.jsonl": ["parent before", "parent after"],
                       f"svc.{pid}.jsonl": ["from the child"]}
