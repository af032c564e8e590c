"""A service logging steadily while its Collector blinks (the real Collector stopped with SIGTERM and started again
on the same port): a short outage loses nothing; a long one loses only what the batch queue's bound cannot hold,
every lost record counted in `Telemetry.export_stats()`, with one warning."""

from __future__ import annotations

import time
from pathlib import Path

from tests.helpers.blink import BlinkService, received
from tests.helpers.collector import Collector


def test_a_five_second_blink_loses_no_record_and_duplicates_none(tmp_path: Path) -> None:
    collector = Collector(tmp_path / "collector").start()
    service = BlinkService(collector.endpoint, tmp_path, rate=100)
    try:
        time.sleep(1)
        assert collector.stop() == 0
        time.sleep(5)
        collector.start()
        time.sleep(2)  # logging on after the Collector is back
        result = service.stop()
    finally:
        service.kill()
        collector.stop()
    seen = received(collector.file("logs"))
    sent = result["sent"]
    assert sent > 500
    assert sorted(seen) == list(range(sent)), "every numbered record arrived"
    assert set(seen.values()) == {1}, "none twice: a refused connection never delivered what is retried"
    stats = result["stats"]
    assert stats["exported"] == sent and stats["dropped_queue_full"] == stats["dropped_export"] == 0
    assert service.diagnostics() == []


# A small queue and short timeouts, so a 10 s outage overflows the queue and gives batches up.
SMALL = {
    "OTEL_BLRP_MAX_QUEUE_SIZE": "100",
    "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE": "20",
    "OTEL_BLRP_SCHEDULE_DELAY": "100",
    "OTEL_BLRP_EXPORT_TIMEOUT": "4000",  # a batch is given up after 4 s of tries (a restart takes far less)
    "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
}


def test_a_long_outage_loses_only_what_the_queue_cannot_hold_counted_with_one_warning(tmp_path: Path) -> None:
    """The service logs through a 10 s outage and pauses just before the Collector is back, so what the queue
    holds then is known exactly: its newest `OTEL_BLRP_MAX_QUEUE_SIZE` records."""
    queue = int(SMALL["OTEL_BLRP_MAX_QUEUE_SIZE"])
    collector = Collector(tmp_path / "collector").start()
    service = BlinkService(collector.endpoint, tmp_path, rate=100, env=SMALL)
    try:
        time.sleep(1)
        assert collector.stop() == 0
        at_stop = service.mark()
        time.sleep(10)
        paused = service.pause()
        collector.start()
        result = service.stop()  # its shutdown drains the queue into the Collector that is back
    finally:
        service.kill()
        collector.stop()
    seen = received(collector.file("logs"))
    sent = result["sent"]
    assert sent == paused and paused - at_stop > 5 * queue
    assert set(seen.values()) == {1}, "none twice"
    missing = sorted(set(range(sent)) - set(seen))
    stats = result["stats"]
    assert stats["dropped_queue_full"] > 0 and stats["dropped_export"] > 0, stats  # both kinds happened
    assert len(missing) == stats["dropped_queue_full"] + stats["dropped_export"], "every lost record counted"
    assert stats["exported"] == len(seen)
    assert set(range(sent - queue, sent)) <= set(seen), "the queue kept its newest records through the outage"
    assert missing[0] >= at_stop - queue and missing[-1] < sent - queue, "only records of the outage were lost"
    warnings = service.diagnostics()
    assert len(warnings) == 1 and "being lost" in warnings[0] and "export_stats" in warnings[0], warnings
    recovered = service.diagnostics("INFO")
    assert len(recovered) == 1 and f"{len(missing)} records lost" in recovered[0], recovered
