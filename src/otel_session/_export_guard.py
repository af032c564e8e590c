"""What leaves the process, counted, and the OTLP route across a Collector that blinks: every batch an exporter
is handed is tallied by exporter (`ExportCounts`, read by `Telemetry.export_stats()` and the library's metrics);
a batch the SDK's OTLP exporter gave up on is tried again for up to `OTEL_BLRP_EXPORT_TIMEOUT` (the SDK reads
that setting but never applies it) unless it would fail again (`Attempts`), and every record lost on the way
(the batch queue full, a batch given up) is counted, with one warning per outage (docs/collector.md, "When the
Collector blinks").

Memory stays bounded by the SDK's queue: while a batch is retried the worker thread waits here, and new records
wait in the queue (`OTEL_BLRP_MAX_QUEUE_SIZE`), which drops its oldest when full. Nothing here runs on the
logging call but a counter the SDK's full queue bumps.
"""

from __future__ import annotations

import dataclasses
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.environment_variables import OTEL_BLRP_EXPORT_TIMEOUT, OTEL_BLRP_MAX_QUEUE_SIZE

from otel_session import _sdk
from otel_session._diagnostics import internal

DEFAULT_EXPORT_TIMEOUT_MS = 30000  # the SDK's (and the spec's) default for OTEL_BLRP_EXPORT_TIMEOUT
DEFAULT_MAX_QUEUE_SIZE = 2048
PAUSE_S = 0.5  # between two tries of one batch, doubled up to MAX_PAUSE_S, jittered like the SDK's backoff
MAX_PAUSE_S = 4.0
SHUTDOWN_WAIT_S = 2.0  # for the batch being tried to be given up, at shutdown

log = internal.getChild("export")


OTHER_ERROR = "_OTHER"  # `error.type` of a failed export that raised nothing (the semantic conventions' fallback)


@dataclasses.dataclass(frozen=True)
class ExportStats:
    """Records through the exporting processors `configure()` built, since the process started (monotonic).

    `exported`: records an exporter took. `dropped_queue_full`: records the SDK's batch queue dropped, full
    (`OTEL_BLRP_MAX_QUEUE_SIZE`; it drops its oldest). `dropped_export`: records of batches given up (still
    failing after `OTEL_BLRP_EXPORT_TIMEOUT`, refused, or at shutdown), and those left queued when shutdown
    stopped waiting. `outages`: how often exports started failing (after the SDK's own retries). `failing`:
    the last export failed."""

    exported: int = 0
    dropped_queue_full: int = 0
    dropped_export: int = 0
    outages: int = 0
    failing: bool = False

    @property
    def lost(self) -> int:
        """Every record lost on the way out: the two kinds of drop together."""
        return self.dropped_queue_full + self.dropped_export


class ExportCounts:
    """The one tally of what leaves the process: records handed to each exporter (by configure()'s exporter
    name and, when the export failed, its error type) and records lost on the way; behind `ExportStats` and the
    `otel_session.log.exported` / `otel_session.log.lost` metrics. A forked child counts its own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_exporter: dict[tuple[str, str | None], int] = {}
        self.dropped_queue_full = self.dropped_export = self.outages = 0
        self.failing = False

    def after_fork(self) -> None:
        self.__init__()  # type: ignore[misc]  # what the parent exported is the parent's

    def handed(self, exporter: str, error: str | None, count: int) -> None:
        """A batch an exporter took (`error` None) or failed, on the export thread."""
        with self._lock:
            key = (exporter, error)
            self._by_exporter[key] = self._by_exporter.get(key, 0) + count

    def by_exporter(self) -> dict[tuple[str, str | None], int]:
        with self._lock:
            return dict(self._by_exporter)

    def queue_full(self, count: int) -> None:
        """On the logging call (the SDK's full queue): a counter, nothing else."""
        with self._lock:
            self.dropped_queue_full += count

    def given_up(self, count: int) -> None:
        with self._lock:
            self.dropped_export += count

    def set_failing(self, failing: bool) -> None:
        with self._lock:
            self.outages += failing and not self.failing
            self.failing = failing

    @property
    def lost(self) -> int:
        return self.dropped_queue_full + self.dropped_export

    def stats(self) -> ExportStats:
        with self._lock:
            exported = sum(n for (_, error), n in self._by_exporter.items() if error is None)
            return ExportStats(exported, self.dropped_queue_full, self.dropped_export, self.outages, self.failing)


COUNTS = ExportCounts()
os.register_at_fork(after_in_child=COUNTS.after_fork)


class CountingExporter(LogRecordExporter):
    """`inner`, with each batch it is handed counted under `name` where the batch is exported (the batch
    processor's thread), never on the logging call."""

    def __init__(self, inner: LogRecordExporter, name: str, counts: ExportCounts = COUNTS) -> None:
        self.inner = inner
        self.name = name
        self._counts = counts

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:  # type: ignore[override]
        try:
            result = self.inner.export(batch)  # type: ignore[arg-type]
        except Exception as exc:
            self._counts.handed(self.name, type(exc).__qualname__, len(batch))
            raise
        ok = result is None or result == LogRecordExportResult.SUCCESS  # the SDK's in-memory exporter says nothing
        self._counts.handed(self.name, None if ok else OTHER_ERROR, len(batch))
        return result

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self.inner.shutdown()  # type: ignore[no-untyped-call]


def _env_int(name: str, default: int) -> int:
    try:
        value = int(os.environ.get(name, "").strip() or default)
    except ValueError:
        return default  # the SDK warns about it itself
    return value if value > 0 else default


class Attempts:
    """What the OTLP exporter's requests got back, seen from the `requests.Session` it was given
    (`observed_session`): whether a failed export is worth another try. A batch the Collector refused (a
    4xx other than 408 and 429), or one the exporter never sent (it could not encode it, or it is over its
    size limit), fails the same way every time."""

    def __init__(self) -> None:
        self.sent = 0
        self.status: int | None = None  # of the last request; None when it got no answer

    def final(self, sent_before: int) -> str | None:
        """Why the export that began at `sent_before` requests must not be tried again; None if it may."""
        if self.sent == sent_before:
            return "the OTLP exporter sent nothing (it could not encode the batch, or it is over its size limit)"
        status = self.status
        if status is not None and 400 <= status < 500 and status not in (408, 429):
            return f"the Collector refused them with HTTP {status}"
        return None


def observed_session(attempts: Attempts) -> Any:
    """A `requests.Session` for the SDK's OTLP/HTTP exporter (its public `session=`) that tells `attempts`."""
    import requests

    class ObservedSession(requests.Session):
        def request(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            attempts.sent += 1
            attempts.status = None
            response = super().request(*args, **kwargs)
            attempts.status = response.status_code
            return response

    return ObservedSession()


class RetryingExporter(LogRecordExporter):
    """Wraps the SDK's OTLP exporter: a batch it fails (after its own retries within
    `OTEL_EXPORTER_OTLP_TIMEOUT`) is tried again until `OTEL_BLRP_EXPORT_TIMEOUT` from its first try, or
    shutdown; then it is given up and counted. One WARNING per outage, once it has lost records, on the
    export thread; the next comes only after an export succeeds again."""

    def __init__(self, inner: LogRecordExporter, counts: ExportCounts, *, budget_s: float | None = None,
                 queue_size: int | None = None, attempts: Attempts | None = None) -> None:
        self.inner = inner
        self.counts = counts
        self.attempts = attempts  # what `inner`'s requests got back; None: every failure is tried again
        self.budget_s = (budget_s if budget_s is not None
                         else _env_int(OTEL_BLRP_EXPORT_TIMEOUT, DEFAULT_EXPORT_TIMEOUT_MS) / 1000)
        self.queue_size = queue_size if queue_size is not None else _env_int(OTEL_BLRP_MAX_QUEUE_SIZE,
                                                                           DEFAULT_MAX_QUEUE_SIZE)
        self.queued: Callable[[], int] | None = None  # the batch queue's length (`batch_processor`)
        self._stopping = threading.Event()
        self._busy = threading.Lock()  # held while a batch is tried
        self._pid = os.getpid()
        self._down_since: float | None = None  # monotonic time of the outage's first failure
        self._lost_before = 0  # counts.lost when all was last well: what a warning counts from
        self._lost_at_success = 0  # counts.lost at the last successful export
        self._warned = False
        self._shut_lock = threading.Lock()
        self._inner_shut = False
        self._refusals_warned: set[str] = set()  # since the last export that succeeded

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:  # type: ignore[override]
        if self._pid != os.getpid():  # a forked child (the SDK restarts its worker there): locks of its own
            self._busy, self._stopping, self._pid = threading.Lock(), threading.Event(), os.getpid()
            self._shut_lock = threading.Lock()
        with self._busy:
            return self._export(batch)

    def _export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        deadline = time.monotonic() + self.budget_s
        pause = PAUSE_S
        while True:
            tried = time.monotonic()
            sent_before = self.attempts.sent if self.attempts is not None else 0
            try:
                result = self.inner.export(batch)
            except Exception:  # the SDK's exporters return FAILURE; anything else is a failure too
                result = LogRecordExportResult.FAILURE
            if result is LogRecordExportResult.SUCCESS:
                self._succeeded()
                return result
            why = self.attempts.final(sent_before) if self.attempts is not None else None
            if why is not None and not self._inner_shut:
                self._refused(why, len(batch))
                return result
            self._failed(tried)
            remaining = deadline - time.monotonic()
            if self._stopping.is_set() or remaining <= 0:
                self.counts.given_up(len(batch))
                self._warn_once()
                if self._stopping.is_set():
                    self._shut_inner()  # shutdown in an outage: the batches after this one fail at once
                return result
            self._warn_once()
            # the last try at the deadline; shutdown cuts the pause short for one last try (a Collector back)
            self._stopping.wait(min(pause * random.uniform(0.8, 1.2), remaining))
            pause = min(pause * 2, MAX_PAUSE_S)

    def _refused(self, why: str, count: int) -> None:
        """A batch that would fail again: given up at once, counted, one warning per reason until an export
        succeeds (not an outage: the Collector answers)."""
        self.counts.given_up(count)
        self._lost_before += count  # not the outage warning's to count
        self._lost_at_success += count
        if why in self._refusals_warned:
            return
        self._refusals_warned.add(why)
        log.warning("otel_session: %d log records given up without a retry: %s; counted in "
                    "Telemetry.export_stats(); no further warning for this until an export succeeds", count, why)

    def _failed(self, tried: float) -> None:
        if self._down_since is None:
            self._down_since = tried  # when the first failed try began (the SDK's own retries take a while)
            self.counts.set_failing(True)

    def _succeeded(self) -> None:
        self._refusals_warned.clear()
        lost = self.counts.lost
        down = self._down_since
        ended = down is not None or lost == self._lost_at_success  # an outage, or an overload, is over
        self._warn_once()  # what was lost since the last check (a full queue while exports still succeed too)
        if down is not None:
            self.counts.set_failing(False)
        if self._warned and ended:  # the next loss warns again
            log.info("otel_session: log export works again%s; %d records lost in this outage "
                     "(Telemetry.export_stats())",
                     f" after {time.monotonic() - down:.1f} s" if down is not None else "", lost - self._lost_before)
            self._warned = False
        if not self._warned:
            self._lost_before = lost
        self._down_since = None
        self._lost_at_success = lost

    def _warn_once(self) -> None:
        lost = self.counts.lost
        if self._warned or lost <= self._lost_before:
            return
        self._warned = True
        since = f" for {time.monotonic() - self._down_since:.1f} s" if self._down_since is not None else ""
        log.warning(
            "otel_session: log records are being lost: the Collector has not taken them%s; %d lost so far "
            "(the queue keeps the newest %d: OTEL_BLRP_MAX_QUEUE_SIZE; a batch is retried for %g s: "
            "OTEL_BLRP_EXPORT_TIMEOUT), counted in Telemetry.export_stats(); "
            "no further warning until exports succeed again", since, lost - self._lost_before, self.queue_size,
            self.budget_s)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def closing(self) -> None:
        """Shutdown begins (before the batch processor's last flush): no more retries. The last flush drains
        the queue into a Collector that is there; its first failed try (within the SDK exporter's
        `OTEL_EXPORTER_OTLP_TIMEOUT`) shuts the SDK exporter down, so the rest is given up (counted) at once
        instead of each batch taking that timeout while a service is being stopped."""
        self._stopping.set()

    def _shut_inner(self) -> None:
        with self._shut_lock:
            if self._inner_shut:
                return
            self._inner_shut = True
        self.inner.shutdown()  # type: ignore[no-untyped-call]  # ends the SDK's own retries too

    def shutdown(self) -> None:
        """The batch processor calls this once its worker finished, or it gave up waiting: the batch being
        tried is given up, and what is still queued will never be exported; both are counted."""
        self._stopping.set()
        self._shut_inner()
        if self._busy.acquire(timeout=SHUTDOWN_WAIT_S):  # the batch being tried is given up and counted
            self._busy.release()
        left = self.queued() if self.queued is not None else 0
        if left:
            self.counts.given_up(left)


class _ClosingBatchProcessor(BatchLogRecordProcessor):
    """The SDK's batch processor, which tells a `RetryingExporter` that shutdown began before its last flush."""

    def __init__(self, exporter: LogRecordExporter, retrying: RetryingExporter) -> None:
        super().__init__(exporter)
        self._retrying = retrying

    def shutdown(self) -> None:
        self._retrying.closing()
        super().shutdown()  # type: ignore[no-untyped-call]


def batch_processor(exporter: LogRecordExporter, name: str, counts: ExportCounts = COUNTS) -> BatchLogRecordProcessor:
    """The SDK's batch processor (its settings from `OTEL_BLRP_*`) over `exporter` counted as `name`, its
    queue-full drops counted too."""
    counted = CountingExporter(exporter, name, counts)
    if isinstance(exporter, RetryingExporter):
        processor: BatchLogRecordProcessor = _ClosingBatchProcessor(counted, exporter)
        exporter.queued = _sdk.queue_length(processor)
    else:
        processor = BatchLogRecordProcessor(counted)
    if not _sdk.count_queue_drops(processor, counts.queue_full):
        log.warning("otel_session: this opentelemetry-sdk's batch processor has an unknown shape: records its "
                    "full queue drops are not counted in Telemetry.export_stats()")
    return processor
