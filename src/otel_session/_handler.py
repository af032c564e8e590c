"""The stdlib bridge handler `configure()` puts on the root logger.

It is the instrumentation's `LoggingHandler` with two changes: the SDK logger for a logger name
is looked up once (the provider's lookup takes a lock on every record), and while it emits, the
processor knows the record came through us — so when a host bridges the same stdlib record into
the same provider through a handler of its own (Open WebUI's `InterceptHandler`), the second copy
is recognised and dropped.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from opentelemetry._logs import NoOpLogger
from opentelemetry.instrumentation.logging.handler import LoggingHandler

from otel_session._diagnostics import is_sdk_logger

emitting = threading.local()  # .ours: a record is being emitted through BridgeHandler


class DropOtelInternals(logging.Filter):
    """The SDK's own records (say, an export failure) must not feed back into the export; the
    diagnostics handler on the `opentelemetry` logger shows them on stderr instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not is_sdk_logger(record.name)


class BridgeHandler(LoggingHandler):
    def __init__(self, logger_provider: Any) -> None:
        super().__init__(logger_provider=logger_provider)
        self._loggers: dict[str, Any] = {}
        self.addFilter(DropOtelInternals())

    def emit(self, record: logging.LogRecord) -> None:
        if self._is_emitting.get():
            return  # a record logged while one is being emitted: LoggingHandler's recursion guard
        token = self._is_emitting.set(True)
        emitting.ours = True
        try:
            otel_logger = self._loggers.get(record.name)
            if otel_logger is None:
                otel_logger = self._loggers[record.name] = self._logger_provider.get_logger(record.name)
            if not isinstance(otel_logger, NoOpLogger):
                otel_logger.emit(self._translate(record))
        finally:
            emitting.ours = False
            self._is_emitting.reset(token)
