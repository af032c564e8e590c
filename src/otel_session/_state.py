"""The process-wide state, in one object with a `reset()` (as structlog keeps `_CONFIG`).

Everything the emit path reads lives here: the baggage keys that become attributes, the
generation that invalidates cached context meanings, whether any context has asked for lower
levels yet, the open captures and the redaction patterns.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from opentelemetry.context import Context

from otel_session import _sdk
from otel_session._buffer import BufferSettings, TraceBuffer
from otel_session._capture import CaptureRegistry
from otel_session._context import _ATTR, NO_FLOOR, Asking, KeyMatcher, Meaning, asks, compute
from otel_session._flush_signal import FlushSignals
from otel_session._grants_watch import NO_GRANTS, GrantTable, GrantWatcher
from otel_session._redaction import Redactor, redactor
from otel_session._signing import Signer, key_bytes, signer

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
        # The key travelling levels must be signed with (`_signing`); None: levels are not checked.
        self.signing: Signer = signer
        # What configure() built; OTel's providers are set once per process, so reset() keeps these.
        self.telemetry: Telemetry | None = None
        self.own_tracer_provider: TracerProvider | None = None
        self.span_processor: BatchSpanProcessor | None = None
        self.warned_names: set[str] = set()
        # Live debug grants (`_grants_watch`), the grants already audited as used here, the watcher.
        self.grants: GrantTable = NO_GRANTS
        self.grants_used: set[str] = set()
        self.grant_watcher: GrantWatcher | None = None
        # Records held per trace until it fails (`_buffer`); off until configured. `route_held(on)`:
        # `_stdlib` sends records created only to be held to our handler alone while it is on.
        self.buffer = TraceBuffer(lambda key: self.keys(key))
        self.route_held: Callable[[bool], None] | None = None
        _sdk.watch_attach(self.on_attach)

    def meaning(self, ctx: Context) -> Meaning:
        found: Meaning | None = getattr(ctx, _ATTR, None)
        if found is not None and found.generation == self.generation:
            return found
        meaning = compute(ctx, self.generation, self.keys, self.grants, self._grant_used, self.buffer.settings.level)
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

    def set_grants(self, table: GrantTable) -> None:
        """New live grants: every context's meaning is computed again, and with any grant live the
        stdlib gate looks at every context."""
        with self.lock:
            self.grants = table
            self._rearm()

    def set_buffer(self, settings: BufferSettings) -> None:
        """Hold records below the export level per trace (`_buffer`); with it on, every context
        with a trace or a session asks for records from `settings.level` up."""
        with self.lock:
            if settings != self.buffer.settings:
                self.buffer.configure(settings)
                self._rearm()
            if self.route_held is not None:
                self.route_held(self.buffer.on)

    def _rearm(self) -> None:
        self.asking.force(bool(self.grants) or self.buffer.on)
        self.invalidate()

    def _grant_used(self, grant_id: str) -> None:
        if grant_id not in self.grants_used and self.grant_watcher is not None:
            self.grants_used.add(grant_id)
            self.grant_watcher.used(grant_id)

    def set_baggage_keys(self, patterns: Sequence[str]) -> None:
        self.keys = KeyMatcher(patterns)
        self.invalidate()

    def set_signing_key(self, key: str | bytes | None) -> None:
        """Levels in baggage count only when signed with `key` (None: no check); every cached
        meaning is computed again when the key changes."""
        new = None if key is None else key_bytes(key)
        with self.lock:
            if new != self.signing.key:
                self.signing.set_key(new)
                self.invalidate()

    def reset(self) -> None:
        """Back to the defaults: no captures, no redaction, default baggage keys, disarmed. The
        providers and the pipeline `configure()` built stay (OTel's globals are set once)."""
        with self.lock:
            self.captures.reset()
            self.redactor.patterns = ()
            self.signing.reset()
            self.keys = KeyMatcher(DEFAULT_BAGGAGE_KEYS)
            self.asking.clear()
            self.stop_grants()
            self.buffer.reset()
            if self.route_held is not None:
                self.route_held(False)
            self.asking.force(False)
            self.invalidate()
            _sdk.watch_attach(self.on_attach)

    def watch_grants(self, redis_url: str, prefix: str, service: str) -> None:
        """Honour the debug grants held in that Redis, and exchange debug-buffer flushes through it
        (idempotent for the same place)."""
        with self.lock:
            now = self.grant_watcher
            if now is not None and (now.redis_url, now.prefix) == (redis_url, prefix):
                return
            self.stop_grants()
            self.grant_watcher = GrantWatcher(redis_url, prefix, service,
                                              signals=FlushSignals(self.buffer, prefix, service))
            self.grant_watcher.start()

    def stop_grants(self) -> None:
        with self.lock:
            if self.grant_watcher is not None:
                self.grant_watcher.stop()
                self.grant_watcher = None
            self.buffer.signal = None
            self.grants_used.clear()
            if self.grants:
                self.set_grants(NO_GRANTS)

    def _after_fork_in_child(self) -> None:
        """A child starts with none of its parent's sessions or captures, and no lock held."""
        self.lock = threading.RLock()
        self.redactor._lock = threading.Lock()
        self.asking.after_fork()
        self.captures.after_fork()
        self.buffer.after_fork()
        self.invalidate()
        if (watcher := self.grant_watcher) is not None:  # its thread did not survive the fork
            self.grant_watcher = GrantWatcher(watcher.redis_url, watcher.prefix, watcher.service,
                                              signals=FlushSignals(self.buffer, watcher.prefix, watcher.service))
            self.grant_watcher.start()
        from opentelemetry import context

        context.attach(Context())


STATE = State()
os.register_at_fork(after_in_child=STATE._after_fork_in_child)
