"""`SessionLogProcessor`: enrich, redact, capture, gate, buffer and forward, in one processor that
wraps the exporting processors (the SDK lets no processor veto a record; docs/library.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk._logs import LogRecordProcessor, ReadWriteLogRecord

from otel_session._buffer import ERROR_SEVERITY
from otel_session._context import _ATTR, NO_FLOOR, Meaning
from otel_session._diagnostics import internal, is_sdk_logger
from otel_session._handler import emitting
from otel_session._record import entry
from otel_session._sdk import add_attributes as _add_attributes
from otel_session._sdk import current_context
from otel_session._severity import _BY_ID, severity_value
from otel_session._state import DEFAULT_BAGGAGE_KEYS, STATE, State
from otel_session._stdlib import configured_enabled

_EMPTY = Meaning(-1, (), None, ())


class SessionLogProcessor(LogRecordProcessor):
    """Stamp session ids from the record's own context, capture, apply its export level, forward."""

    def __init__(
        self,
        inner: LogRecordProcessor | None = None,
        baggage_keys: Sequence[str] | None = None,
        *,
        state: State = STATE,
    ) -> None:
        self.inner = inner
        self.host_processors: LogRecordProcessor | None = None  # the provider's others (`_sdk.put_first`)
        self.attached = False  # in a host's provider, whose own handler may bridge stdlib records too
        self._state = state
        self.errors = 0
        self.duplicates = 0
        if baggage_keys is not None and tuple(baggage_keys) != DEFAULT_BAGGAGE_KEYS:
            state.set_baggage_keys(baggage_keys)
        self._export = self.export  # what a flush of the records this processor buffered calls

    @property
    def baggage_keys(self) -> tuple[str, ...]:
        return self._state.keys.patterns

    def set_baggage_keys(self, patterns: Sequence[str]) -> None:
        self._state.set_baggage_keys(patterns)

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:  # type: ignore[override]
        try:  # the hot path, inlined: one call per record (see benchmarks/)
            lr = log_record.log_record
            if self.attached and self._duplicate(log_record):
                return
            ctx = lr.context
            state = self._state
            if ctx is None:
                meaning = _EMPTY
            else:
                meaning = getattr(ctx, _ATTR, None)
                if meaning is None or meaning.generation != state.generation:
                    meaning = state.meaning(ctx)
            severity = _BY_ID.get(id(lr.severity_number))
            if severity is None:
                severity = severity_value(lr.severity_number)
            export = meaning.export_severity
            if severity == 0:  # UNSPECIFIED (an event): no level applies to it
                exported = True
            elif export is not None:
                exported = severity >= export
            elif meaning.floor_level != NO_FLOOR:  # maybe created only for a capture: what the app's levels create
                scope = log_record.instrumentation_scope
                exported = configured_enabled(scope.name if scope is not None else "", severity)
            else:
                exported = True
            captures = meaning.captures
            buffered = False
            if not exported:
                buffered = meaning.buffer_severity is not None and severity >= meaning.buffer_severity
                if not buffered and not any(severity >= c.severity and not c.closed for c in captures):
                    return
            # `bare`: the record's attributes are exactly the context's, so their size is known
            bare = _add_attributes(lr, meaning.attrs, meaning.longest) if meaning.attrs else False
            if state.redactor.patterns:
                state.redactor.record(lr)
                bare = False
            if captures:
                kept = None
                for cap in captures:
                    if severity >= cap.severity:
                        if kept is None:
                            kept = (entry(log_record, severity, meaning.attrs_view, meaning.attrs_size) if bare
                                    else entry(log_record, severity))
                        cap.keep(kept)
            if meaning.buffer_key is not None:  # the debug buffer is on (`_buffer`)
                if severity >= ERROR_SEVERITY and state.buffer.on:
                    state.buffer.flush(meaning.buffer_key)  # the trace failed: what it buffered goes first
                if buffered:
                    if state.buffer.add(meaning.buffer_key, log_record, lr.body, self._export):
                        return
                    exported = True  # its trace failed lately: what follows the error is exported too
            if exported:  # `export()`, inlined
                if self.inner is not None:
                    self.inner.on_emit(log_record)
                if self.host_processors is not None:
                    self.host_processors.on_emit(log_record)
        except Exception:  # never into the caller's logging call
            self.errors += 1
            if self.errors == 1 or self.errors % 1000 == 0:
                internal.exception("otel_session: log record lost (%d so far)", self.errors)

    def export(self, log_record: ReadWriteLogRecord) -> None:
        """To every exporting processor: ours, then the host's."""
        if self.inner is not None:
            self.inner.on_emit(log_record)
        if self.host_processors is not None:
            self.host_processors.on_emit(log_record)

    def _duplicate(self, log_record: ReadWriteLogRecord) -> bool:
        """One stdlib record bridged into this provider twice, by the host's handler and ours, in
        a row on one thread: the second copy is dropped. The SDK's own records never go on."""
        lr = log_record.log_record
        scope = log_record.instrumentation_scope
        name = scope.name if scope is not None else ""
        if is_sdk_logger(name):
            return True
        ours = getattr(emitting, "ours", False)
        key = (lr.timestamp, name, lr.severity_number)
        last = getattr(emitting, "last", None)
        emitting.last = (key, ours)
        if last is not None and last[0] == key and last[1] is not ours:
            emitting.last = None
            self.duplicates += 1
            return True
        return False

    def enabled(self, *args: Any, **kwargs: Any) -> bool:
        """Whether a record of this severity in this context would be exported or captured."""
        ctx = kwargs.get("context") or current_context()
        severity = kwargs.get("severity_number")
        if severity is None:
            return True
        meaning = self._state.meaning(ctx)
        value = severity_value(severity)
        if any(value >= c.severity for c in meaning.captures) or (
                meaning.buffer_severity is not None and value >= meaning.buffer_severity):
            return True
        if meaning.export_severity is not None:
            return value >= meaning.export_severity
        scope = kwargs.get("instrumentation_scope")
        return configured_enabled(scope.name if scope is not None else "root", value)

    def shutdown(self) -> None:
        for processor in (self.inner, self.host_processors):
            if processor is not None:
                processor.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        flushed = True
        for processor in (self.inner, self.host_processors):
            if processor is not None:
                flushed = processor.force_flush(timeout_millis) and flushed
        return flushed
