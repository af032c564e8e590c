"""Cost of one `logger.info` call through each pipeline, measured in one process and one run.

Not a test: it prints ns per call and ratios against the plain OTel SDK pipeline
(stdlib -> bridge handler -> batch processor -> discarding exporter). Run it with
`make bench` or `python benchmarks/bench_logging.py [--calls N] [--rounds R]`.
"""

from __future__ import annotations

import argparse
import gc
import logging
import statistics
import time
from collections.abc import Callable, Sequence

from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.processor.baggage import ALLOW_ALL_BAGGAGE_KEYS, BaggageLogProcessor
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor, ReadableLogRecord
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    LogRecordExporter,
    LogRecordExportResult,
)
from opentelemetry.sdk.resources import Resource

import otel_session
from otel_session import SessionLogProcessor


class DiscardingExporter(LogRecordExporter):
    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:  # type: ignore[override]
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _batch() -> BatchLogRecordProcessor:
    return BatchLogRecordProcessor(DiscardingExporter(), max_queue_size=65536, schedule_delay_millis=50)


def pipeline(name: str, processors: list[LogRecordProcessor]) -> tuple[logging.Logger, LoggerProvider]:
    provider = LoggerProvider(resource=Resource.create({"service.name": "bench"}), shutdown_on_exit=False)
    for processor in processors:
        provider.add_log_record_processor(processor)
    log = logging.getLogger(f"bench.{name}")
    log.handlers[:] = [LoggingHandler(logger_provider=provider)]
    log.propagate = False
    log.setLevel(logging.INFO)
    return log, provider


def time_calls(call: Callable[[], None], calls: int) -> float:
    gc.collect()  # every case starts from the same heap state
    start = time.perf_counter_ns()
    for _ in range(calls):
        call()
    return (time.perf_counter_ns() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()

    plain, p_plain = pipeline("plain", [_batch()])
    contrib, p_contrib = pipeline("contrib", [BaggageLogProcessor(ALLOW_ALL_BAGGAGE_KEYS), _batch()])
    ours, p_ours = pipeline("ours", [SessionLogProcessor(_batch())])

    stdlib_off = logging.getLogger("bench.stdlib_off")
    stdlib_off.handlers[:] = [logging.NullHandler()]
    stdlib_off.propagate = False
    stdlib_off.setLevel(logging.INFO)
    otel_session.configure(service_name="bench", exporter="none", level="INFO")
    ours_off = logging.getLogger("bench.ours_off")  # propagates to the root logger's bridge handler

    cases: dict[str, Callable[[], None]] = {
        "plain OTel SDK": lambda: plain.info("request handled in %d ms", 12),
        "+ contrib BaggageLogProcessor": lambda: contrib.info("request handled in %d ms", 12),
        "otel_session (enrich + gate)": lambda: ours.info("request handled in %d ms", 12),
    }
    results: dict[str, list[float]] = {name: [] for name in [*cases, "otel_session, capture open",
                                                            "stdlib, disabled debug", "otel_session, disabled debug"]}
    with otel_session.session(session_id="sess-1234", user_id="user-42", user_name="Ada Lovelace"):
        for _ in range(args.rounds):
            for name, call in cases.items():
                results[name].append(time_calls(call, args.calls))
            with otel_session.capture():
                results["otel_session, capture open"].append(
                    time_calls(lambda: ours.info("request handled in %d ms", 12), args.calls)
                )
            results["stdlib, disabled debug"].append(
                time_calls(lambda: stdlib_off.debug("cache miss %s", "k"), args.calls * 10)
            )
            results["otel_session, disabled debug"].append(
                time_calls(lambda: ours_off.debug("cache miss %s", "k"), args.calls * 10)
            )
            for provider in (p_plain, p_contrib, p_ours):
                provider.force_flush()

    def report(name: str, base: str, suffix: str = "") -> None:
        # The ratio is the median of per-round ratios: both sides of one ratio ran back to back.
        ratio = statistics.median(a / b for a, b in zip(results[name], results[base], strict=True))
        print(f"{name:34} {statistics.median(results[name]):9.0f} {ratio:6.2f}x{suffix}")

    print(f"{args.rounds} rounds x {args.calls} calls; medians")
    print(f"{'pipeline':34} {'ns/call':>9} {'ratio':>7}")
    for name in [*cases, "otel_session, capture open"]:
        report(name, "plain OTel SDK")
    for name in ("stdlib, disabled debug", "otel_session, disabled debug"):
        report(name, "stdlib, disabled debug", " (vs stdlib)")


if __name__ == "__main__":
    main()
