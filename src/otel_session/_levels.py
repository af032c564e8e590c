"""Log levels: names and numbers as stdlib levels, and the process default.

A session's level is never applied with `setLevel`: levels follow the record's own context.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

_NAMES = {
    "NOTSET": logging.NOTSET,
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARN": logging.WARNING,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
    "FATAL": logging.CRITICAL,
}
_VALID = "DEBUG, INFO, WARNING (or WARN), ERROR, CRITICAL (or FATAL), NOTSET, or a number 0-100"


def parse_level(value: str | int) -> int:
    """A level name in any case, `WARN`, or a number, as a stdlib level number."""
    if isinstance(value, bool):
        raise ValueError(f"invalid log level {value!r}: use {_VALID}")
    if isinstance(value, int):
        if 0 <= value <= 100:
            return value
        raise ValueError(f"invalid log level {value!r}: use {_VALID}")
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return parse_level(int(text))
        level = _NAMES.get(text.upper())
        if level is not None:
            return level
        raise ValueError(f"invalid log level {value!r}: use {_VALID}")
    raise TypeError(f"a log level must be a name or a number, not {type(value).__name__}")


def level_name(level: int) -> str:
    """The canonical text for a level as it travels in baggage."""
    name = logging.getLevelName(level)
    return name if name in _NAMES else str(level)


def default_level(env: Mapping[str, str] | None = None) -> int:
    """The process default when `configure(level=)` is not given: `OTEL_PYTHON_LOG_LEVEL` (the
    OpenTelemetry logging instrumentation's variable), else INFO."""
    raw = (os.environ if env is None else env).get("OTEL_PYTHON_LOG_LEVEL", "").strip()
    if not raw:
        return logging.INFO
    try:
        return parse_level(raw)
    except ValueError:
        raise ValueError(f"OTEL_PYTHON_LOG_LEVEL={raw[:40]!r}: invalid log level: use {_VALID}") from None
