"""Log levels: parsing names and numbers, and the valve resolution order.

A session's level is never applied with `setLevel` (two sessions would fight over it, and every
other context would get it too): levels follow the record's own context (`_stdlib`, `_processor`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

INHERIT = "INHERIT"

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


def _given(value: str | int | None) -> bool:
    if value is None:
        return False
    return not (isinstance(value, str) and value.strip().upper() in ("", INHERIT))


def resolve_level(
    user: str | int | None = None,
    valve: str | int | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """User level unless missing or INHERIT, else valve, else `GLOBAL_LOG_LEVEL`, else INFO."""
    for candidate in (user, valve):
        if _given(candidate):
            return parse_level(candidate)  # type: ignore[arg-type]
    env_value = (os.environ if env is None else env).get("GLOBAL_LOG_LEVEL")
    if _given(env_value):
        return parse_level(env_value)  # type: ignore[arg-type]
    return logging.INFO
