"""The library's own metrics: observable instruments that read counts the pipeline keeps anyway (the
debug buffer's stats, the open captures, the live grants, the export tally, the refused levels), so a
logging call costs nothing more. Names, units and meanings: docs/library.md#metrics.

No session or user id is ever an attribute: a metric's attributes are low-cardinality by design. A callback
never raises into the SDK: a failure is counted (`ERRORS`) and warned about once per instrument. Callbacks
take no lock of `STATE`'s: a collection may run while configure() holds it.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable
from importlib.metadata import PackageNotFoundError, version

from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from otel_session._buffer import BufferStats
from otel_session._diagnostics import internal
from otel_session._export_guard import COUNTS
from otel_session._state import STATE

SCOPE = "otel_session"
EXPORTER = "otel_session.exporter"  # configure()'s exporter name: otlp, file, console, memory, a class name
ERROR_TYPE = "error.type"  # the semantic conventions' attribute for why an operation failed
GRANT_SCOPE = "otel_session.grant.scope"  # what a live grant names: "session" or "user"

Read = Callable[[], Iterable[Observation]]


class CallbackErrors:
    """Failed observable callbacks, by instrument name; each warned about once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}

    def failed(self, name: str) -> None:
        with self._lock:
            first = name not in self.counts
            self.counts[name] = self.counts.get(name, 0) + 1
        if first:
            internal.warning("otel_session: the %s metric could not be read (its value is left out, this warning "
                             "is not repeated)", name, exc_info=True)


ERRORS = CallbackErrors()


def _safe(name: str, read: Read) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def callback(options: CallbackOptions) -> Iterable[Observation]:
        try:
            return list(read())
        except Exception:  # never into the SDK's collection
            ERRORS.failed(name)
            return []

    return callback


def _buffer(field: str) -> Read:
    def read() -> Iterable[Observation]:
        stats: BufferStats = STATE.buffer.stats()
        return [Observation(getattr(stats, field))]

    return read


def _exported() -> Iterable[Observation]:
    for (exporter, error), count in COUNTS.by_exporter().items():
        yield Observation(count, {EXPORTER: exporter} if error is None else {EXPORTER: exporter, ERROR_TYPE: error})


def _lost() -> Iterable[Observation]:
    stats = COUNTS.stats()
    return [Observation(stats.dropped_queue_full, {ERROR_TYPE: "queue_full"}),
            Observation(stats.dropped_export, {ERROR_TYPE: "export_given_up"})]


def _captures() -> Iterable[Observation]:
    return [Observation(STATE.captures.open_count)]


def _grants() -> Iterable[Observation]:
    table = STATE.grants
    return [Observation(len({grant for _, grant in table.by_session.values()}), {GRANT_SCOPE: "session"}),
            Observation(len({grant for _, grant in table.by_user.values()}), {GRANT_SCOPE: "user"})]


def _refused() -> Iterable[Observation]:
    return [Observation(STATE.signing.refused)]


# (kind, name, unit, description, read): the one list docs/library.md#metrics describes.
INSTRUMENTS: tuple[tuple[str, str, str, str, Read], ...] = (
    ("counter", "otel_session.log.exported", "{record}",
     "Log records handed to otel_session's exporter, by exporter; error.type when the export failed", _exported),
    ("counter", "otel_session.log.lost", "{record}",
     "Log records lost on the way out: the batch queue was full, or a batch was given up (Telemetry.export_stats())",
     _lost),
    ("updown", "otel_session.buffer.size", "{record}", "Log records the debug buffer holds now", _buffer("buffered")),
    ("updown", "otel_session.buffer.usage", "By", "Bytes the debug buffer holds now", _buffer("buffered_bytes")),
    ("counter", "otel_session.buffer.flushed", "{record}",
     "Buffered log records exported because their trace failed", _buffer("flushed")),
    ("counter", "otel_session.buffer.dropped", "{record}",
     "Buffered log records dropped because their trace did not fail within the TTL", _buffer("dropped")),
    ("counter", "otel_session.buffer.evicted", "{record}",
     "Buffered log records pushed out by the buffer's byte bound", _buffer("evicted")),
    ("updown", "otel_session.capture.count", "{capture}", "Captures open now", _captures),
    ("updown", "otel_session.grant.count", "{grant}", "Live debug grants this process honours, by what they name",
     _grants),
    ("counter", "otel_session.log_level.refused", "{log_level}",
     "Log levels travelling in baggage that the signature check refused", _refused),
)

_registered: weakref.WeakSet[MeterProvider] = weakref.WeakSet()
_lock = threading.Lock()


def _version() -> str:
    try:
        return version("otel-session")
    except PackageNotFoundError:
        return ""


def register(provider: MeterProvider) -> None:
    """Create the library's instruments on `provider` (ours or a host's), once per provider."""
    with _lock:
        if provider in _registered:
            return
        _registered.add(provider)
    meter = provider.get_meter(SCOPE, _version() or None)
    for kind, name, unit, description, read in INSTRUMENTS:
        create = meter.create_observable_counter if kind == "counter" else meter.create_observable_up_down_counter
        create(name, callbacks=[_safe(name, read)], unit=unit, description=description)


__all__ = ["ERRORS", "ERROR_TYPE", "EXPORTER", "GRANT_SCOPE", "INSTRUMENTS", "SCOPE", "CallbackErrors", "register"]
