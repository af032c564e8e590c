"""What a Context means for its log records (ids, export level, captures, buffer key), computed once
per Context object and cached on it; a generation number invalidates every cached meaning at once
(docs/internals.md)."""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

from opentelemetry import baggage, trace
from opentelemetry.context import Context

from otel_session._capture_store import CAPTURES_KEY
from otel_session._keys import LOG_LEVEL, LOG_LEVEL_SIG, SESSION_ID, USER_ID
from otel_session._levels import parse_level
from otel_session._record import EMPTY, attributes_size
from otel_session._sdk import SUPPRESS_KEY
from otel_session._severity import severity_of
from otel_session._signing import signer

if TYPE_CHECKING:
    from otel_session._buffer import Key
    from otel_session._capture_store import Capture
    from otel_session._grant_table import GrantTable

MAX_VALUE_LEN = 256
NO_FLOOR = 1 << 30  # a stdlib level no record reaches: the context asks for nothing
NO_SEVERITY = 1 << 30  # a severity no record reaches: nothing is exported
_ATTR = "_otel_session_meaning"


class Meaning:
    """A context's session attributes, export level, open captures and buffer key. `*_level` fields
    are stdlib levels (what the gate compares), `*_severity` fields OTel severity numbers (what the
    processor compares). `floor_level`: the lowest level anything here asks to have records created for."""

    __slots__ = ("__weakref__", "asked_level", "attrs", "attrs_size", "attrs_view", "buffer_key", "buffer_severity",
                 "captures", "export_level", "export_severity", "floor_level", "generation", "longest")

    def __init__(self, generation: int, attrs: tuple[tuple[str, str], ...], export_level: int | None,
                 captures: tuple[Capture, ...], buffer_level: int | None = None, buffer_key: Key | None = None) -> None:
        """`buffer_level`: records below the export level but at or above this are buffered under
        `buffer_key` (its trace, else its session: `_buffer`) instead of being dropped."""
        self.generation = generation
        self.attrs = attrs
        self.longest = max((len(v) for _, v in attrs), default=0)
        # What a capture keeps of a record whose attributes are exactly these, and their size.
        self.attrs_view: Mapping[str, str] = MappingProxyType(dict(attrs)) if captures else EMPTY
        self.attrs_size = attributes_size(self.attrs_view)
        self.export_level = export_level
        self.export_severity = severity_of(export_level) if export_level is not None else None
        self.captures = captures
        levels = [c.level for c in captures]
        if export_level is not None:
            levels.append(export_level)
        self.buffer_key = buffer_key
        self.buffer_severity = None
        # The lowest level the export or a capture asks for: below it (and from `buffer_level` up) a record
        # is created only to be buffered, and goes to our handler alone (`_stdlib.call_handlers`).
        self.asked_level = min(levels, default=NO_FLOOR)
        below_export = export_level is None or (buffer_level is not None and buffer_level < export_level)
        if buffer_level is not None and buffer_key is not None and below_export:
            self.buffer_severity = severity_of(buffer_level)
            levels.append(buffer_level)
        self.floor_level = min(levels, default=NO_FLOOR)


class KeyMatcher:
    """Which baggage keys become record attributes: exact keys and `prefix.*` patterns."""

    def __init__(self, patterns: Iterable[str]) -> None:
        patterns = tuple(patterns)
        exact, prefixes = set(), []
        for pattern in patterns:
            if not isinstance(pattern, str) or not pattern:
                raise ValueError(f"baggage key pattern {pattern!r} must be a non-empty string")
            if pattern.endswith(".*"):
                prefixes.append(pattern[:-1])
            elif "*" in pattern:
                raise ValueError(f"baggage key pattern {pattern!r}: only a trailing '.*' is supported")
            else:
                exact.add(pattern)
        self.patterns = tuple(patterns)
        self.exact, self.prefixes = frozenset(exact), tuple(prefixes)

    def __call__(self, key: str) -> bool:  # a level's signature is no session attribute, whatever the patterns
        return (key in self.exact or key.startswith(self.prefixes)) and key != LOG_LEVEL_SIG


def baggage_level(values: Mapping[str, object], *, counted: bool = False) -> int | None:
    """The export level a baggage mapping carries, or None (absent, not a level, or — with a
    signing key — not validly signed for this session: `_signing`, warned once a minute). `counted`:
    a refusal counts in `signer.refused` (the export decision's check, once per context)."""
    raw = values.get(LOG_LEVEL)
    if raw is None:
        return None
    try:
        level = parse_level(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return level if signer.key is None else signer.level(values, level, counted=counted)


def compute(ctx: Context, generation: int, keys: KeyMatcher, grants: GrantTable | None = None,
            on_grant: Callable[[str], None] | None = None, buffer_level: int | None = None) -> Meaning:
    """`grants`: live debug grants; one for the context's session or user lowers its export level
    (never a capture's), and `on_grant` hears which grant did. `buffer_level`: the debug buffer is on."""
    if SUPPRESS_KEY is not None and ctx.get(SUPPRESS_KEY):  # an exporter at work: its own records go nowhere
        meaning = Meaning(generation, (), None, ())
        meaning.export_severity = NO_SEVERITY
        with contextlib.suppress(AttributeError, TypeError):
            setattr(ctx, _ATTR, meaning)
        return meaning
    attrs = []
    values = baggage.get_all(ctx)
    for key, value in values.items():
        if keys(key):
            text = value if isinstance(value, str) else str(value)
            attrs.append((key, text[:MAX_VALUE_LEN]))
    captures = ctx.get(CAPTURES_KEY) or ()
    live = tuple(c for c in captures if not c.closed)  # type: ignore[attr-defined, union-attr]
    export = baggage_level(values, counted=True)
    granted = grants.level(values.get(SESSION_ID), values.get(USER_ID)) if grants else None
    if granted is not None and (export is None or granted[0] < export):
        export = granted[0]
        if on_grant is not None:
            on_grant(granted[1])
    meaning = Meaning(generation, tuple(attrs), export, live, buffer_level,
                      key_of(ctx, values) if buffer_level is not None else None)
    with contextlib.suppress(AttributeError, TypeError):  # a Context subclass with slots: no cache
        setattr(ctx, _ATTR, meaning)
    return meaning


def key_of(ctx: Context, values: Mapping[str, object] | None = None) -> Key | None:
    """What a context's buffered records are kept under: its trace id, else its session id, else None."""
    span_context = trace.get_current_span(ctx).get_span_context()
    if span_context.is_valid:
        return span_context.trace_id
    session_id = (baggage.get_all(ctx) if values is None else values).get(SESSION_ID)
    return f"session:{session_id}" if isinstance(session_id, str) and session_id else None


class Asking:
    """The meanings alive that ask for records below the app's levels. While there are none, the
    stdlib gate need not look at the current context at all (`armed` is False). A meaning lives as
    long as its Context, so this ends when the last such context is gone (a finished request, and
    every task that inherited its context), or, for one that asked only for its captures, when they
    have closed: a Context kept alive longer (a record queued for export holds its Context) then
    costs nothing."""

    def __init__(self) -> None:
        self._lock = threading.RLock()  # weakref callbacks may run inside a locked region
        self._refs: set[weakref.ref[Meaning]] = set()
        # capture -> the meanings that ask only for captures, it among them (`release`)
        self._by_capture: weakref.WeakKeyDictionary[Capture, list[weakref.ref[Meaning]]] = \
            weakref.WeakKeyDictionary()
        self.forced = False  # a debug grant is live: any context may ask
        self.armed = False

    def add(self, meaning: Meaning) -> None:
        with self._lock:
            ref = weakref.ref(meaning, self._gone)
            self._refs.add(ref)
            self.armed = True
            if meaning.export_level is None and meaning.buffer_severity is None:
                for cap in meaning.captures:
                    self._by_capture.setdefault(cap, []).append(ref)

    def release(self, cap: Capture) -> None:
        """`cap` closed: the meanings that asked only for closed captures ask for nothing more."""
        with self._lock:
            for ref in self._by_capture.pop(cap, ()):
                meaning = ref()
                if meaning is None or all(c.closed for c in meaning.captures):
                    self._refs.discard(ref)
            self.armed = self.forced or bool(self._refs)

    def _gone(self, ref: weakref.ref[Meaning]) -> None:
        with self._lock:
            self._refs.discard(ref)
            self.armed = self.forced or bool(self._refs)

    def force(self, on: bool) -> None:
        with self._lock:
            self.forced = on
            self.armed = on or bool(self._refs)

    def clear(self) -> None:
        with self._lock:
            self._refs.clear()
            self._by_capture.clear()
            self.forced = self.armed = False

    def after_fork(self) -> None:
        self._lock = threading.RLock()


def asks(ctx: Context) -> bool:
    """Whether a context might ask for records below the app's levels (cheap; for arming)."""
    return CAPTURES_KEY in ctx or LOG_LEVEL in baggage.get_all(ctx)
