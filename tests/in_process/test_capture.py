import asyncio
import logging
import re
import time

from opentelemetry import context, trace
from opentelemetry.sdk._logs import LogRecordProcessor

from otel_session import capture, session
from otel_session._state import STATE

registry = STATE.captures

log = logging.getLogger("tests.capture")


def test_capture_collects_its_own_trace_in_order_and_renders_lines(otel_logs):
    with session(session_id="s", log_level="DEBUG"), capture() as cap:
        log.debug("first %d", 1)
        log.info("second")
        try:
            raise KeyError("boom")
        except KeyError:
            log.exception("third")
    log.info("after the capture")
    assert [r.message for r in cap.records] == ["first 1", "second", "third"]
    lines = cap.render().splitlines()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z DEBUG tests\.capture: first 1", lines[0])
    assert lines[1].endswith("INFO  tests.capture: second")
    assert "ERROR tests.capture: third" in lines[2]
    assert "Traceback" in lines[3] and "KeyError: 'boom'" in cap.render()
    assert len(otel_logs.records) == 4  # capturing does not stop export


def test_a_capture_belongs_to_its_context_not_to_the_trace(otel_logs):
    tracer = trace.get_tracer("tests")
    with tracer.start_as_current_span("request"):
        with capture() as first:
            log.info("first run")
        with capture() as second:
            log.info("second run")
        log.info("outside both")
    assert [r.message for r in first.records] == ["first run"]
    assert [r.message for r in second.records] == ["second run"]


def test_a_capture_receives_its_tasks_threads_and_child_spans_but_not_a_sibling(otel_logs):
    import contextvars
    import threading

    tracer = trace.get_tracer("tests")

    async def main():
        async def sibling():
            with capture() as other:
                log.info("sibling")
                await asyncio.sleep(0)
            return other

        with capture() as cap:
            task = asyncio.create_task(asyncio.sleep(0, result=None))
            await task
            await asyncio.create_task(_log_async("in a task"))
            copied = contextvars.copy_context()
            thread = threading.Thread(target=copied.run, args=(log.info, "in a thread"))
            thread.start()
            thread.join()
            with tracer.start_as_current_span("child"):
                log.info("in a child span")
            other = await sibling()
        return cap, other

    async def _log_async(text):
        log.info(text)

    cap, other = asyncio.run(main())
    assert [r.message for r in cap.records] == ["in a task", "in a thread", "in a child span", "sibling"]
    assert [r.message for r in other.records] == ["sibling"]  # nested inside cap: both receive it


def test_capture_applies_each_records_session_level(otel_logs):
    with session(session_id="s", log_level="ERROR"), capture() as cap:
        log.info("below the session level")
        log.error("kept")
    assert [r.message for r in cap.records] == ["kept"]


def test_concurrent_captures_never_see_each_others_records(otel_logs):
    async def run(i: int):
        with session(session_id=f"s{i}", log_level="DEBUG" if i % 2 else "ERROR"), capture() as cap:
            for n in range(5):
                log.debug("debug %d.%d", i, n)
                log.error("error %d.%d", i, n)
                await asyncio.sleep(0)
        return i, cap

    async def main():
        return await asyncio.gather(*(run(i) for i in range(20)))

    for i, cap in asyncio.run(main()):
        assert all(r.session_id == f"s{i}" for r in cap.records)
        assert len(cap.records) == (10 if i % 2 else 5)
        assert all(m.split()[1].startswith(f"{i}.") for m in (r.message for r in cap.records))
    assert registry.open_count == 0


def test_record_limit_evicts_oldest_and_says_how_many_were_dropped(otel_logs):
    otel_logs.configure(capture_max_records=3)
    with capture() as cap:
        for i in range(10):
            log.info("line %d", i)
    assert [r.message for r in cap.records] == ["line 7", "line 8", "line 9"]
    assert cap.dropped == 7
    first = cap.render().splitlines()[0]
    assert "7 earlier records dropped" in first


def test_byte_limit_evicts_oldest(otel_logs):
    otel_logs.configure(capture_max_bytes=3_000)
    with capture() as cap:
        for i in range(10):
            log.info("%d %s", i, "x" * 500)
    kept = cap.records
    assert 1 <= len(kept) < 10 and kept[-1].message.startswith("9 ")
    assert cap.dropped == 10 - len(kept)
    assert cap.render().startswith(f"[{cap.dropped} earlier records dropped")


def test_open_capture_cap_refuses_new_captures_with_one_warning(otel_logs):
    otel_logs.configure(capture_max_open=2)
    with capture() as a, capture() as b:
        with capture() as refused, capture() as refused_too:
            log.info("while full")
        assert [r.message for r in a.records][-1] == "while full"  # after the refusal warning
    assert b.records == a.records  # b is nested in a: both see it
    assert refused.records == [] and refused_too.records == []
    assert "capture not started: 2 captures already open (capture_max_open=2)" in refused.render()
    warnings = [r for r in otel_logs.records if "Capture refused" in r.message]
    assert len(warnings) == 1
    with capture() as again:  # the cap frees up when captures close
        log.info("room again")
    assert [r.message for r in again.records] == ["room again"]


def test_idle_captures_are_discarded_after_the_ttl(otel_logs):
    otel_logs.configure(capture_idle_ttl_s=0.05)
    abandoned_scope = capture()
    abandoned = abandoned_scope.__enter__()  # a crashed task never exits its capture
    log.info("logged before it went idle")
    context.detach(abandoned_scope._token)  # leave the context as a finished task would
    abandoned_scope._token = None
    time.sleep(0.2)
    with capture():
        pass  # opening a capture sweeps idle ones
    assert abandoned.records == []
    assert "discarded after 0.05 s without activity" in abandoned.render()
    assert registry.open_count == 0


def test_no_capture_means_no_buffering(otel_logs):
    log.info("nobody is capturing")
    assert registry.open_count == 0


# --- what a capture keeps: the record as it was when it was emitted, at its real size ---------------


class _Mutate(LogRecordProcessor):
    """A processor behind ours that changes the live record (a host's enricher, say)."""

    def __init__(self, inner: LogRecordProcessor) -> None:
        self.inner = inner

    def on_emit(self, log_record):  # type: ignore[override]
        lr = log_record.log_record
        lr.attributes["session.id"] = "rewritten"  # type: ignore[index]
        lr.attributes["late"] = "added after us"  # type: ignore[index]
        lr.body = "rewritten body"
        lr.severity_text = "LATE"
        self.inner.on_emit(log_record)

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def _mutating_pipeline():
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

    from otel_session._processor import SessionLogProcessor
    from tests.helpers.wire import SerialisingExporter

    exporter = SerialisingExporter()
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(SessionLogProcessor(_Mutate(SimpleLogRecordProcessor(exporter))))
    return provider.get_logger("tests.capture.mutated"), exporter


def test_a_capture_keeps_the_record_as_emitted_whatever_a_later_processor_changes(otel_logs):
    from opentelemetry._logs import LogRecord, SeverityNumber

    from tests.helpers.wire import attributes

    logger, exporter = _mutating_pipeline()
    with session(session_id="s-1", user_id="u-1"), capture() as cap:
        logger.emit(LogRecord(body="only ours", severity_number=SeverityNumber.INFO, context=context.get_current()))
        logger.emit(LogRecord(body="with the caller's", severity_number=SeverityNumber.INFO,
                              attributes={"job": 7, "tags": ["a", "b"]}, context=context.get_current()))
    first, second = cap.records
    assert (first.message, first.level, dict(first.attributes)) == (
        "only ours", "INFO", {"session.id": "s-1", "user.id": "u-1"})
    assert (second.message, dict(second.attributes)) == (
        "with the caller's", {"job": 7, "tags": ("a", "b"), "session.id": "s-1", "user.id": "u-1"})
    wire = [(record.body.string_value, attributes(record)) for _, record, _ in exporter.decoded()]
    assert wire[0] == ("rewritten body", {"session.id": "rewritten", "user.id": "u-1", "late": "added after us"})


def test_records_sharing_the_sessions_attributes_each_get_their_own_copy(otel_logs):
    with session(session_id="s-2"), capture() as cap:
        log.info("one")
        log.info("two")
    one, two = cap.records
    assert type(one.attributes) is dict and one.attributes == two.attributes == {"session.id": "s-2"}
    assert one.attributes is not two.attributes
    assert cap.records == [one, two] and cap.records[0] is one  # read once, then the same Records


def test_a_captures_bytes_are_the_real_size_of_what_it_holds(otel_logs):
    from otel_session import add_redaction
    from otel_session._record import record_size

    with session(session_id="s-3", user_id="u-3", user_name="Ada"), capture() as cap:
        log.info("session attributes only")
        log.info("and the caller's", extra={"rows": ["x" * 100] * 10, "n": 3})
        log.info("the caller's session id wins", extra={"session.id": "caller"})
    add_redaction("secret-[0-9]+")
    with session(session_id="secret-42"), capture() as redacted:
        log.info("redacted attributes")
    for kept in (cap, redacted):
        assert kept.size == sum(record_size(r) for r in kept.records) > 0
    assert redacted.records[0].attributes["session.id"] != "secret-42"


def test_a_debug_grant_changes_what_is_exported_never_what_a_capture_shows(otel_logs):
    """An operator's grant for session `s` exports its DEBUG records; the capture without a level (the
    session's own export level) keeps what it kept before, so no DEBUG line reaches the user's citation."""
    import otel_session
    from otel_session._grant_table import NO_GRANTS, GrantTable
    from otel_session._state import STATE

    log = logging.getLogger("tests.capture.grant")
    STATE.set_grants(GrantTable(by_session={"s-granted": (logging.DEBUG, "g-1")}))
    try:
        with otel_session.session(session_id="s-granted", log_level="INFO"), otel_session.capture() as run:
            log.debug("for the operator")
            log.info("for the user")
    finally:
        STATE.set_grants(NO_GRANTS)
    assert [r.message for r in run.records] == ["for the user"]
    assert "for the operator" not in run.render()
    assert otel_logs.messages() == ["for the operator", "for the user"]


def test_a_context_kept_alive_after_its_capture_closed_no_longer_arms_the_gate(otel_logs):
    """A record queued for export keeps its Context (SDK 1.42's batch queue does): once the capture
    closed, that context asks for nothing, so a disabled call elsewhere costs what it costs without us."""
    from opentelemetry import context

    import otel_session
    from otel_session._state import STATE

    kept = []
    with otel_session.session(session_id="s-kept"), otel_session.capture(level="DEBUG"):
        logging.getLogger("tests.capture.kept").debug("kept by the capture")
        kept.append(context.get_current())  # what a queued record holds
        assert STATE.asking.armed
    assert not STATE.asking.armed
    with otel_session.session(session_id="s-asks", log_level="DEBUG"), otel_session.capture(level="DEBUG"):
        kept.append(context.get_current())
    assert STATE.asking.armed  # its export level still asks, as long as the context lives
    kept.clear()
    assert not STATE.asking.armed
