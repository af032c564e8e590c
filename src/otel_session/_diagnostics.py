"""Where the pipeline reports its own failures: stderr, never the root logger.

A failure inside the log pipeline (a processor, an exporter) that logged through the root logger
would go back into that pipeline: a recursion on the emit path, and a record that fails again on
every export cycle.
"""

from __future__ import annotations

import logging
import sys
from typing import Any


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at the time (it may be redirected after import)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


internal = logging.getLogger("otel_session.internal")
internal.propagate = False
if not internal.handlers:
    internal.addHandler(_StderrHandler())
