import asyncio
import logging
import sys

import pytest

pytest.importorskip("loguru")

from loguru import logger

import otel_session
from otel_session import _loguru_bridge as bridge
from otel_session import capture, install_loguru_bridge, session


@pytest.fixture(autouse=True)
def _bridge():
    install_loguru_bridge()


def _messages(records, session_id):
    return [r.message for r in records if r.session_id == session_id]


def test_records_carry_the_session_ids_and_follow_its_level(otel_logs):
    with session(session_id="s-debug", user_id="u-1", log_level="DEBUG"):
        logger.debug("debug line")
        logger.info("info line")
    with session(session_id="s-error", log_level="ERROR"):
        logger.info("dropped info")
        logger.error("kept error")
    records = otel_logs.records
    assert _messages(records, "s-debug") == ["debug line", "info line"]
    assert _messages(records, "s-error") == ["kept error"]
    debug = next(r for r in records if r.message == "debug line")
    assert debug.attributes["user.id"] == "u-1"
    assert (debug.level, debug.logger) == ("DEBUG", __name__)  # the loguru record's module


def test_outside_a_session_the_process_default_applies(otel_logs):
    logger.debug("below the default")
    logger.info("at the default")
    assert otel_logs.messages() == ["at the default"]
    assert otel_logs.records[0].session_id is None


def test_trace_records_need_the_bridge_installed_at_trace(otel_logs):
    with session(session_id="s-trace", log_level=5):
        logger.trace("not forwarded at the default bridge level")
    assert otel_logs.records == []


def test_levels_map_one_to_one_and_keep_loguru_names(otel_logs):
    install_loguru_bridge("TRACE")
    with session(session_id="s-trace", log_level=5):
        logger.trace("trace line")
        logger.success("success line")
        logger.warning("warning line")
        logger.critical("critical line")
    with session(session_id="s-debug", log_level="DEBUG"):
        logger.trace("below DEBUG")
    install_loguru_bridge()
    levels = {r.message: (r.level, r.severity_number) for r in otel_logs.records}
    assert levels == {
        "trace line": ("TRACE", 0),  # below DEBUG the stdlib bridge has no severity number
        "success line": ("SUCCESS", 12),  # INFO4, as a stdlib record at level 25
        "warning line": ("WARN", 13),  # as any stdlib WARNING record
        "critical line": ("FATAL", 21),
    }


def test_the_stdlib_record_has_the_loguru_call_site_time_and_level(otel_logs):
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record)

    handler = Keep()
    target = logging.getLogger(__name__)
    target.addHandler(handler)
    try:
        with session(session_id="s", log_level="DEBUG"):
            logger.success("100% {}", "done")
            line = sys._getframe().f_lineno - 1
    finally:
        target.removeHandler(handler)
    (rec,) = seen
    assert (rec.name, rec.levelno, rec.levelname) == (__name__, 25, "SUCCESS")
    assert rec.getMessage() == "100% done"  # already formatted by loguru; no %-formatting again
    assert (rec.pathname, rec.lineno, rec.funcName) == (__file__, line, sys._getframe().f_code.co_name)
    assert rec.exc_info is None and rec.args == ()


def test_exceptions_carry_their_text(otel_logs):
    with session(session_id="s-exc"):
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("it failed")
    (record,) = otel_logs.for_session("s-exc")
    assert (record.message, record.level) == ("it failed", "ERROR")
    assert record.exception is not None
    assert "Traceback" in record.exception and "ValueError: boom" in record.exception
    assert record.attributes["exception.type"] == "ValueError"


def test_installing_again_adds_no_second_sink(otel_logs):
    for _ in range(5):
        install_loguru_bridge()
    otel_session.install_loguru_bridge()
    logger.info("once")
    assert otel_logs.messages() == ["once"]


def test_installing_again_restores_a_removed_sink(otel_logs):
    logger.remove(bridge._handler_id)
    logger.info("lost")
    install_loguru_bridge()
    logger.info("back")
    assert otel_logs.messages() == ["back"]


def test_concurrent_sessions_keep_their_own_ids_and_levels(otel_logs):
    async def run(session_id: str, level: str) -> None:
        async with session(session_id=session_id, log_level=level):
            for n in range(5):
                logger.debug("debug {} {}", session_id, n)
                await asyncio.sleep(0)
                logger.error("error {} {}", session_id, n)
                await asyncio.sleep(0)

    async def main() -> None:
        await asyncio.gather(run("s-debug", "DEBUG"), run("s-error", "ERROR"))

    asyncio.run(main())
    records = otel_logs.records
    assert _messages(records, "s-debug") == [f"{kind} s-debug {n}" for n in range(5) for kind in ("debug", "error")]
    assert _messages(records, "s-error") == [f"error s-error {n}" for n in range(5)]
    assert all(r.session_id in ("s-debug", "s-error") for r in records)


def test_records_logged_inside_a_capture_are_captured(otel_logs):
    logger.info("before")
    with session(session_id="s-cap", log_level="DEBUG"), capture() as run:
        logger.debug("captured debug")
        logging.getLogger("tests.stdlib").info("captured stdlib")
        logger.info("captured info")
    logger.info("after")
    assert [r.message for r in run.records] == ["captured debug", "captured stdlib", "captured info"]
    assert all(r.session_id == "s-cap" for r in run.records)
    assert "DEBUG " + __name__ + ": captured debug" in run.render()


class InterceptHandler(logging.Handler):  # loguru's documented recipe: stdlib records into loguru
    def emit(self, record):
        frame, depth = logging.currentframe(), 2
        while frame and frame.f_code.co_filename == logging.__file__:
            frame = frame.f_back
            depth += 1
        logger.opt(depth=depth, exception=record.exc_info).log(record.levelname, record.getMessage())


@pytest.fixture
def intercepted():
    intercept = InterceptHandler()
    root = logging.getLogger()
    root.addHandler(intercept)
    yield
    root.removeHandler(intercept)


def _log_both_ways():
    with session(session_id="s-int"):
        logging.getLogger("tests.stdlib").warning("from the stdlib")
        logger.warning("from loguru")


def test_stdlib_records_intercepted_into_loguru_are_neither_looped_nor_doubled(otel_logs, intercepted):
    _log_both_ways()
    assert _messages(otel_logs.records, "s-int") == ["from the stdlib", "from loguru"]


def test_the_reentrancy_flag_alone_stops_the_loop(otel_logs, intercepted, monkeypatch):
    monkeypatch.setattr(bridge, "_from_stdlib", lambda: False)  # without the stack check: one copy, no loop
    _log_both_ways()
    assert _messages(otel_logs.records, "s-int") == ["from the stdlib", "from the stdlib", "from loguru"]


def test_a_missing_loguru_is_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "loguru", None)
    with pytest.raises(ImportError, match=r"pip install 'otel-session\[loguru\]'"):
        install_loguru_bridge()


def test_the_bridge_follows_the_per_context_rule(otel_logs):
    import threading

    ready, done = threading.Event(), threading.Event()

    def loud() -> None:
        with session(session_id="loud", log_level="DEBUG"):
            logger.debug("loud loguru debug")
            ready.set()
            done.wait(5)

    thread = threading.Thread(target=loud)
    thread.start()
    ready.wait(5)
    with session(session_id="quiet"):
        logger.debug("not forwarded: nobody asked here")
        with capture(level="DEBUG") as cap:
            logger.debug("for the citation only")
    done.set()
    thread.join()
    assert [r.message for r in cap.records] == ["for the citation only"]
    assert otel_logs.messages() == ["loud loguru debug"]
