"""`capture()`: keep the records of a block of code, for a "Logs" citation."""

from __future__ import annotations

import logging

from opentelemetry import baggage, context

from otel_session._capture_store import CAPTURES_KEY, Capture
from otel_session._context import baggage_level
from otel_session._flush import flush_on_error
from otel_session._levels import parse_level
from otel_session._scope import Scope, detach
from otel_session._state import STATE


class capture(Scope[Capture]):  # noqa: N801 - used like a function: `with capture() as logs:`
    """Keep the records of this context (and of contexts derived from it) at or above `level`.

    `level` is the capture's own (what the user chose to see): records below the export level
    are created for it and kept here, never exported. Default: the level the session itself carries
    (never an operator's debug grant: a grant changes exports only), else the root logger's level.
    """

    def __init__(self, level: str | int | None = None) -> None:
        self._level = parse_level(level) if level is not None else None
        self._token: object | None = None
        self._capture: Capture | None = None
        self._ctx: context.Context | None = None

    def __enter__(self) -> Capture:
        if self._capture is not None:
            raise RuntimeError("this capture() is already in use; create a new one")
        ctx = context.get_current()
        level = self._level
        if level is None:
            level = baggage_level(baggage.get_all(ctx))
        if level is None:
            level = logging.getLogger().getEffectiveLevel()
        cap = self._capture = STATE.captures.open(level)
        self._ctx = ctx
        if not cap.closed:
            outer = ctx.get(CAPTURES_KEY) or ()
            self._token = context.attach(context.set_value(CAPTURES_KEY, (*outer, cap), ctx))  # type: ignore[misc]
        return cap

    def __exit__(self, *exc_info: object) -> None:
        ctx, self._ctx = self._ctx, None
        if ctx is not None:
            flush_on_error(ctx, exc_info[1])
        token, self._token = self._token, None
        if token is not None:
            detach(token, "capture")
        if self._capture is not None:
            STATE.captures.close(self._capture)
            STATE.asking.release(self._capture)
