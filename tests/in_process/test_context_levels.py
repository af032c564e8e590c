"""Levels follow the record's own context, never the process (the stdlib side of the gate)."""

import io
import logging
import logging.config
import os
import threading

from opentelemetry import baggage, context, propagate

from otel_session import capture, configure, session

log = logging.getLogger("tests.levels.ctx")


def _console() -> tuple[logging.Handler, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logging.getLogger().addHandler(handler)
    return handler, out


def test_a_debug_session_lowers_no_logger_and_other_contexts_create_nothing_new(otel_logs):
    root = logging.getLogger()
    handler, out = _console()
    loud_ready, other_done = threading.Event(), threading.Event()

    def loud() -> None:
        with session(session_id="loud", log_level="DEBUG"):
            log.debug("loud debug")
            loud_ready.set()
            other_done.wait(5)

    try:
        t = threading.Thread(target=loud)
        t.start()
        loud_ready.wait(5)
        assert root.level == logging.INFO and log.level == logging.NOTSET
        assert not log.isEnabledFor(logging.DEBUG)  # in this context nobody asked
        with session(session_id="normal"):
            log.debug("not created")
            log.info("normal info")
        log.debug("not created either")
        other_done.set()
        t.join()
    finally:
        root.removeHandler(handler)
    # The console sees what the app's levels create, plus the records of the context that asked.
    assert out.getvalue().splitlines() == ["DEBUG loud debug", "INFO normal info"]
    assert otel_logs.messages() == ["loud debug", "normal info"]


def test_a_level_the_app_set_on_a_logger_stands_inside_a_session(otel_logs):
    noisy = logging.getLogger("tests.levels.noisy")
    child = logging.getLogger("tests.levels.noisy.child")
    noisy.setLevel(logging.WARNING)
    try:
        with session(session_id="s", log_level="DEBUG"):
            noisy.info("silenced by the app")
            child.debug("inherits the app's WARNING")
            log.debug("inherits the root: follows the session")
    finally:
        noisy.setLevel(logging.NOTSET)
    assert otel_logs.messages() == ["inherits the root: follows the session"]


def test_an_error_session_exports_only_errors_and_leaves_the_apps_level_alone(otel_logs):
    root = logging.getLogger()
    root.setLevel(logging.WARNING)  # the app's own choice, after configure()
    with session(session_id="s", log_level="ERROR"):
        log.warning("below the session's level: not exported")
        log.error("exported")
    assert root.level == logging.WARNING
    log.warning("the app's WARNING still stands")
    assert otel_logs.messages() == ["exported", "the app's WARNING still stands"]


def test_basic_config_and_dict_config_after_configure_stand(otel_logs):
    root = logging.getLogger()
    handlers = list(root.handlers)
    try:
        logging.basicConfig(level=logging.ERROR, force=True)
        configure(exporter=otel_logs.exporter)  # a reloaded plugin configures again
        assert root.level == logging.ERROR
        logging.config.dictConfig({"version": 1, "incremental": True, "root": {"level": "CRITICAL"}})
        with session(session_id="s", log_level="DEBUG"):
            log.debug("the session asks")
        assert root.level == logging.CRITICAL
    finally:
        root.handlers[:] = handlers
        root.setLevel(logging.INFO)
    assert otel_logs.messages() == ["the session asks"]


def test_a_level_in_baggage_applies_whoever_attached_the_context(otel_logs):
    raw = baggage.set_baggage("otel_session.log_level", "DEBUG", baggage.set_baggage("session.id", "raw"))
    token = context.attach(raw)  # OpenTelemetry's own attach, not ours
    try:
        log.debug("raw attach")
    finally:
        context.detach(token)
    extracted = propagate.extract({"baggage": "session.id=asgi,otel_session.log_level=DEBUG"})
    token = context.attach(extracted)  # what an instrumentation (the ASGI middleware) does
    try:
        log.debug("instrumentation attach")
    finally:
        context.detach(token)
    log.debug("no context: not created")
    records = otel_logs.records
    assert [(r.message, r.session_id) for r in records] == [("raw attach", "raw"), ("instrumentation attach", "asgi")]


def test_logging_disable_still_wins(otel_logs):
    logging.disable(logging.INFO)
    try:
        with session(session_id="s", log_level="DEBUG"):
            log.debug("disabled")
            log.info("disabled too")
            log.warning("kept")
    finally:
        logging.disable(logging.NOTSET)
    assert otel_logs.messages() == ["kept"]


def test_a_capture_level_keeps_records_the_export_does_not_get(otel_logs):
    with session(session_id="s"), capture(level="DEBUG") as cap:
        log.debug("for the user only")
        log.info("for both")
    assert [r.message for r in cap.records] == ["for the user only", "for both"]
    assert otel_logs.messages() == ["for both"]


def test_a_user_who_picks_error_does_not_silence_the_platforms_info(otel_logs):
    with session(session_id="s", log_level="INFO"), capture(level="ERROR") as cap:
        log.info("audit trail")
        log.error("failure")
    assert [r.message for r in cap.records] == ["failure"]
    assert otel_logs.messages() == ["audit trail", "failure"]


def test_a_capture_defaults_to_the_session_level_else_the_root_level(otel_logs):
    with session(session_id="s", log_level="WARNING"), capture() as cap:
        log.info("below")
        log.warning("kept")
    with capture() as plain:
        log.debug("below the root's INFO")
        log.info("kept too")
    assert [r.message for r in cap.records] == ["kept"]
    assert [r.message for r in plain.records] == ["kept too"]


def test_a_forked_child_starts_with_no_session_and_the_apps_levels(otel_logs, tmp_path):
    result = tmp_path / "child.txt"
    with session(session_id="parent", log_level="DEBUG"), capture(level="DEBUG") as cap:
        pid = os.fork()
        if pid == 0:  # the child
            try:
                enabled = log.isEnabledFor(logging.DEBUG)
                sid = baggage.get_baggage("session.id")
                result.write_text(f"{enabled} {sid} {logging.getLogger().level}")
                log.debug("child debug")
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        log.debug("parent debug")
    assert os.waitstatus_to_exitcode(status) == 0
    assert result.read_text() == f"False None {logging.INFO}"
    assert [r.message for r in cap.records] == ["parent debug"]


def test_no_lock_of_ours_held_at_a_fork_blocks_the_child(otel_logs, tmp_path):
    import time

    from otel_session._state import STATE

    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with STATE.lock, STATE.captures._lock, STATE.redactor._lock:
            held.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(5)
    try:
        pid = os.fork()
        if pid == 0:
            try:
                configure(exporter="none")
                with session(session_id="child"), capture(level="DEBUG") as cap:
                    log.debug("child")
                os._exit(0 if [r.message for r in cap.records] == ["child"] else 3)
            finally:
                os._exit(4)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise AssertionError("the forked child hung on a lock held in the parent")
    finally:
        release.set()
        thread.join()
    assert os.waitstatus_to_exitcode(status) == 0


def test_the_gate_looks_at_the_context_only_while_some_context_asks(otel_logs):
    import asyncio
    import gc

    from otel_session._state import STATE

    async def background(go: asyncio.Event) -> None:
        await go.wait()
        log.debug("a task that outlived its request's scope")

    async def main() -> None:
        go = asyncio.Event()
        with session(session_id="s", log_level="DEBUG"):
            task = asyncio.create_task(background(go))
        assert STATE.asking.armed  # the task still holds the asking context
        go.set()
        await task

    assert not STATE.asking.armed
    asyncio.run(main())
    assert otel_logs.messages() == ["a task that outlived its request's scope"]
    otel_logs.clear()  # the in-memory exporter keeps the live record, and so its context
    gc.collect()
    assert not STATE.asking.armed  # the last asking context is gone: disabled calls cost nothing extra


def test_in_a_capture_what_the_apps_levels_create_is_still_exported(otel_logs):
    from opentelemetry._logs import LogRecord, SeverityNumber, get_logger_provider

    chatty = logging.getLogger("tests.levels.chatty")
    chatty.setLevel(logging.DEBUG)  # the app asked for this logger's DEBUG
    logging.getLogger("tests.levels.placeholder.child")  # makes "tests.levels.placeholder" a PlaceHolder
    try:
        with capture(level="DEBUG") as cap:
            chatty.debug("the app's own debug")
            log.debug("for the capture only")
            get_logger_provider().get_logger("tests.levels.placeholder").emit(
                LogRecord(body="an API record named like a PlaceHolder", severity_number=SeverityNumber.DEBUG))
    finally:
        chatty.setLevel(logging.NOTSET)
    assert [r.message for r in cap.records] == [
        "the app's own debug", "for the capture only", "an API record named like a PlaceHolder"]
    assert otel_logs.messages() == ["the app's own debug", "an API record named like a PlaceHolder"]
