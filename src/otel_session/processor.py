"""`SessionLogProcessor`: enrich, gate, buffer, forward — in that order, in one processor.

The SDK calls every registered processor with the same record and lets none of them veto it, so
an enricher registered after an exporter is silently lost and a level filter is impossible. This
processor *wraps* the exporting processor instead (the spec's recommended filtering pattern), so
order is fixed by construction.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from opentelemetry import baggage
from opentelemetry.context import Context, get_current
from opentelemetry.sdk._logs import LogRecordProcessor, ReadWriteLogRecord

from otel_session import _sdk
from otel_session.capture import CaptureRegistry, registry
from otel_session.levels import LevelState, parse_level, severity_of, state
from otel_session.validation import LOG_LEVEL

DEFAULT_BAGGAGE_KEYS = ("session.*", "user.*")
MAX_VALUE_LEN = 256
_CACHE_MAX = 4096

# Our own failures are reported here: never through the root logger, which would re-enter us.
_internal = logging.getLogger("otel_session.internal")
_internal.propagate = False
if not _internal.handlers:
    _internal.addHandler(logging.StreamHandler(sys.stderr))


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
    ) -> None:
        self.inner = inner
        self._levels = levels
        self._captures = captures
        self.errors = 0
        self._cache: dict[int, tuple[Context, tuple[tuple[str, str], ...], int | None]] = {}
        self.set_baggage_keys(baggage_keys)

    def set_baggage_keys(self, patterns: Sequence[str]) -> None:
        self._exact, self._prefixes = _key_matcher(patterns)
        self.baggage_keys = tuple(patterns)
        self._cache = {}

    def _session_of(self, ctx: Context) -> tuple[tuple[tuple[str, str], ...], int | None]:
        """Attributes to copy and the session's severity threshold; cached per context object."""
        hit = self._cache.get(id(ctx))
        if hit is not None and hit[0] is ctx:
            return hit[1], hit[2]
        attrs = []
        threshold = None
        for key, value in baggage.get_all(ctx).items():
            if key == LOG_LEVEL:
                try:
                    threshold = severity_of(parse_level(value))  # type: ignore[arg-type]
                except (TypeError, ValueError):
                    pass
            if key in self._exact or key.startswith(self._prefixes):
                text = value if isinstance(value, str) else str(value)
                attrs.append((key, text[:MAX_VALUE_LEN]))
        result = tuple(attrs)
        if len(self._cache) >= _CACHE_MAX:
            self._cache = {}
        self._cache[id(ctx)] = (ctx, result, threshold)
        return result, threshold

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:  # type: ignore[override]
        try:
            lr = log_record.log_record
            ctx = lr.context
            if ctx:
                attrs, threshold = self._session_of(ctx)
            else:
                attrs, threshold = (), None
            severity = lr.severity_number
            if (severity.value if severity is not None else 0) < (
                self._levels.default_severity if threshold is None else threshold
            ):
                return
            if attrs:
                _sdk.add_attributes(lr, attrs)
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
        threshold = self._session_of(ctx)[1] if ctx else None
        wanted = self._levels.default_severity if threshold is None else threshold
        return severity is None or int(severity.value) >= wanted

    def shutdown(self) -> None:
        if self.inner is not None:
            self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis) if self.inner is not None else True
