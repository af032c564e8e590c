"""The process-wide state, in one object with a `reset()` (as structlog keeps `_CONFIG`): everything
the emit path reads, and the place the optional live wing plugs into (`Live`)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from opentelemetry import context
from opentelemetry.context import Context

from otel_session import _sdk
from otel_session._buffer import BufferSettings, TraceBuffer
from otel_session._capture_store import CaptureRegistry
from otel_session._context import _ATTR, NO_FLOOR, Asking, KeyMatcher, Meaning, asks, compute
from otel_session._grant_table import NO_GRANTS, GrantTable
from otel_session._redaction import Redactor, redactor
from otel_session._signing import Signer, key_bytes, signer

DEFAULT_BAGGAGE_KEYS = ("session.*", "user.*")


class Live(Protocol):
    """What the state asks of the live wing (`otel_session.live`: debug grants and cross-process
    buffer flushes over Redis). It feeds the state through `set_grants()` and `buffer.signal`."""

    @property
    def place(self) -> tuple[str, str]:
        """Where it reads from (Redis URL, key prefix): plugging the same place again is a no-op."""
        ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def used(self, grant_id: str) -> None:
        """A context in this process is exported at this grant's level (called once per grant)."""
        ...

    def forked(self) -> Live:
        """An unstarted copy for a forked child (the parent's thread did not survive the fork)."""
        ...


class State:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.generation = 0  # bumped to invalidate every cached meaning at once
        self.keys = KeyMatcher(DEFAULT_BAGGAGE_KEYS)
        # Meanings alive that ask for lower levels: while there are none a disabled stdlib call
        # costs what it costs without us (`asking.armed` is False).
        self.asking = Asking()
        self.captures = CaptureRegistry()
        self.redactor: Redactor = redactor
        self.signing: Signer = signer  # the key travelling levels must be signed with (None: unchecked)
        self.grants: GrantTable = NO_GRANTS
        self.grants_used: set[str] = set()
        self.live: Live | None = None
        self.buffer = TraceBuffer(lambda key: self.keys(key))
        # Handed in by configure(): routes records created only to be buffered to our handler alone.
        self.route_buffered: Callable[[bool], None] | None = None
        self.started = False

    def meaning(self, ctx: Context) -> Meaning:
        found: Meaning | None = getattr(ctx, _ATTR, None)
        if found is not None and found.generation == self.generation:
            return found
        meaning = compute(ctx, self.generation, self.keys, self.grants, self._grant_used, self.buffer.settings.level)
        if meaning.floor_level != NO_FLOOR:
            self.asking.add(meaning)
        return meaning

    def on_attach(self, ctx: Context) -> None:
        """A context that asks for lower levels is about to become current: know it before its
        first logging call (the stdlib gate looks only while some context asks)."""
        if asks(ctx):
            self.meaning(ctx)

    def start(self) -> None:
        """Watch the contexts being attached (configure() calls this; `reset()` undoes it)."""
        global _fork_hook
        with self.lock:
            _sdk.watch_attach(self.on_attach)
            self.started = True
            if not _fork_hook:
                os.register_at_fork(after_in_child=lambda: STATE._after_fork_in_child())
                _fork_hook = True

    def invalidate(self) -> None:
        self.generation += 1

    def set_grants(self, table: GrantTable) -> None:
        """New live grants: every context's meaning is computed again, and with any grant live the
        stdlib gate looks at every context."""
        with self.lock:
            self.grants = table
            self._rearm()

    def set_buffer(self, settings: BufferSettings) -> None:
        """With the debug buffer on, every context with a trace or a session asks for records from
        `settings.level` up."""
        with self.lock:
            if settings != self.buffer.settings:
                self.buffer.configure(settings)
                self._rearm()
            if self.route_buffered is not None:
                self.route_buffered(self.buffer.on)

    def _rearm(self) -> None:
        self.asking.force(bool(self.grants) or self.buffer.on)
        self.invalidate()

    def _grant_used(self, grant_id: str) -> None:
        if grant_id not in self.grants_used and self.live is not None:
            self.grants_used.add(grant_id)
            self.live.used(grant_id)

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

    def plug(self, live: Live) -> None:
        """Start the live wing (idempotent for the same place); the one before it stops."""
        with self.lock:
            if self.live is not None and self.live.place == live.place:
                return
            self.unplug()
            self.live = live
            live.start()

    def unplug(self) -> None:
        with self.lock:
            if self.live is not None:
                self.live.stop()
                self.live = None
            self.buffer.signal = None
            self.grants_used.clear()
            if self.grants:
                self.set_grants(NO_GRANTS)

    def reset(self) -> None:
        """Back to the defaults, as before configure(): no captures, no redaction, default baggage
        keys, no signing key, the buffer off, the live wing stopped, no attach watcher."""
        with self.lock:
            self.captures.reset()
            self.redactor.patterns = ()
            self.signing.reset()
            self.keys = KeyMatcher(DEFAULT_BAGGAGE_KEYS)
            self.asking.clear()
            self.unplug()
            self.buffer.reset()
            if self.route_buffered is not None:
                self.route_buffered(False)
            self.asking.force(False)
            self.invalidate()
            _sdk.unwatch_attach()
            self.started = False

    def _after_fork_in_child(self) -> None:
        """A child starts with none of its parent's sessions or captures, and no lock held."""
        if not self.started:
            return
        self.lock = threading.RLock()
        self.redactor._lock = threading.Lock()
        self.asking.after_fork()
        self.captures.after_fork()
        self.buffer.after_fork()
        self.invalidate()
        if self.live is not None:  # its thread did not survive the fork
            self.live = self.live.forked()
            self.live.start()
        context.attach(Context())


_fork_hook = False
STATE = State()
