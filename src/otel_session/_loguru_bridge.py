"""Bring loguru records (Pipecat logs through loguru) into the stdlib pipeline `configure()` built, through a
synchronous sink that forwards only what the current context's levels ask for (docs/internals.md).
"""

from __future__ import annotations

import logging
import sys
import threading
from contextvars import ContextVar
from types import CodeType, FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from loguru import Message, Record

# Set while a record is being forwarded, so one that comes back into loguru (an app that also
# intercepts stdlib logging into loguru) is not forwarded again.
_forwarding: ContextVar[bool] = ContextVar("otel_session_loguru_forwarding", default=False)

# A loguru call made from inside a stdlib handler is a stdlib record on its way into loguru
# (loguru's `InterceptHandler` recipe); the root logger's bridge handler has exported it already.
_CALL_HANDLERS: CodeType = logging.Logger.callHandlers.__code__
_HANDLE: CodeType = logging.Handler.handle.__code__  # compared by identity: code objects hash slowly
_DISPATCH_DEPTH = 12  # frames above the sink: loguru's own, the intercepting handler, its caller

_lock = threading.Lock()
_handler_id: int | None = None
_handler_level: str | int | None = None
# Module names are few and loggers live forever; `logging.getLogger` takes the module lock.
_loggers: dict[str | None, logging.Logger] = {}


def _logger(name: str | None) -> logging.Logger:
    found = _loggers.get(name)
    if found is None:
        found = _loggers[name] = logging.getLogger(name or None)
    return found


def _enabled(record: Record) -> bool:
    return not _forwarding.get() and _logger(record["name"]).isEnabledFor(record["level"].no)


def _from_stdlib() -> bool:
    frame: FrameType | None = sys._getframe(2)  # above this function and the sink
    for _ in range(_DISPATCH_DEPTH):
        if frame is None:
            return False
        code = frame.f_code
        if code is _CALL_HANDLERS or code is _HANDLE:
            return True
        frame = frame.f_back
    return False


def _sink(message: Message) -> None:
    if _from_stdlib():
        return
    record = message.record
    level = record["level"]
    logger = _logger(record["name"])
    exc = record["exception"]
    exc_info = None
    if exc is not None and exc.type is not None and exc.value is not None:
        exc_info = (exc.type, exc.value, exc.traceback)
    rec = logger.makeRecord(
        logger.name, level.no, record["file"].path, record["line"], record["message"], (), exc_info,
        record["function"],
    )
    rec.levelname = level.name
    rec.created = record["time"].timestamp()
    rec.msecs = (rec.created - int(rec.created)) * 1000
    token = _forwarding.set(True)
    try:
        logger.handle(rec)
    finally:
        _forwarding.reset(token)


def _installed(loguru_logger: object, handler_id: int) -> bool:
    """Whether our sink is still there: `logger.remove()` without an id removes every sink.
    loguru has no public lookup; without its private map, trust the id we hold."""
    handlers = getattr(getattr(loguru_logger, "_core", None), "handlers", None)
    return handler_id in handlers if isinstance(handlers, dict) else True


def install_loguru_bridge(level: str | int = "DEBUG") -> None:
    """Forward loguru records into stdlib logging, so they carry session ids and follow each
    session's level like any other record; safe to call again (one sink, re-added if removed).

    Records below `level` never reach the bridge: loguru drops them before it builds them, which
    keeps Pipecat's per-frame TRACE calls cheap. Pass "TRACE" for sessions that need those.
    """
    global _handler_id, _handler_level
    try:
        from loguru import logger
    except ImportError as exc:
        raise ImportError("install_loguru_bridge() needs loguru: pip install 'otel-session[loguru]'") from exc
    with _lock:
        if _handler_id is not None and _installed(logger, _handler_id):
            if level == _handler_level:
                return
            logger.remove(_handler_id)  # re-added below at the new level
        _handler_id = logger.add(_sink, level=level, format="{message}", filter=_enabled, enqueue=False)
        _handler_level = level
