"""The pipeline's own failures and edges, each reproduced on the earlier design."""

import gc
import logging
import os
import subprocess
import sys
import threading
import weakref

from opentelemetry import trace
from opentelemetry._logs import LogRecord, SeverityNumber, get_logger_provider
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

import otel_session
from otel_session import capture, configure, session

log = logging.getLogger("tests.robust")


def test_sdk_errors_reach_stderr_rate_limited_and_never_the_export(tmp_path):
    script = """
import logging, otel_session
from opentelemetry import context
t = otel_session.configure(service_name="robust", exporter="otlp")
logging.getLogger("app").warning("app record")
t.force_flush(2000)  # the export fails: nothing listens on the port
for i in range(30):  # a burst of the SDK's own errors (on a logger the SDK does not de-duplicate itself)
    logging.getLogger("opentelemetry.burst").error("burst %d", i)
token = context.attach(context.get_current())
import contextvars
contextvars.copy_context().run(context.detach, token)  # "Failed to detach context"
"""
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
           "OTEL_TRACES_EXPORTER": "none"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("opentelemetry.")]
    assert any("Failed to export" in line for line in lines), out.stderr
    assert any("Failed to detach context" in line for line in lines), out.stderr
    burst = [line for line in lines if "burst" in line]
    assert len(burst) == 10  # a burst of one kind gets through, the rest is held back and counted


def test_sdk_records_never_enter_the_export(otel_logs):
    logging.getLogger("opentelemetry.sdk._shared_internal").error("Exception while exporting logs.")
    assert otel_logs.records == []


def test_only_the_current_handle_can_shut_the_pipeline_down(otel_logs):
    earlier = otel_logs.telemetry
    current = otel_logs.configure()
    earlier.shutdown()  # a stale handle: warns, stops nothing
    log.warning("still exported")
    assert current.processor.inner is not None
    assert "still exported" in otel_logs.messages()
    assert any("earlier configure() ignored" in m for m in otel_logs.messages())


def test_otel_api_records_without_severity_pass_and_int_severities_are_read(otel_logs):
    api = get_logger_provider().get_logger("tests.events")
    with session(session_id="s", log_level="ERROR"):
        api.emit(LogRecord(body="an event without severity", event_name="user.joined"))
        api.emit(LogRecord(body="int error", severity_number=17))
        api.emit(LogRecord(body="int debug", severity_number=5))
        api.emit(LogRecord(body="enum warn", severity_number=SeverityNumber.WARN))
    assert otel_logs.messages() == ["an event without severity", "int error"]


def test_a_captures_byte_bound_counts_the_real_size_of_attributes(otel_logs):
    otel_logs.configure(capture_max_bytes=100_000)
    with capture() as cap:
        for i in range(50):
            log.info("big %d", i, extra={"rows": ["x" * 100] * 1000})  # ~100 kB an attribute
    assert cap.size <= 100_000
    assert cap.dropped >= 49


def test_finished_contexts_and_their_spans_are_not_kept_alive(otel_logs):
    tracer = trace.get_tracer("tests")
    spans = []
    for i in range(3000):
        with tracer.start_as_current_span(f"request {i}") as span, session(session_id=f"s{i}"):
            log.info("one record a request")
        spans.append(weakref.ref(span))
    otel_logs.clear()
    del span
    gc.collect()
    assert sum(1 for s in spans if s() is not None) == 0


class _ThreadRecordingExporter(LogRecordExporter):
    def __init__(self) -> None:
        self.threads: set[str] = set()
        self.bodies: list[str] = []

    def export(self, batch):  # type: ignore[override]
        self.threads.add(threading.current_thread().name)
        self.bodies.extend(r.log_record.body for r in batch)
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def test_an_exporter_instance_is_batched_in_the_background(otel_logs):
    from tests.helpers.support import wait_for

    exporter = _ThreadRecordingExporter()
    configure(exporter=exporter)
    try:
        log.warning("batched")
        wait_for(lambda: exporter.bodies, timeout=10, what="the batch processor's worker to export")
    finally:
        otel_logs.configure()
    assert exporter.bodies == ["batched"]
    assert threading.current_thread().name not in exporter.threads


def test_a_failed_detach_is_reported_and_the_caller_keeps_going(capfd):
    import asyncio

    async def main():
        scope = session(session_id="leaky")
        scope.__enter__()
        await asyncio.create_task(asyncio.to_thread(scope.__exit__, None, None, None))  # another context

    asyncio.run(main())
    assert "could not detach the session context" in capfd.readouterr().err
    assert otel_session.current() is None
