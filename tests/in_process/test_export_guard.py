"""The OTLP route's retries and counts against a refused connection (the SDK's real OTLP exporter, a loopback
port nobody listens on): a batch given up is counted, and an outage warns once (the real Collector's blinks:
tests/collector/test_collector_blink.py)."""

from __future__ import annotations

import logging
import time

import pytest
from opentelemetry._logs import LogRecord
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import LogRecordExportResult

from otel_session._export_guard import Attempts, ExportCounts, RetryingExporter, batch_processor, observed_session
from tests.helpers.collector import free_port
from tests.helpers.otlp import Answering
from tests.helpers.support import wait_for


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def lines():
    handler = Lines()
    logger = logging.getLogger("otel_session.internal.export")
    logger.addHandler(handler)
    level, logger.level = logger.level, logging.INFO
    yield handler.records
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_a_batch_still_refused_after_its_budget_is_given_up_counted_and_warned_once(lines) -> None:
    counts = ExportCounts()
    refused = OTLPLogExporter(endpoint=f"http://127.0.0.1:{free_port()}/v1/logs", timeout=0.2)
    exporter = RetryingExporter(refused, counts, budget_s=0.6, queue_size=10)
    batch = [ReadWriteLogRecord(LogRecord(body=f"r{n}")) for n in range(3)]
    assert exporter.export(batch) is LogRecordExportResult.FAILURE
    assert exporter.export(batch[:2]) is LogRecordExportResult.FAILURE
    stats = counts.stats()
    assert (stats.dropped_export, stats.lost, stats.exported, stats.outages, stats.failing) == (5, 5, 0, 1, True)
    warnings = [r for r in lines if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "3 lost so far" in warnings[0].getMessage()  # the first loss; not per batch
    counts.queue_full(4)
    exporter.queued = lambda: 7  # what the batch queue still holds when its shutdown stops waiting
    exporter.shutdown()
    assert counts.stats().dropped_export == 12 and counts.stats().lost == 16
    assert len([r for r in lines if r.levelno == logging.WARNING]) == 1


def test_a_shutdown_during_an_outage_gives_the_queue_up_at_once_counted(lines) -> None:
    """Stopping a service while its Collector is away takes a moment, not the export budget per batch (the
    OTLP exporter's own backoff, then ours): what is queued is given up and counted."""
    counts = ExportCounts()
    refused = OTLPLogExporter(endpoint=f"http://127.0.0.1:{free_port()}/v1/logs", timeout=3)  # its own backoff
    exporter = RetryingExporter(refused, counts, budget_s=30, queue_size=2048)
    provider = LoggerProvider()
    provider.add_log_record_processor(batch_processor(exporter, "otlp", counts))
    logger = provider.get_logger("outage")
    for n in range(600):  # more than one batch (512), so more than the batch in flight is left
        logger.emit(LogRecord(body=f"r{n}"))
    wait_for(lambda: counts.stats().failing, 30, what="the first export to fail")
    began = time.monotonic()
    provider.shutdown()
    took = time.monotonic() - began
    assert took < 10, f"shutdown took {took:.1f} s"  # one last try (3 s at most here), not 30 s
    stats = counts.stats()
    assert (stats.exported, stats.dropped_export, stats.dropped_queue_full) == (0, 600, 0)


def _observed(status: int, budget_s: float) -> tuple[Answering, RetryingExporter, ExportCounts]:
    server, counts, attempts = Answering(status), ExportCounts(), Attempts()
    inner = OTLPLogExporter(endpoint=server.url, timeout=1, session=observed_session(attempts))
    return server, RetryingExporter(inner, counts, budget_s=budget_s, attempts=attempts), counts


def test_a_batch_the_collector_refuses_is_given_up_at_once_counted_and_warned_once_per_reason(lines) -> None:
    server, exporter, counts = _observed(400, budget_s=30)
    try:
        batch = [ReadWriteLogRecord(LogRecord(body=f"r{n}")) for n in range(3)]
        assert exporter.export(batch) is LogRecordExportResult.FAILURE
        assert exporter.export(batch[:2]) is LogRecordExportResult.FAILURE
        assert server.posts == 2  # one request a batch: a 400 is not tried again
    finally:
        server.close()
    stats = counts.stats()
    assert (stats.dropped_export, stats.exported, stats.outages) == (5, 0, 0)  # lost and counted; not an outage
    warnings = [r.getMessage() for r in lines if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "3 log records given up without a retry" in warnings[0], warnings
    assert "refused them with HTTP 400" in warnings[0]


def test_a_batch_the_collector_cannot_take_now_is_tried_again(lines) -> None:
    server, exporter, counts = _observed(503, budget_s=1.5)
    try:
        assert exporter.export([ReadWriteLogRecord(LogRecord(body="r"))]) is LogRecordExportResult.FAILURE
        assert server.posts >= 2  # 503 is worth another try, until the budget
    finally:
        server.close()
    assert counts.stats().dropped_export == 1 and counts.stats().outages == 1


def test_what_an_export_attempt_says_about_trying_again() -> None:
    attempts = Attempts()
    assert attempts.final(0) is not None and "sent nothing" in str(attempts.final(0))  # never sent: never will be
    attempts.sent, attempts.status = 1, None
    assert attempts.final(0) is None  # no answer (refused connection, timeout): try again
    for status, again in ((400, False), (401, False), (413, False), (408, True), (429, True), (500, True),
                          (503, True)):
        attempts.status = status
        assert (attempts.final(0) is None) is again, status
