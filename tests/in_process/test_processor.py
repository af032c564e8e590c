import asyncio
import contextvars
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from opentelemetry import baggage, context
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LogRecordProcessor
from opentelemetry.sdk._logs.export import LogRecordExporter

from otel_session import SessionLogProcessor, configure, session

log = logging.getLogger("tests.processor")


def test_records_carry_the_session_ids_from_their_own_context(otel_logs):
    with session(session_id="s-1", user_id="u-1", user_name="Ada"):
        log.info("hello")
    log.info("outside")
    inside, outside = otel_logs.records
    assert inside.attributes["session.id"] == "s-1"
    assert inside.attributes["user.id"] == "u-1"
    assert inside.attributes["user.name"] == "Ada"
    assert "otel_session.log_level" not in inside.attributes
    assert "session.id" not in outside.attributes


def test_an_attribute_the_caller_set_is_never_overwritten(otel_logs):
    with session(session_id="from-baggage"):
        log.info("explicit", extra={"session.id": "from-caller"})
    assert otel_logs.records[0].attributes["session.id"] == "from-caller"


def test_only_allowed_baggage_keys_are_copied(otel_logs):
    with session(session_id="s", extra={"bot.launch_id": "L-1", "tenant.name": "acme"}):
        log.info("default keys")
        otel_logs.configure(baggage_keys=("session.id", "bot.*"))
        log.info("custom keys")
    default, custom = otel_logs.records
    assert "bot.launch_id" not in default.attributes and default.attributes["session.id"] == "s"
    assert custom.attributes["bot.launch_id"] == "L-1"
    assert "tenant.name" not in custom.attributes


def test_bad_baggage_key_patterns_are_refused():
    with pytest.raises(ValueError, match="trailing"):
        SessionLogProcessor(None, baggage_keys=("session*",))


def test_records_outside_a_session_use_the_default_level(otel_logs):
    otel_logs.configure(level="WARNING")
    log.info("dropped")
    log.warning("kept")
    assert otel_logs.messages() == ["kept"]


def test_concurrent_sessions_at_debug_and_error_each_keep_their_own_level(otel_logs):
    """Two asyncio sessions at once, each also doing work in a thread pool."""
    pool = ThreadPoolExecutor(max_workers=4)
    barrier = threading.Barrier(2)

    def in_thread(sid: str) -> None:
        barrier.wait(timeout=5)  # both sessions are live at the same moment
        log.debug("thread debug %s", sid)
        log.info("thread info %s", sid)
        log.error("thread error %s", sid)

    async def run(sid: str, level: str) -> None:
        with session(session_id=sid, user_id=f"user-{sid}", log_level=level):
            for i in range(20):
                log.debug("debug %s %d", sid, i)
                log.info("info %s %d", sid, i)
                log.error("error %s %d", sid, i)
                await asyncio.sleep(0)
            loop = asyncio.get_running_loop()
            ctx = contextvars.copy_context()  # a plain executor does not carry the context
            await loop.run_in_executor(pool, ctx.run, in_thread, sid)
            await asyncio.to_thread(log.debug, "to_thread debug %s", sid)

    async def main() -> None:
        await asyncio.gather(run("loud", "DEBUG"), run("quiet", "ERROR"))

    asyncio.run(main())
    pool.shutdown()
    loud, quiet = otel_logs.for_session("loud"), otel_logs.for_session("quiet")
    assert {r.attributes["user.id"] for r in loud} == {"user-loud"}
    assert {r.attributes["user.id"] for r in quiet} == {"user-quiet"}
    assert len(loud) == 20 * 3 + 3 + 1
    assert [r.level for r in quiet] == ["ERROR"] * 21
    assert all("quiet" in r.message for r in quiet) and all("loud" in r.message for r in loud)
    assert "to_thread debug loud" in [r.message for r in loud]
    assert len(otel_logs.records) == len(loud) + len(quiet)  # nothing without a session


def test_concurrent_threads_with_their_own_sessions(otel_logs):
    barrier = threading.Barrier(4)

    def work(i: int) -> None:
        level = "DEBUG" if i % 2 else "ERROR"
        with session(session_id=f"t{i}", log_level=level):
            barrier.wait(timeout=5)
            for _ in range(50):
                log.debug("d")
                log.error("e")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(4):
        levels = [r.level for r in otel_logs.for_session(f"t{i}")]
        assert levels.count("ERROR") == 50
        assert levels.count("DEBUG") == (50 if i % 2 else 0)


def test_enabled_answers_by_the_session_level():
    processor = SessionLogProcessor(None)
    with session(session_id="s", log_level="ERROR"):
        ctx = context.get_current()
    assert processor.enabled(context=ctx, severity_number=SeverityNumber.ERROR)
    assert not processor.enabled(context=ctx, severity_number=SeverityNumber.WARN)
    assert not processor.enabled(context=context.Context(), severity_number=SeverityNumber.DEBUG)
    assert processor.enabled(context=baggage.set_baggage("otel_session.log_level", "DEBUG"),
                             severity_number=SeverityNumber.DEBUG)


class _RaisingProcessor(LogRecordProcessor):
    def on_emit(self, log_record):  # type: ignore[override]
        raise RuntimeError("processor broke")

    def shutdown(self):
        pass

    def force_flush(self, timeout_millis=30000):
        return True


class _RaisingExporter(LogRecordExporter):
    def export(self, batch):  # type: ignore[override]
        raise RuntimeError("exporter broke")

    def shutdown(self):
        pass

    def force_flush(self, timeout_millis=30000):
        return True


def test_a_failing_inner_processor_or_exporter_never_breaks_the_callers_log_call(otel_logs, capsys):
    telemetry = otel_logs.telemetry
    telemetry.processor.inner = _RaisingProcessor()
    with session(session_id="s"):
        log.info("lost but harmless")
        log.error("also harmless")
    assert telemetry.processor.errors == 2
    assert "log record lost" in capsys.readouterr().err
    configure(exporter=_RaisingExporter())
    log.warning("exporter raises")  # the SDK's simple processor reports it; the call returns
    otel_logs.configure()
    log.warning("after recovery")
    assert otel_logs.messages() == ["after recovery"]
