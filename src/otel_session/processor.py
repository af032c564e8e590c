"""`SessionLogProcessor`: enrich, gate, redact, buffer, forward — in that order, in one processor.

The SDK calls every registered processor with the same record and lets none of them veto it, so
an enricher registered after an exporter is silently lost and a level filter is impossible. This
processor *wraps* the exporting processor instead (the spec's recommended filtering pattern), so
order is fixed by construction.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from opentelemetry import baggage
from opentelemetry.context import Context, get_current
from opentelemetry.sdk._logs import LogRecordProcessor, ReadWriteLogRecord

from otel_session import _sdk
from otel_session._diagnostics import internal as _internal
from otel_session._sdk import _SEVERITY_BY_ID
from otel_session.capture import CaptureRegistry, registry
from otel_session._levels import LevelState, parse_level, severity_of, state
from otel_session.redaction import Redactor
from otel_session.redaction import redactor as default_redactor
from otel_session._validation import LOG_LEVEL

DEFAULT_BAGGAGE_KEYS = ("session.*", "user.*")
MAX_VALUE_LEN = 256
_CACHE_MAX = 4096

class _Session(NamedTuple):
    attrs: tuple[tuple[str, str], ...]
    longest: int
    threshold: int | None  # severity number; None: the process default applies


_NO_SESSION = _Session((), 0, None)


def _key_matcher(patterns: Iterable[str]) -> tuple[frozenset[str], tuple[str, ...]]:
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
    return frozenset(exact), tuple(prefixes)


class SessionLogProcessor(LogRecordProcessor):
    """Stamp session ids from the record's own context, apply its session's level, capture, forward."""

    def __init__(
        self,
        inner: LogRecordProcessor | None = None,
        baggage_keys: Sequence[str] = DEFAULT_BAGGAGE_KEYS,
        *,
        levels: LevelState = state,
        captures: CaptureRegistry = registry,
        redactor: Redactor = default_redactor,
    ) -> None:
        self.inner = inner
        self._levels = levels
        self._captures = captures
        self._redactor = redactor
        self.errors = 0
        self._cache: dict[int, tuple[Context, _Session]] = {}
        self.set_baggage_keys(baggage_keys)

    def set_baggage_keys(self, patterns: Sequence[str]) -> None:
        self._exact, self._prefixes = _key_matcher(patterns)
        self.baggage_keys = tuple(patterns)
        self._cache = {}

    def _session_of(self, ctx: Context) -> _Session:
        """What a context means for its records; cached per context object, which the stdlib
        bridge hands us unchanged for every record logged inside one attached scope."""
        hit = self._cache.get(id(ctx))
        if hit is not None and hit[0] is ctx:
            return hit[1]
        attrs = []
        threshold = None
        for key, value in baggage.get_all(ctx).items():
            if key == LOG_LEVEL:
                with contextlib.suppress(TypeError, ValueError):
                    threshold = severity_of(parse_level(value))  # type: ignore[arg-type]
            if key in self._exact or key.startswith(self._prefixes):
                text = value if isinstance(value, str) else str(value)
                attrs.append((key, text[:MAX_VALUE_LEN]))
        session = _Session(tuple(attrs), max((len(v) for _, v in attrs), default=0), threshold)
        if len(self._cache) >= _CACHE_MAX:
            self._cache = {}
        self._cache[id(ctx)] = (ctx, session)
        return session

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:  # type: ignore[override]
        try:
            # The hot path: inlined cache hit and severity lookup (see benchmarks/).
            lr = log_record.log_record
            ctx = lr.context
            if ctx:
                hit = self._cache.get(id(ctx))
                attrs, longest, threshold = hit[1] if hit is not None and hit[0] is ctx else self._session_of(ctx)
            else:
                attrs, longest, threshold = _NO_SESSION
            if _SEVERITY_BY_ID.get(id(lr.severity_number), 0) < (
                self._levels.default_severity if threshold is None else threshold
            ):
                return
            if attrs:
                _sdk.add_attributes(lr, attrs, longest)
            if self._redactor.patterns:
                self._redactor.record(lr)
            if self._captures.by_trace:
                self._captures.on_emit(log_record)
            if self.inner is not None:
                self.inner.on_emit(log_record)
        except Exception:  # never into the caller's logging call
            self.errors += 1
            if self.errors == 1 or self.errors % 1000 == 0:
                _internal.exception("otel_session: log record lost (%d so far)", self.errors)

    def enabled(self, *args: Any, **kwargs: Any) -> bool:
        """Whether a record of this severity in this context would pass the session's level."""
        ctx = kwargs.get("context") or get_current()
        severity = kwargs.get("severity_number")
        threshold = self._session_of(ctx).threshold if ctx else None
        wanted = self._levels.default_severity if threshold is None else threshold
        return severity is None or _sdk.severity_value(severity) >= wanted

    def shutdown(self) -> None:
        if self.inner is not None:
            self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis) if self.inner is not None else True
