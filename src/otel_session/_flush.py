"""Flushing a trace's held records on demand, and when an exception escapes one of our blocks."""

from __future__ import annotations

import re

from opentelemetry import context
from opentelemetry.context import Context

from otel_session._context import key_of

_TRACE_HEX = re.compile(r"[0-9a-f]{32}")


def flush(trace_id: int | str | None = None) -> int:
    """Export the held records of `trace_id` (default: the current trace, else the current session)
    now, keep exporting that trace's records for `buffer_ttl_s`, and tell the other configured
    processes to do the same. Returns how many held records this process exported (0 with
    buffering off). `trace_id`: an int, or 32 hex digits as in a traceparent."""
    from otel_session._state import STATE

    if trace_id is None:
        key = key_of(context.get_current())
        return STATE.buffer.flush(key) if key is not None else 0
    return STATE.buffer.flush(trace_key(trace_id))


def trace_key(trace_id: int | str) -> int:
    """A trace id as an int, from an int or 32 hex digits (`ValueError`, `TypeError` otherwise)."""
    if isinstance(trace_id, bool) or not isinstance(trace_id, (int, str)):
        raise TypeError(f"trace_id must be an int or 32 hex digits, not {type(trace_id).__name__}")
    if isinstance(trace_id, str):
        text = trace_id.strip().lower()
        if not _TRACE_HEX.fullmatch(text):
            raise ValueError(f"trace_id {trace_id[:40]!r} is not 32 hex digits")
        trace_id = int(text, 16)
    if not 0 < trace_id < 1 << 128:
        raise ValueError("trace_id must be a valid (non-zero, 128-bit) trace id")
    return trace_id


def flush_on_error(ctx: Context, error: object) -> None:
    """An exception escaping a `session()`/`capture()` block fails its trace (cancellation and
    exits are not failures)."""
    if not isinstance(error, Exception):
        return
    from otel_session._state import STATE

    if STATE.buffer.on and (key := key_of(ctx)) is not None:
        STATE.buffer.flush(key)
