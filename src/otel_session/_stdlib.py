"""The stdlib gate: a context-aware `Logger.isEnabledFor` (and, with the debug buffer on,
`Logger.callHandlers`), installed by configure() and removed by reset()/shutdown().

A record below the app's levels is created only in a context that asks for it, and only on loggers
that inherit their level; the stdlib internals this leans on are checked in the SDK-internals tests
(docs/levels-and-captures.md).
"""

from __future__ import annotations

import logging

from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggingHandler as SdkLoggingHandler

from otel_session import _sdk
from otel_session._context import _ATTR
from otel_session._severity import level_of
from otel_session._state import STATE

_stdlib_is_enabled_for = logging.Logger.isEnabledFor
_INHERITS = "otel_session.inherits"  # a str key in `Logger._cache`: cleared with it on every level change
_current = _sdk.current_context
_asking = STATE.asking
_root = logging.root
_logger_dict = logging.Logger.manager.loggerDict
_LEVEL_OF = [level_of(s) for s in range(25)]  # severity number -> the lowest stdlib level that has it
_BRIDGES = (LoggingHandler, SdkLoggingHandler)  # ours (`BridgeHandler`) and any OTel bridge on the path


def _inherits(logger: logging.Logger) -> bool:
    """No level set on the logger or on any ancestor below the root."""
    node: logging.Logger | None = logger
    while node is not None and node is not _root:
        if node.level:
            return False
        node = node.parent  # type: ignore[assignment]
    return True


def is_enabled_for(self: logging.Logger, level: int) -> bool:
    if self.disabled:
        return False
    cache = self._cache  # type: ignore[attr-defined]
    try:
        if cache[level]:
            return True
    except KeyError:
        if _stdlib_is_enabled_for(self, level):
            return True
    if not _asking.armed:
        return False
    ctx = _current()
    meaning = getattr(ctx, _ATTR, None)
    if meaning is None or meaning.generation != STATE.generation:
        meaning = STATE.meaning(ctx)
    if level < meaning.floor_level or self.manager.disable >= level:
        return False
    inherits = cache.get(_INHERITS)
    if inherits is None:
        inherits = cache[_INHERITS] = _inherits(self)
    return inherits  # type: ignore[no-any-return]


def configured_enabled(name: str, severity: int) -> bool:
    """Whether the app's logging configuration alone creates a record of this severity on the
    stdlib logger `name` (True for a name that is no stdlib logger: an OTel API record)."""
    found = _root if name == "root" else _logger_dict.get(name)
    if not isinstance(found, logging.Logger):
        return True
    level = _LEVEL_OF[severity]
    known = found._cache.get(level)  # type: ignore[attr-defined]  # the stdlib's own answer, when it has one
    return known if known is not None else _stdlib_is_enabled_for(found, level)


_stdlib_call_handlers = logging.Logger.callHandlers


def call_handlers(self: logging.Logger, record: logging.LogRecord) -> None:
    """With the debug buffer on: a record created only to be buffered (below the app's level, and below
    every level its context asks for) goes to our bridge handler alone, so the app's console and other
    handlers see what they saw before; every other record goes to every handler, as the stdlib does."""
    level = record.levelno
    cache = self._cache  # type: ignore[attr-defined]
    try:
        enabled = cache[level]
    except KeyError:
        enabled = _stdlib_is_enabled_for(self, level)
    if not enabled:
        ctx = _current()
        meaning = getattr(ctx, _ATTR, None)
        if meaning is None or meaning.generation != STATE.generation:
            meaning = STATE.meaning(ctx)
        if meaning.buffer_severity is not None and meaning.floor_level <= level < meaning.asked_level:
            node: logging.Logger | None = self
            while node is not None:
                for handler in node.handlers:
                    if isinstance(handler, _BRIDGES) and level >= handler.level:
                        handler.handle(record)
                node = node.parent if node.propagate else None  # type: ignore[assignment]
            return
    _stdlib_call_handlers(self, record)


def route_buffered(on: bool) -> None:
    """Send records created only to be buffered to our handler alone (on while the buffer is on)."""
    if on:
        logging.Logger.callHandlers = call_handlers  # type: ignore[method-assign]
    elif logging.Logger.callHandlers is call_handlers:
        logging.Logger.callHandlers = _stdlib_call_handlers  # type: ignore[method-assign]


def install() -> None:
    """Make every logger's `isEnabledFor` context-aware (idempotent)."""
    if logging.Logger.isEnabledFor is not is_enabled_for:
        logging.Logger.isEnabledFor = is_enabled_for  # type: ignore[method-assign]
        logging.Logger.manager._clear_cache()  # type: ignore[attr-defined]


def uninstall() -> None:
    route_buffered(False)
    if logging.Logger.isEnabledFor is is_enabled_for:
        logging.Logger.isEnabledFor = _stdlib_is_enabled_for  # type: ignore[method-assign]
        logging.Logger.manager._clear_cache()  # type: ignore[attr-defined]
