import logging
import os
import subprocess
import sys
import textwrap

import pytest
from opentelemetry._logs import get_logger_provider
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter

from otel_session import SessionLogProcessor, configure, session
from otel_session._configure import _exporter_name

log = logging.getLogger("tests.configure")


def _our_handlers():
    return [h for h in logging.getLogger().handlers if isinstance(h, LoggingHandler)]


def _our_processors(provider):
    return [p for p in provider._multi_log_record_processor._log_record_processors
            if isinstance(p, SessionLogProcessor)]


def test_configure_is_idempotent_and_re_points_the_pipeline(otel_logs):
    first = configure(exporter="memory")
    provider = get_logger_provider()
    for _ in range(10):
        configure(exporter="memory")
    second = configure(exporter="memory", level="ERROR")
    assert get_logger_provider() is provider  # OTel's set-once global is untouched
    assert len(_our_handlers()) == 1
    assert len(_our_processors(provider)) == 1
    assert second.processor is first.processor
    log.warning("below the new default")
    log.error("goes to the newest exporter only")
    assert [r.log_record.body for r in second.memory_exporter.get_finished_logs()] == [
        "goes to the newest exporter only"
    ]
    assert first.memory_exporter.get_finished_logs() == ()


def test_a_different_service_name_later_is_ignored_with_a_warning(otel_logs, caplog):
    telemetry = configure(service_name="someone-else", exporter="memory")
    assert telemetry.service_name == "otel-session-tests"
    assert any("already logs as 'otel-session-tests'" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "file"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, "otlp"),
        ({"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://127.0.0.1:4318/v1/logs"}, "otlp"),
        ({"OTEL_LOGS_EXPORTER": "console", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}, "console"),
        ({"OTEL_LOGS_EXPORTER": " None "}, "none"),
        ({"OTEL_LOGS_EXPORTER": "memory,otlp"}, "memory"),
    ],
)
def test_exporter_choice_follows_the_standard_variables(env, expected, monkeypatch):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert _exporter_name(None) == expected


def test_unknown_exporters_and_bad_limits_are_refused_before_anything_changes(otel_logs):
    before = otel_logs.telemetry.processor.inner
    with pytest.raises(ValueError, match="use one of otlp, file, console, memory, none"):
        configure(exporter="kafka")
    with pytest.raises(ValueError, match="capture_max_records must be a positive number"):
        configure(exporter="memory", capture_max_records=0)
    with pytest.raises(ValueError, match="invalid log level"):
        configure(exporter="memory", level="LOUD")
    with pytest.raises(TypeError, match="LogRecordExporter"):
        configure(exporter=object())  # type: ignore[arg-type]
    assert otel_logs.telemetry.processor.inner is before


_DEFAULT_LEVEL_SCRIPT = """
import logging, otel_session
otel_session.configure(exporter="memory")
first = logging.getLogger().level
logging.getLogger().setLevel(logging.WARNING)  # the app's own configuration, after ours
otel_session.configure(exporter="memory")  # a later call (a reloaded plugin) leaves it alone
print(first, logging.getLogger().level)
"""


@pytest.mark.parametrize(("env", "first"), [
    ({"OTEL_PYTHON_LOG_LEVEL": "error"}, logging.ERROR),  # the logging instrumentation's variable
    ({}, logging.INFO),
    ({"GLOBAL_LOG_LEVEL": "ERROR"}, logging.INFO),  # Open WebUI's word: the manifold's and the bot's, not ours
])
def test_the_first_configure_takes_its_default_level_from_otel_python_log_level(env, first):
    env = {**{k: v for k, v in os.environ.items() if k not in ("OTEL_PYTHON_LOG_LEVEL", "GLOBAL_LOG_LEVEL")}, **env}
    out = subprocess.run([sys.executable, "-c", _DEFAULT_LEVEL_SCRIPT], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == [str(first), str(logging.WARNING)]


def test_a_bad_otel_python_log_level_is_refused_by_name():
    env = {**os.environ, "OTEL_PYTHON_LOG_LEVEL": "loud"}
    out = subprocess.run([sys.executable, "-c", _DEFAULT_LEVEL_SCRIPT], env=env, capture_output=True, text=True)
    assert out.returncode == 1 and "OTEL_PYTHON_LOG_LEVEL='loud': invalid log level" in out.stderr


def test_a_session_level_exports_below_the_apps_level(otel_logs):
    otel_logs.configure(level="ERROR")
    log.warning("dropped")
    with session(session_id="s", log_level="WARNING"):
        log.warning("the session's own level wins")
    assert otel_logs.messages() == ["the session's own level wins"]


def test_the_none_exporter_still_gates_and_captures(otel_logs):
    from otel_session import capture

    telemetry = configure(exporter="none")
    assert telemetry.exporter is None and telemetry.processor.inner is None
    with capture() as cap:
        log.info("captured, not exported")
    assert [r.message for r in cap.records] == ["captured, not exported"]
    assert otel_logs.exporter.get_finished_logs() == ()


def test_an_exporter_instance_is_used_as_given(otel_logs):
    mine = InMemoryLogRecordExporter()
    telemetry = configure(exporter=mine)
    assert telemetry.memory_exporter is mine
    log.warning("to mine")
    assert len(mine.get_finished_logs()) == 1


def test_it_attaches_to_a_provider_someone_else_set(tmp_path):
    script = textwrap.dedent(
        """
        import logging
        from opentelemetry._logs import set_logger_provider, get_logger_provider
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
        from opentelemetry.sdk.resources import Resource
        theirs = InMemoryLogRecordExporter()
        provider = LoggerProvider(resource=Resource.create({"service.name": "host-app"}))
        provider.add_log_record_processor(SimpleLogRecordProcessor(theirs))
        set_logger_provider(provider)

        from otel_session import configure, session
        for _ in range(3):  # a reloaded plugin configures again and again
            t = configure(service_name="plugin", exporter="memory")
        assert t.attached and t.logger_provider is provider and get_logger_provider() is provider
        assert t.service_name == "host-app"
        with session(session_id="s-host"):
            logging.getLogger("plugin").warning("hello")
        ours = t.memory_exporter.get_finished_logs()
        assert [r.log_record.attributes["session.id"] for r in ours] == ["s-host"]
        theirs = [r.log_record.body for r in theirs.get_finished_logs()]
        assert theirs[-1] == "hello"  # their own processor still gets every record
        assert sum("ignored: this process already logs as 'host-app'" in m for m in theirs) == 1
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "OTEL_SESSION_LOG_DIR": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_a_bad_redis_url_is_refused_before_anything_changes(otel_logs, monkeypatch, how):
    from otel_session import configured
    from otel_session._state import STATE
    from otel_session.live.urls import RedisURLError

    before = configure(exporter="memory", level="INFO")
    live = STATE.live
    bad = "redis+cluster://ops:hunter2-pw@a:7000/3"  # a cluster serves db 0 only
    if how == "environment":
        monkeypatch.setenv("OTEL_SESSION_REDIS_URL", bad)
    with pytest.raises(RedisURLError) as caught:
        configure(exporter="memory", level="ERROR", redis_url=bad if how == "argument" else None)
    assert "db 0 only" in str(caught.value) and "hunter2-pw" not in str(caught.value)
    assert "'redis+cluster://ops@a:7000/3'" in str(caught.value)
    assert configured() is before and STATE.live is live
    assert logging.getLogger().level == logging.INFO  # the level it also asked for did not apply
