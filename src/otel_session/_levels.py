"""Log levels: parsing, the valve resolution order, and the root logger's threshold.

A session's level is never applied with a global `setLevel` per request (two sessions would fight
over it). The processor gates each record by its own session's level; the root logger's threshold
only follows the *lowest* level any live session needs, so disabled calls stay cheap.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
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


def severity_of(level: int) -> int:
    """The OTel severity number the stdlib bridge gives a record of this level."""
    if level < 10:
        return 0
    if level > 53:
        return 24
    band, step = divmod(level, 10)
    return band * 4 + 1 + min(step, 3)


class LevelState:
    """The process default level and the levels live sessions need."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: Counter[int] = Counter()
        self.default = logging.INFO
        self.default_severity = severity_of(logging.INFO)
        self._applied: int | None = None
        self._active = False  # the root logger is ours to steer only after configure()

    def set_default(self, level: int) -> None:
        with self._lock:
            self.default = level
            self.default_severity = severity_of(level)
            self._active = True
            self._apply()

    def acquire(self, level: int) -> None:
        with self._lock:
            self._live[level] += 1
            self._apply()

    def release(self, level: int) -> None:
        with self._lock:
            self._live[level] -= 1
            if self._live[level] <= 0:
                del self._live[level]
            self._apply()

    def _apply(self) -> None:
        if not self._active:
            return
        wanted = min(self.default, min(self._live)) if self._live else self.default
        root = logging.getLogger()
        if wanted != self._applied or root.level != wanted:
            self._applied = wanted
            root.setLevel(wanted)  # also clears every logger's isEnabledFor cache


    def _after_fork(self) -> None:
        self._lock = threading.Lock()  # a fork while another thread held it must not deadlock the child


state = LevelState()
os.register_at_fork(after_in_child=state._after_fork)
