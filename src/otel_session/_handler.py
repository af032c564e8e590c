"""The stdlib bridge handler configure() puts on the root logger: the instrumentation's `LoggingHandler`
with one SDK logger looked up per name, and a mark while it emits, so the processor can drop the second
copy of a record a host's own handler bridges into the same provider.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from opentelemetry._logs import NoOpLogger
from opentelemetry.instrumentation.logging.handler import LoggingHandler

from otel_session import _sdk
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
        self._guard, self._translate_record, self._provider = _sdk.logging_handler_parts(self)
        self.addFilter(DropOtelInternals())

    def emit(self, record: logging.LogRecord) -> None:
        guard = self._guard
        if guard.get():
            return  # a record logged while one is being emitted: LoggingHandler's recursion guard
        token = guard.set(True)
        emitting.ours = True
        try:
            otel_logger = self._loggers.get(record.name)
            if otel_logger is None:
                otel_logger = self._loggers[record.name] = self._provider.get_logger(record.name)
            if not isinstance(otel_logger, NoOpLogger):
                otel_logger.emit(self._translate_record(record))
        finally:
            emitting.ours = False
            guard.reset(token)
