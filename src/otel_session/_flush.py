"""`flush_buffer()`: export a trace's buffered records now; and the same when an exception escapes one
of our blocks."""

from __future__ import annotations

import warnings

from opentelemetry import context
from opentelemetry.context import Context

from otel_session._context import key_of
from otel_session._state import STATE
from otel_session._validation import parse_trace_id


def flush_buffer(trace_id: int | str | None = None) -> int:
    """Export the buffered records of `trace_id` (default: the current trace, else the current session)
    now, keep exporting that trace's records for `buffer_ttl_s`, and tell the other configured
    processes to do the same. Returns how many buffered records this process exported (0 with the
    buffer off). `trace_id`: an int, or 32 hex digits as in a traceparent."""
    if trace_id is None:
        key = key_of(context.get_current())
        return STATE.buffer.flush(key) if key is not None else 0
    return STATE.buffer.flush(parse_trace_id(trace_id))


def flush(trace_id: int | str | None = None) -> int:
    """Deprecated name of `flush_buffer()` (unrelated to `Telemetry.force_flush()`)."""
    warnings.warn("otel_session.flush() is renamed flush_buffer(); flush() goes in the next release",
                  DeprecationWarning, stacklevel=2)
    return flush_buffer(trace_id)


def flush_on_error(ctx: Context, error: object) -> None:
    """An exception escaping a `session()`/`capture()` block fails its trace (cancellation and
    exits are not failures)."""
    if isinstance(error, Exception) and STATE.buffer.on and (key := key_of(ctx)) is not None:
        STATE.buffer.flush(key)
