"""Tail-based debug in one process: records below the export level held per trace, exported only
when the trace fails. Checked through the OTLP-JSON file exporter, which serialises at export time."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import threading
import time
import tracemalloc

import pytest
from opentelemetry import trace

import otel_session
from otel_session import BufferSettings, OtlpJsonFileExporter, capture, session
from otel_session._buffer import BUFFERED_OVERHEAD, TraceBuffer
from otel_session._state import STATE
from tests.helpers.support import otlp_records

log = logging.getLogger("tests.buffer")
tracer = trace.get_tracer("tests.buffer")


@pytest.fixture
def wire(otel_logs, tmp_path):
    """Buffering on, exported to OTLP-JSON files; `wire.records()` reads what reached them."""

    class Wire:
        def configure(self, **kwargs):
            settings = {"buffer_level": "DEBUG", "buffer_ttl_s": 30, "buffer_max_bytes": 8_000_000, **kwargs}
            self.telemetry = otel_logs.configure(exporter=OtlpJsonFileExporter(tmp_path, "svc"), **settings)
            return self

        def records(self):
            self.telemetry.force_flush()
            return otlp_records(tmp_path)

        def messages(self, trace_id: int | None = None):
            return [r["message"] for r in self.records()
                    if trace_id is None or r["trace_id"] == format(trace_id, "032x")]

    yield Wire().configure()
    otel_session.reset()


def trace_id() -> int:
    return trace.get_current_span().get_span_context().trace_id


def test_a_failing_trace_exports_its_held_records_first_in_order_then_the_error(wire):
    with session(session_id="s-fail"), tracer.start_as_current_span("fails"):
        failing = trace_id()
        log.debug("step 1")
        log.info("visible anyway")
        log.debug("step 2")
        held_at = time.time_ns()
        assert wire.messages(failing) == ["visible anyway"]  # held, not exported
        log.error("it broke")
        log.debug("after the error")
    records = [r for r in wire.records() if r["trace_id"] == format(failing, "032x")]
    assert [r["message"] for r in records] == ["step 1", "visible anyway", "step 2", "it broke", "after the error"]
    by_message = {r["message"]: r for r in records}
    assert by_message["step 1"]["time"] < by_message["visible anyway"]["time"] < by_message["step 2"]["time"] < held_at
    assert by_message["step 1"]["attrs"]["otel_session.buffered"] is True
    assert by_message["step 2"]["attrs"]["session.id"] == "s-fail"
    assert "otel_session.buffered" not in by_message["it broke"]["attrs"]
    assert "otel_session.buffered" not in by_message["after the error"]["attrs"]  # exported directly
    stats = wire.telemetry.stats()
    assert (stats.flushed, stats.flushes, stats.buffered) == (2, 1, 0)


def test_the_export_order_is_held_records_then_the_trigger(wire, tmp_path):
    with tracer.start_as_current_span("fails"):
        for i in range(5):
            log.debug("held %d", i)
        log.error("boom")
    wire.telemetry.force_flush()
    lines = (tmp_path / f"svc.{os.getpid()}.jsonl").read_text().splitlines()
    exported = [record["body"]["stringValue"] for line in lines
                for logs in json.loads(line)["resourceLogs"] for scope in logs["scopeLogs"]
                for record in scope["logRecords"]]  # in the order the exporter wrote them, not by time
    assert exported == [f"held {i}" for i in range(5)] + ["boom"]


def test_a_trace_that_does_not_fail_exports_nothing_held_and_its_records_are_dropped_after_the_ttl(wire):
    wire.configure(buffer_ttl_s=0.3)
    with tracer.start_as_current_span("fine"):
        ok = trace_id()
        log.debug("never exported")
    with tracer.start_as_current_span("fails late"):
        log.debug("held")
        time.sleep(0.4)
        log.debug("held later")
        log.error("late failure")
    assert not wire.messages(ok)
    assert wire.messages() == ["held later", "late failure"]  # `held` outlived the TTL
    stats = wire.telemetry.stats()
    assert stats.dropped == 2 and stats.buffered == 0 and stats.flushed == 1


def test_ttl_expiry_happens_without_new_records(wire):
    wire.configure(buffer_ttl_s=0.2)
    with tracer.start_as_current_span("quiet"):
        log.debug("held once")
    assert wire.telemetry.stats().buffered == 1
    time.sleep(0.3)
    assert wire.telemetry.stats().buffered == 0 and wire.telemetry.stats().dropped == 1


def test_the_oldest_held_records_are_evicted_over_max_bytes_and_the_flush_says_how_many(wire):
    wire.configure(buffer_max_bytes=20 * (BUFFERED_OVERHEAD + 200))
    with session(session_id="s-evict"), tracer.start_as_current_span("big"):
        for i in range(100):
            log.debug("record %03d %s", i, "x" * 100)
        assert wire.telemetry.stats().buffered_bytes <= 20 * (BUFFERED_OVERHEAD + 200)
        log.error("after many")
    messages = wire.messages()
    kept = [m for m in messages if m.startswith("record")]
    assert 10 <= len(kept) < 30 and kept == sorted(kept) and kept[-1].startswith("record 099")  # newest kept
    notice = [r for r in wire.records() if "evicted" in r["message"]]
    assert len(notice) == 1 and int(notice[0]["attrs"]["otel_session.evicted"]) == 100 - len(kept)
    assert notice[0]["level"] == "WARN" and notice[0]["attrs"]["session.id"] == "s-evict"
    assert messages.index(notice[0]["message"]) < messages.index(kept[0])
    assert wire.telemetry.stats().evicted == 100 - len(kept)


def held_in_a_trace(name: str, count: int) -> int:
    """A new trace in which `count` DEBUG records "<name> <i>" are held; its id."""
    with tracer.start_as_current_span(name):
        for i in range(count):
            log.debug("%s %d", name, i)
        return trace_id()


def test_eviction_is_oldest_first_across_traces(wire):
    wire.configure(buffer_max_bytes=10 * (BUFFERED_OVERHEAD + 100))
    old = held_in_a_trace("old", 8)
    with tracer.start_as_current_span("new"):
        for i in range(8):
            log.debug("new %d", i)
        log.error("new failed")
    assert otel_session.flush_buffer(old) < 8  # the old trace lost its oldest records first
    assert [m for m in wire.messages() if m.startswith("new ") and m != "new failed"] == [f"new {i}" for i in range(8)]


@pytest.mark.parametrize("block", ["session", "capture"])
def test_an_exception_escaping_a_block_flushes_its_trace(wire, block):
    scope = session(session_id="s-raise") if block == "session" else capture()
    with tracer.start_as_current_span("request"), pytest.raises(RuntimeError), scope:
        log.debug("before the exception")
        raise RuntimeError("escapes")
    assert wire.messages() == ["before the exception"]


def test_cancellation_is_not_a_failure(wire):
    async def main():
        async def work():
            async with session(session_id="s-cancel"):
                with tracer.start_as_current_span("cancelled"):
                    log.debug("held")
                    await asyncio.sleep(10)

        task = asyncio.create_task(work())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert wire.messages() == [] and wire.telemetry.stats().buffered == 1


def test_flush_on_demand_by_current_trace_hex_or_int(wire):
    ids = []
    for name in ("a", "b", "c"):
        with tracer.start_as_current_span(name):
            ids.append(trace_id())
            log.debug("held in %s", name)
    with trace.use_span(trace.NonRecordingSpan(trace.SpanContext(ids[0], 1, False))):
        assert otel_session.flush_buffer() == 1
    assert otel_session.flush_buffer(format(ids[1], "032x")) == 1
    assert otel_session.flush_buffer(ids[2]) == 1
    assert otel_session.flush_buffer(ids[2]) == 0  # nothing left
    assert wire.messages() == ["held in a", "held in b", "held in c"]


@pytest.mark.parametrize("bad", ["xyz", "0" * 32, "1" * 31, -1, 0, 1 << 128])
def test_flush_rejects_bad_trace_ids(wire, bad):
    with pytest.raises(ValueError, match="invalid trace id"):
        otel_session.flush_buffer(bad)


def test_the_old_name_flush_still_works_and_warns(wire):
    with tracer.start_as_current_span("old"):
        log.debug("buffered")
        with pytest.warns(DeprecationWarning, match="flush_buffer"):
            assert otel_session.flush() == 1
    assert wire.messages() == ["buffered"]


def test_flush_rejects_other_types(wire):
    with pytest.raises(TypeError):
        otel_session.flush_buffer(1.5)  # type: ignore[arg-type]


def test_a_record_with_no_trace_is_held_under_its_session_and_one_with_neither_is_not_created(wire):
    with session(session_id="s-notrace"):
        log.debug("held under the session")
        assert otel_session.flush_buffer() == 1
    assert not log.isEnabledFor(logging.DEBUG)  # no trace, no session: nothing to hold it under
    log.debug("nowhere")
    assert wire.messages() == ["held under the session"]
    assert wire.telemetry.stats().buffered == 0


def test_buffering_is_off_by_default_and_creates_nothing(otel_logs):
    with tracer.start_as_current_span("off"):
        assert not log.isEnabledFor(logging.DEBUG)
        log.debug("not created")
        log.error("no flush")
    assert otel_logs.messages() == ["no flush"]
    assert otel_logs.telemetry.stats().flushes == 0


def test_a_context_at_debug_exports_directly_and_holds_nothing(wire):
    with session(session_id="s-debug", log_level="DEBUG"), tracer.start_as_current_span("direct"):
        log.debug("exported")
    assert wire.messages() == ["exported"] and wire.telemetry.stats().buffered == 0


def test_captures_keep_what_their_own_level_asks_with_buffering_on(wire):
    with (session(session_id="s-cap"), tracer.start_as_current_span("cap"), capture(level="INFO") as info,
          capture(level="DEBUG") as debug):
        log.debug("detail")
        log.info("summary")
    assert [r.message for r in info.records] == ["summary"]
    assert [r.message for r in debug.records] == ["detail", "summary"]
    assert wire.messages() == ["summary"] and wire.telemetry.stats().buffered == 1


def test_a_logger_with_its_own_level_is_not_lowered(wire):
    quiet = logging.getLogger("tests.buffer.quiet")
    quiet.setLevel(logging.INFO)
    try:
        with tracer.start_as_current_span("own level"):
            quiet.debug("the app set INFO here")
            log.debug("held")
            log.error("fail")
    finally:
        quiet.setLevel(logging.NOTSET)
    assert wire.messages() == ["held", "fail"]


def test_many_asyncio_traces_at_once_flush_exactly_the_failing_ones(wire):
    failing = set(range(0, 200, 20))

    async def one(n: int) -> int:
        async with session(session_id=f"s-{n}"):
            with tracer.start_as_current_span(f"t-{n}"):
                tid = trace_id()
                for step in range(3):
                    log.debug("session %d step %d", n, step)
                    await asyncio.sleep(0)
                if n in failing:
                    log.error("session %d failed", n)
                return tid

    async def main() -> list[int]:
        return await asyncio.gather(*(one(n) for n in range(200)))

    ids = asyncio.run(main())
    records = wire.records()
    exported = {r["trace_id"] for r in records}
    assert exported == {format(ids[n], "032x") for n in failing}
    for n in failing:
        mine = [r["message"] for r in records if r["trace_id"] == format(ids[n], "032x")]
        assert mine == [f"session {n} step {s}" for s in range(3)] + [f"session {n} failed"]
    assert wire.telemetry.stats().buffered == 190 * 3


def test_threads_each_in_their_own_trace(wire):
    def one(n: int) -> None:
        with tracer.start_as_current_span(f"thread-{n}"):
            log.debug("thread %d detail", n)
            if n % 2:
                log.error("thread %d failed", n)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    messages = wire.messages()
    assert sorted(m for m in messages if "detail" in m) == [f"thread {n} detail" for n in (1, 3, 5, 7)]


def test_a_second_error_in_a_flushed_trace_does_not_flush_again(wire):
    with tracer.start_as_current_span("twice"):
        log.debug("held")
        log.error("first")
        log.error("second")
    assert wire.messages() == ["held", "first", "second"] and wire.telemetry.stats().flushes == 2


def test_turning_buffering_off_forgets_what_is_held(wire):
    with tracer.start_as_current_span("off later"):
        tid = trace_id()
        log.debug("held")
    wire.configure(buffer_level="OFF")
    assert otel_session.flush_buffer(tid) == 0 and wire.messages() == []
    with tracer.start_as_current_span("now off"):
        assert not log.isEnabledFor(logging.DEBUG)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"buffer_level": "LOUD"}, "buffer_level"),
    ({"buffer_max_bytes": 0}, "buffer_max_bytes"),
    ({"buffer_max_bytes": 1.5}, "buffer_max_bytes"),
    ({"buffer_ttl_s": 0}, "buffer_ttl_s"),
    ({"buffer_ttl_s": float("nan")}, "buffer_ttl_s"),
    ({"buffer_ttl_s": 90000}, "buffer_ttl_s"),
])
def test_bad_settings_are_refused_before_anything_changes(otel_logs, kwargs, message):
    with pytest.raises(ValueError, match=message):
        otel_logs.configure(**kwargs)
    assert not STATE.buffer.on


def test_the_environment_configures_buffering(otel_logs, monkeypatch):
    monkeypatch.setenv("OTEL_SESSION_BUFFER_LEVEL", "debug")
    monkeypatch.setenv("OTEL_SESSION_BUFFER_MAX_BYTES", "1000000")
    monkeypatch.setenv("OTEL_SESSION_BUFFER_TTL_S", "5.5")
    otel_logs.configure()
    assert STATE.buffer.settings == BufferSettings(logging.DEBUG, 1_000_000, 5.5)
    monkeypatch.setenv("OTEL_SESSION_BUFFER_TTL_S", "soon")
    with pytest.raises(ValueError, match="OTEL_SESSION_BUFFER_TTL_S"):
        otel_logs.configure()
    monkeypatch.setenv("OTEL_SESSION_BUFFER_TTL_S", "5")
    monkeypatch.setenv("OTEL_SESSION_BUFFER_LEVEL", "chatty")
    with pytest.raises(ValueError, match="OTEL_SESSION_BUFFER_LEVEL: invalid log level 'chatty'"):
        otel_logs.configure()
    monkeypatch.setenv("OTEL_SESSION_BUFFER_LEVEL", "off")
    otel_logs.configure()
    assert not STATE.buffer.on


def test_a_forked_child_holds_none_of_its_parents_records(wire, tmp_path):
    with tracer.start_as_current_span("parent"):
        log.debug("the parent's")
        pid = os.fork()
        if pid == 0:
            code = 3
            try:
                code = 0 if otel_session.flush_buffer() == 0 and STATE.buffer.stats().buffered == 0 else 4
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert otel_session.flush_buffer() == 1


def test_the_held_size_estimate_matches_what_a_held_record_really_costs(wire):
    """`BUFFERED_OVERHEAD` is measured, not guessed: the estimate stays within 25 % of tracemalloc's."""
    buffer: TraceBuffer = STATE.buffer
    with session(session_id="s-size", user_id="u-size"), tracer.start_as_current_span("size"):
        log.debug("warm up %s", "y" * 50)
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        start_bytes = buffer.stats().buffered_bytes
        for i in range(2000):
            log.debug("record %d %s", i, "y" * 50)
        gc.collect()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        estimated = buffer.stats().buffered_bytes - start_bytes
    real = sum(s.size_diff for s in after.compare_to(before, "filename"))
    assert 0.75 < estimated / real < 1.25, (estimated / 2000, real / 2000)


def test_a_trace_that_lost_every_held_record_still_says_how_many_when_it_fails(wire):
    wire.configure(buffer_max_bytes=10 * (BUFFERED_OVERHEAD + 100))
    with session(session_id="s-gone"):
        gone = held_in_a_trace("gone", 3)
    held_in_a_trace("newer", 12)  # pushes it out
    assert otel_session.flush_buffer(gone) == 0
    (notice,) = [r for r in wire.records() if r["trace_id"] == format(gone, "032x")]
    assert "3 buffered record(s) of this trace were evicted" in notice["message"]
    assert int(notice["attrs"]["otel_session.evicted"]) == 3 and notice["attrs"]["session.id"] == "s-gone"


def test_the_notes_of_traces_that_lost_everything_are_bounded(wire, monkeypatch):
    from otel_session import _buffer

    monkeypatch.setattr(_buffer, "MAX_LOST_TRACES", 5)
    wire.configure(buffer_max_bytes=2 * (BUFFERED_OVERHEAD + 100))
    ids = []
    for n in range(20):  # each trace's one record pushes out an earlier trace's only record
        with tracer.start_as_current_span(f"t{n}"):
            ids.append(trace_id())
            log.debug("only %d", n)
    assert len(STATE.buffer._traces) <= 5 + 2 and len(STATE.buffer._lost_only) == 5
    assert otel_session.flush_buffer(ids[0]) == 0 and not wire.records()  # forgotten: no notice
    otel_session.flush_buffer(ids[16])  # among the 5 kept: a notice
    assert [int(r["attrs"]["otel_session.evicted"]) for r in wire.records()] == [1]


def test_a_record_is_flushed_through_the_processor_that_held_it(wire):
    """A second pipeline of its own (a `SessionLogProcessor` in another provider) shares the buffer; a
    flush sends each record back to the exporters of the processor that held it."""
    from opentelemetry._logs import LogRecord, SeverityNumber
    from opentelemetry.context import get_current
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

    from otel_session import SessionLogProcessor

    other = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SessionLogProcessor(SimpleLogRecordProcessor(other)))
    with tracer.start_as_current_span("two pipelines"):
        provider.get_logger("tests.buffer").emit(LogRecord(  # a stdlib logger at INFO: not exported, held
            context=get_current(), body="held by the other pipeline", severity_number=SeverityNumber.DEBUG,
            severity_text="DEBUG"))
        log.debug("held by ours")
        assert otel_session.flush_buffer() == 2
    assert [r.log_record.body for r in other.get_finished_logs()] == ["held by the other pipeline"]
    assert wire.messages() == ["held by ours"]


def test_the_apps_console_sees_what_it_saw_before_and_never_a_held_record(wire):
    """An app's own handler on the root logger (`basicConfig(level=INFO)` puts one there at NOTSET): a
    record created only to be held reaches our handler alone; a session or capture that asks for DEBUG
    reaches the console as before."""
    import io

    console = io.StringIO()
    handler = logging.StreamHandler(console)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with tracer.start_as_current_span("quiet console"):
            log.debug("held, not on the console")
            log.info("on the console")
            log.error("fails")
        with session(session_id="s-asks", log_level="DEBUG"), tracer.start_as_current_span("asks"):
            log.debug("this session asked for DEBUG")
        propagating = logging.getLogger("tests.buffer.own")
        propagating.propagate = False
        propagating.addHandler(own := logging.StreamHandler(io.StringIO()))
        with tracer.start_as_current_span("no path to our handler"):
            propagating.debug("not held: our handler is not on its path")
    finally:
        root.removeHandler(handler)
        propagating.removeHandler(own)
        propagating.propagate = True
    assert console.getvalue().splitlines() == ["on the console", "fails", "this session asked for DEBUG"]
    assert own.stream.getvalue() == ""
    assert wire.messages() == ["held, not on the console", "on the console", "fails", "this session asked for DEBUG"]


def test_routing_is_the_stdlibs_while_buffering_is_off(otel_logs):
    assert logging.Logger.callHandlers.__name__ == "callHandlers"
    otel_logs.configure(buffer_level="DEBUG")
    assert logging.Logger.callHandlers.__module__ == "otel_session._stdlib"
    otel_logs.configure(buffer_level="OFF")
    assert logging.Logger.callHandlers.__name__ == "callHandlers"
    otel_logs.configure(buffer_level="DEBUG")
    otel_session.reset()
    assert logging.Logger.callHandlers.__name__ == "callHandlers"
