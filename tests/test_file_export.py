import logging
import os
import subprocess
import sys
import textwrap

from opentelemetry import trace

from otel_session import configure, session
from tests.support import otlp_records


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
    files = sorted(p.name for p in tmp_path.glob("*.jsonl"))
    assert len(files) == 3 and all(f.startswith("svc_one.") for f in files)
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
    configure(exporter=exporter)  # synchronous export: every record fails at once
    for i in range(3):
        logging.getLogger("tests.file").warning("cannot be written %d", i)
    assert exporter.failures == 3
    err = capsys.readouterr().err
    assert err.count("could not write 1 log records") == 1  # reported once, not per failure
    otel_logs.configure()
    logging.getLogger("tests.file").warning("flows again")
    assert otel_logs.messages() == ["flows again"]  # no failure report was fed back into the pipeline


def test_a_forked_child_writes_its_own_file_and_inherits_no_captures(tmp_path, monkeypatch, otel_logs):
    from otel_session import capture
    from otel_session.capture import registry

    monkeypatch.setenv("OTEL_SESSION_LOG_DIR", str(tmp_path))
    telemetry = configure(exporter="file")
    with capture(), session(session_id="parent"):
        logging.getLogger("tests.fork").warning("before fork")
        pid = os.fork()
        if pid == 0:  # child
            code = 0 if registry.by_trace == {} else 3
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
