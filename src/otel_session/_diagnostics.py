"""Where the pipeline reports its own failures, and the SDK's: stderr, rate-limited, never the export
(docs/internals.md).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Any

BURST = 10  # lines let through in one window
WINDOW_S = 60.0


class _RateLimit(logging.Filter):
    """Per kind of message (logger and format string): a burst a window, then counted."""

    MAX_KINDS = 256

    def __init__(self, burst: int = BURST, window_s: float = WINDOW_S) -> None:
        super().__init__()
        self.burst, self.window_s = burst, window_s
        self._lock = threading.Lock()
        self._pid = os.getpid()  # a forked child makes its own lock (no fork hook: importing changes nothing)
        self._kinds: dict[tuple[str, str], list[float]] = {}  # kind -> [window start, passed, held back]

    def clear(self) -> None:
        """Forget every window (for `reset()`)."""
        with self._lock:
            self._kinds.clear()

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        kind = (record.name, str(record.msg))
        if self._pid != os.getpid():
            self._lock, self._pid = threading.Lock(), os.getpid()
        with self._lock:
            state = self._kinds.get(kind)
            if state is None:
                if len(self._kinds) >= self.MAX_KINDS:
                    self._kinds.clear()
                state = self._kinds[kind] = [now, 0, 0]
            elif now - state[0] >= self.window_s:
                held = int(state[2])
                state[:] = [now, 0, 0]
                if held:
                    record.msg = f"{record.msg} [{held} more like this held back in the last {self.window_s:g} s]"
            if state[1] < self.burst:
                state[1] += 1
                return True
            state[2] += 1
            return False


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at the time (it may be redirected after import)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def stderr_handler() -> logging.Handler:
    handler = _StderrHandler()
    handler.addFilter(_RateLimit())
    handler.setFormatter(logging.Formatter("%(name)s: %(levelname)s: %(message)s"))
    return handler


internal = logging.getLogger("otel_session.internal")

SDK_LOGGER = "opentelemetry"


def is_sdk_logger(name: str) -> bool:
    """The SDK's own loggers: their records never go into the export."""
    return name == SDK_LOGGER or name.startswith("opentelemetry.")


def install() -> None:
    """configure(): our own failures go to stderr alone, rate-limited; the SDK's loggers get the same
    handler but still propagate, so an app's own console shows them as before (once each)."""
    if not any(isinstance(h, _StderrHandler) for h in internal.handlers):
        internal.propagate = False
        internal.addHandler(stderr_handler())
    sdk = logging.getLogger(SDK_LOGGER)
    if not any(isinstance(h, _StderrHandler) for h in sdk.handlers):
        sdk.addHandler(stderr_handler())
