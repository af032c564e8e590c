"""A process in Open WebUI 0.12's logging shape, with the pipe's logging inside it; prints a JSON
report. Run by tests/processes/test_attach_mode.py in a fresh interpreter (OTel's providers are set once).

The shape, from `open_webui/utils/telemetry/logs.py` and `open_webui/utils/logger.py`: at import the
host creates a `LoggerProvider`, sets it globally, adds a `BatchLogRecordProcessor` (OTLP), and builds
an SDK `LoggingHandler` that is *not* on the root logger; `start_logger()` then calls
`logging.basicConfig(handlers=[InterceptHandler()], level=GLOBAL_LOG_LEVEL, force=True)`, and
`InterceptHandler.emit` sends every record to loguru (console sink at GLOBAL_LOG_LEVEL) and calls
that OTel handler's `emit` directly. Here the host also has a simple processor, and both of its
exporters serialise each batch to OTLP protobuf at export time.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import warnings

from loguru import logger as loguru_logger
from opentelemetry._logs import set_logger_provider
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource

from tests.helpers.wire import SerialisingExporter, attributes

SECRET = "sk-" + "A1b2C3d4E5f6G7h8"


class HostExporter(SerialisingExporter):
    def records(self) -> list[dict[str, object]]:
        return [{"body": record.body.string_value, "severity": record.severity_number, "logger": scope.name,
                 "time": record.time_unix_nano,
                 "session": attributes(record).get("session.id"), "raw": payload.hex()}
                for scope, record, payload in self.decoded()]


# --- the host: open_webui/utils/telemetry/logs.py ----------------------------------------------
os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://127.0.0.1:9"  # the host's, not a request for ours
batch_exporter, simple_exporter = HostExporter(), HostExporter()
provider = LoggerProvider(resource=Resource.create({SERVICE_NAME: "open-webui"}))
set_logger_provider(provider)
provider.add_log_record_processor(BatchLogRecordProcessor(batch_exporter))
provider.add_log_record_processor(SimpleLogRecordProcessor(simple_exporter))
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    otel_handler = LoggingHandler(logger_provider=provider)

# --- the host: open_webui/utils/logger.py ------------------------------------------------------
console: list[str] = []


class InterceptHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = loguru_logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        message = record.getMessage()
        loguru_logger.opt(exception=record.exc_info).log(level, message)
        if isinstance(record.msg, str):
            record.msg, record.args = message, None
        otel_handler.emit(record)


loguru_logger.remove()
loguru_logger.add(lambda m: console.append(m.record["level"].name + " " + m.record["message"]), level="INFO")
logging.basicConfig(handlers=[InterceptHandler()], level="INFO", force=True)

# --- the pipe, loaded after start_logger() -----------------------------------------------------
import otel_session  # noqa: E402

BUFFERING = bool(os.environ.get("BUFFER"))  # debug buffering on, and a run that fails
telemetry = otel_session.configure(service_name="manifold", buffer_level="DEBUG" if BUFFERING else None)
otel_session.add_redaction(*otel_session.SECRET_PATTERNS)
if os.environ.get("OURS_FIRST"):  # the other order of the two root handlers
    root_handlers = logging.getLogger().handlers
    root_handlers.insert(0, root_handlers.pop())
pipe_log = logging.getLogger("function_openai_responses")
other = logging.getLogger("aiosqlite")

captures = {}
with otel_session.session(session_id="quiet", user_id="u-1", log_level="ERROR"):
    pipe_log.info("quiet: info below the session's export level")
    pipe_log.error("quiet: upstream refused key %s", SECRET)

with otel_session.session(session_id="chat", user_id="u-2"), otel_session.capture(level="DEBUG") as cap:
    pipe_log.debug("chat: debug for the citation only")
    pipe_log.info("chat: info for everyone")
    done = threading.Event()
    thread = threading.Thread(target=lambda: (other.debug("another request's debug"), done.set()))
    thread.start()  # a thread without the run's context: nothing asked there
    done.wait(5)
    thread.join()
if BUFFERING:
    from opentelemetry import trace

    tracer = trace.get_tracer("tests.host")
    with otel_session.session(session_id="fails", user_id="u-3"), tracer.start_as_current_span("chat completion"):
        pipe_log.debug("fails: request body keys")
        pipe_log.debug("fails: streaming started")
        pipe_log.error("fails: upstream stream broke")
    with otel_session.session(session_id="fine", user_id="u-4"), tracer.start_as_current_span("chat completion"):
        pipe_log.debug("fine: held, never exported")
other.debug("outside any session")
other.info("outside: info")
telemetry.force_flush()
provider.force_flush()

json.dump({
    "attached": telemetry.attached,
    "exporter_name": telemetry.exporter_name,
    "inner": telemetry.processor.inner is not None,
    "duplicates": telemetry.processor.duplicates,
    "root_level": logging.getLogger().level,
    "batch": batch_exporter.records(),
    "simple": simple_exporter.records(),
    "console": console,
    "citation": [r.message for r in cap.records],
    "stats": str(telemetry.stats()),
}, sys.stdout)
