"""Fails loudly when the SDK, the API or the stdlib change the internals the library leans on
(`otel_session._sdk`, `otel_session._stdlib`, the Context meaning cache)."""

import logging
import time

from opentelemetry import context as otel_context
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk._logs import LoggerProvider, LogRecordLimits, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

from otel_session import _sdk, _severity, _stdlib, session
from otel_session._processor import SessionLogProcessor

ITEMS = (("session.id", "s"), ("user.id", "u"))


def _record(attributes=None, limits=None):
    kwargs = {"limits": limits} if limits else {}
    return ReadWriteLogRecord(LogRecord(body="x", attributes=attributes), **kwargs)


def test_the_attribute_fast_path_is_taken_on_this_sdk():
    record = _record({"a": 1})
    attributes = record.log_record.attributes
    assert type(attributes) is BoundedAttributes
    assert type(attributes._dict) is dict and attributes._immutable is False
    _sdk.add_attributes(record.log_record, ITEMS, 1)
    assert dict(record.log_record.attributes) == {"a": 1, "session.id": "s", "user.id": "u"}
    copied = _sdk.attributes_copy(attributes)
    assert copied == dict(attributes) and copied is not attributes._dict
    assert _sdk.raw_attributes(attributes) is attributes._dict and _sdk.raw_attributes(None) is None


def test_existing_attributes_win_and_at_a_count_limit_the_callers_attributes_stay():
    record = _record({"session.id": "caller"})
    _sdk.add_attributes(record.log_record, ITEMS, 1)
    assert record.log_record.attributes["session.id"] == "caller"

    full = _record({"a": 1, "b": 2}, LogRecordLimits(max_attributes=2))
    _sdk.add_attributes(full.log_record, ITEMS, 1)
    assert dict(full.log_record.attributes) == {"a": 1, "b": 2}  # none of the caller's evicted

    room = _record({"a": 1}, LogRecordLimits(max_attributes=2))
    _sdk.add_attributes(room.log_record, ITEMS, 1)
    assert dict(room.log_record.attributes) == {"a": 1, "session.id": "s"}  # ours only while there is room

    short = _record(None, LogRecordLimits(max_attribute_length=3))
    _sdk.add_attributes(short.log_record, (("user.name", "abcdef"),), 6)
    assert short.log_record.attributes["user.name"] == "abc"


def test_severity_lookup_covers_every_member_and_plain_ints():
    assert [_severity.severity_value(s) for s in SeverityNumber] == [s.value for s in SeverityNumber]
    assert _severity.severity_value(None) == 0
    assert _severity.severity_value(17) == 17


def test_put_first_wraps_the_providers_processors_and_those_added_later():
    provider = LoggerProvider(shutdown_on_exit=False)
    early, late = InMemoryLogRecordExporter(), InMemoryLogRecordExporter()
    provider.add_log_record_processor(SimpleLogRecordProcessor(early))
    gate = SessionLogProcessor()
    assert _sdk.put_first(provider, gate)
    assert provider._multi_log_record_processor._log_record_processors == (gate,)
    provider.add_log_record_processor(SimpleLogRecordProcessor(late))
    assert provider._multi_log_record_processor._log_record_processors == (gate,)
    provider.get_logger("t").emit(LogRecord(body="through the gate", severity_number=SeverityNumber.INFO))
    assert [r.log_record.body for r in early.get_finished_logs()] == ["through the gate"]
    assert [r.log_record.body for r in late.get_finished_logs()] == ["through the gate"]


def test_the_runtime_context_has_the_shape_we_read():
    runtime = otel_context._RUNTIME_CONTEXT
    assert _sdk.current_context == runtime._current_context.get
    with session(session_id="s"):
        assert _sdk.current_context() is otel_context.get_current()
    ctx = Context()
    ctx._otel_session_meaning = "cached"  # the meaning cache lives on the Context object
    assert vars(ctx) == {"_otel_session_meaning": "cached"}


def test_detach_reports_a_token_from_another_context():
    import contextvars

    token = contextvars.copy_context().run(otel_context.attach, Context())
    assert _sdk.detach(token) is False
    assert _sdk.detach(otel_context.attach(Context())) is True


def test_the_stdlib_logger_internals_we_use():
    logger = logging.getLogger("tests.internals.child")
    assert isinstance(logger._cache, dict)
    logger.isEnabledFor(logging.INFO)
    assert logging.INFO in logger._cache
    logging.getLogger("tests.internals").setLevel(logging.DEBUG)  # any level change clears every cache
    assert logging.INFO not in logger._cache
    assert isinstance(logging.Logger.manager.disable, int)
    assert logging.Logger.manager.loggerDict["tests.internals.child"] is logger
    original = logging.Logger.isEnabledFor
    _stdlib.install()
    assert logging.Logger.isEnabledFor is _stdlib.is_enabled_for
    _stdlib.uninstall()
    assert logging.Logger.isEnabledFor is original is _stdlib._stdlib_is_enabled_for
    logging.getLogger("tests.internals").setLevel(logging.NOTSET)
    # `_stdlib.call_handlers` (held records to our handler alone) replaces the method `Logger.handle` calls
    import inspect

    assert "self.callHandlers(record)" in inspect.getsource(logging.Logger.handle)
    assert _stdlib._stdlib_call_handlers.__qualname__ == "Logger.callHandlers"


def test_a_derived_record_keeps_the_templates_time_trace_and_scope_and_leaves_it_alone():
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    template = ReadWriteLogRecord(
        LogRecord(timestamp=123, trace_id=7, span_id=9, body="held", severity_number=SeverityNumber.DEBUG,
                  severity_text="DEBUG", attributes={"session.id": "s", "big": "x" * 10}),
        instrumentation_scope=InstrumentationScope("tests.scope"))
    derived = _sdk.derived_record(template, "notice", 13, "WARN", {"session.id": "s", "n": 3})
    assert type(derived) is ReadWriteLogRecord and derived is not template
    lr = derived.log_record
    assert (lr.timestamp, lr.trace_id, lr.span_id) == (123, 7, 9)
    assert (lr.body, lr.severity_number, lr.severity_text) == ("notice", SeverityNumber.WARN, "WARN")
    assert dict(lr.attributes) == {"session.id": "s", "n": 3} and type(lr.attributes) is BoundedAttributes
    assert derived.instrumentation_scope.name == "tests.scope" and derived.resource is template.resource
    assert template.log_record.body == "held" and dict(template.log_record.attributes)["big"] == "x" * 10
    (encoded,) = encode_logs([derived]).resource_logs[0].scope_logs[0].log_records  # the exporters' encoder
    assert encoded.body.string_value == "notice" and encoded.time_unix_nano == 123


def test_the_logging_handler_parts_the_bridge_reuses():
    from opentelemetry.instrumentation.logging.handler import LoggingHandler

    from otel_session._handler import BridgeHandler

    provider = LoggerProvider()
    guard, translate, found = _sdk.logging_handler_parts(LoggingHandler(logger_provider=provider))
    assert found is provider and guard.get() is False
    token = guard.set(True)
    guard.reset(token)
    record = logging.LogRecord("tests.internals", logging.WARNING, __file__, 1, "hello %s", ("there",), None)
    assert translate(record).body == "hello there"
    assert BridgeHandler(provider)._provider is provider


def test_an_unknown_logging_handler_shape_is_refused_by_name():
    import pytest

    class Other:
        _logger_provider = object()

    with pytest.raises(TypeError, match="LoggingHandler has an unknown shape"):
        _sdk.logging_handler_parts(Other())


def test_the_key_the_sdks_exporters_suppress_their_own_telemetry_with():
    from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY

    assert _sdk.SUPPRESS_KEY is not None and _sdk.SUPPRESS_KEY == _SUPPRESS_INSTRUMENTATION_KEY


def test_the_batch_queues_drops_are_counted_where_the_sdk_drops_them():
    import threading

    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter, LogRecordExportResult

    release = threading.Event()

    class Stuck(LogRecordExporter):  # holds the worker in export, as an unreachable Collector does
        def export(self, batch):
            release.wait(10)
            return LogRecordExportResult.SUCCESS

        def shutdown(self):
            release.set()

        def force_flush(self, timeout_millis=30000):
            return True

    processor = BatchLogRecordProcessor(Stuck(), max_queue_size=4, max_export_batch_size=2,
                                        schedule_delay_millis=60000)
    dropped: list[int] = []
    assert _sdk.count_queue_drops(processor, dropped.append)
    assert _sdk.count_queue_drops(processor, dropped.append)  # once is enough: not counted twice
    queue = processor._batch_processor._queue
    for _ in range(2):
        processor.on_emit(_record())
    deadline = time.monotonic() + 10
    while queue and time.monotonic() < deadline:  # the worker took them and is stuck exporting
        time.sleep(0.01)
    for _ in range(7):
        processor.on_emit(_record())
    assert dropped == [1, 1, 1] and len(queue) == 4  # the bound, and each record over it, where the SDK drops it
    release.set()
    processor.shutdown()
    assert _sdk.count_queue_drops(object(), dropped.append) is False  # another shape: nothing counted, no error


def test_the_otlp_exporters_credential_provider_variables_are_the_ones_we_read(monkeypatch):
    """With one set, the SDK's OTLP/HTTP exporter loads its own session, and configure() leaves it that
    session (its failures are then all retried, as they cannot be told apart)."""
    for name in ("OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER",
                 "OTEL_PYTHON_EXPORTER_OTLP_HTTP_LOGS_CREDENTIAL_PROVIDER"):
        monkeypatch.delenv("OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER", raising=False)
        monkeypatch.delenv("OTEL_PYTHON_EXPORTER_OTLP_HTTP_LOGS_CREDENTIAL_PROVIDER", raising=False)
        assert _sdk.otlp_credential_provider() is None
        monkeypatch.setenv(name, "corp-auth")
        assert _sdk.otlp_credential_provider() == "corp-auth"
