import logging

log = logging.getLogger("tests.plugin")


def test_fixture_filters_by_session_and_level(otel_logs):
    from otel_session import session

    with session(session_id="a", log_level="DEBUG"):
        log.debug("a debug")
        log.error("a error")
    with session(session_id="b"):
        log.info("b info")
    assert [r.message for r in otel_logs.for_session("a")] == ["a debug", "a error"]
    assert [r.message for r in otel_logs.for_session("b")] == ["b info"]
    assert otel_logs.for_session("nobody") == []
    assert otel_logs.messages() == ["a debug", "a error", "b info"]
    assert otel_logs.messages("INFO") == ["a error", "b info"]
    assert otel_logs.messages(logging.ERROR) == ["a error"]
    otel_logs.clear()
    assert otel_logs.records == []


def test_each_test_starts_from_the_defaults(otel_logs):
    otel_logs.configure(level="ERROR", capture_max_records=1)
    log.warning("dropped")
    assert otel_logs.records == []


def test_settings_do_not_leak_from_the_previous_test(otel_logs):
    log.warning("kept at the default INFO")
    assert otel_logs.messages() == ["kept at the default INFO"]
    from otel_session._state import STATE

    assert STATE.captures.limits["capture_max_records"] == 10_000


def test_the_plugin_is_registered_through_its_entry_point(pytestconfig):
    assert pytestconfig.pluginmanager.get_plugin("otel_session") is not None
