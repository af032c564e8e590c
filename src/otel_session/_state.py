"""The process-wide state, in one object with a `reset()` (as structlog keeps `_CONFIG`).

Everything the emit path reads lives here: the baggage keys that become attributes, the
generation that invalidates cached context meanings, whether any context has asked for lower
levels yet, the open captures and the redaction patterns.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from opentelemetry.context import Context

from otel_session import _sdk
from otel_session._capture import CaptureRegistry
from otel_session._context import _ATTR, NO_FLOOR, Asking, KeyMatcher, Meaning, asks, compute
from otel_session._redaction import Redactor, redactor

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from otel_session._configure import Telemetry

DEFAULT_BAGGAGE_KEYS = ("session.*", "user.*")


class State:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.generation = 0
        self.keys = KeyMatcher(DEFAULT_BAGGAGE_KEYS)
        # Meanings alive that ask for lower levels: while there are none a disabled stdlib call
        # costs what it costs without us (`asking.armed` is False).
        self.asking = Asking()
        self.captures = CaptureRegistry()
        self.redactor: Redactor = redactor
        # What configure() built; OTel's providers are set once per process, so reset() keeps these.
        self.telemetry: Telemetry | None = None
        self.own_tracer_provider: TracerProvider | None = None
        self.span_processor: BatchSpanProcessor | None = None
        self.warned_names: set[str] = set()
        _sdk.watch_attach(self.on_attach)

    def meaning(self, ctx: Context) -> Meaning:
        found: Meaning | None = getattr(ctx, _ATTR, None)
        if found is not None and found.generation == self.generation:
            return found
        meaning = compute(ctx, self.generation, self.keys)
        if meaning.floor != NO_FLOOR:
            self.asking.add(meaning)
        return meaning

    def on_attach(self, ctx: Context) -> None:
        """A context that asks for lower levels is about to become current: know it before its
        first logging call (the stdlib gate looks only while some context asks)."""
        if asks(ctx):
            self.meaning(ctx)

    def invalidate(self) -> None:
        self.generation += 1

    def set_baggage_keys(self, patterns: Sequence[str]) -> None:
        self.keys = KeyMatcher(patterns)
        self.invalidate()

    def reset(self) -> None:
        """Back to the defaults: no captures, no redaction, default baggage keys, disarmed. The
        providers and the pipeline `configure()` built stay (OTel's globals are set once)."""
        with self.lock:
            self.captures.reset()
            self.redactor.patterns = ()
            self.keys = KeyMatcher(DEFAULT_BAGGAGE_KEYS)
            self.asking.clear()
            self.invalidate()
            _sdk.watch_attach(self.on_attach)

    def _after_fork_in_child(self) -> None:
        """A child starts with none of its parent's sessions or captures, and no lock held."""
        self.lock = threading.RLock()
        self.redactor._lock = threading.Lock()
        self.asking.after_fork()
        self.captures.after_fork()
        self.invalidate()
        from opentelemetry import context

        context.attach(Context())


STATE = State()
os.register_at_fork(after_in_child=STATE._after_fork_in_child)
