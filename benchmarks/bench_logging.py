"""Cost of one logging call through each pipeline, measured in one process and one run.

Not a test: it prints ns per call and ratios. Like for like: every exporting pipeline is
stdlib -> a bridge handler -> processors -> `BatchLogRecordProcessor` -> a discarding exporter, and
each ratio is the median of per-round ratios of cases run back to back (many short alternating
rounds, timed in this thread's CPU time), so machine noise hits both sides of a ratio alike. Run it with `make bench` or
`python benchmarks/bench_logging.py [--calls N] [--rounds R]`.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import statistics
import threading
import time
from collections.abc import Callable, Sequence

from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.processor.baggage import ALLOW_ALL_BAGGAGE_KEYS, BaggageLogProcessor
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor, ReadableLogRecord
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.resources import Resource

import otel_session
from otel_session import SessionLogProcessor, _stdlib
from otel_session._grant_table import GrantTable
from otel_session._handler import BridgeHandler
from otel_session._state import STATE
from otel_session.live.plug import RedisLive


class DiscardingExporter(LogRecordExporter):
    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:  # type: ignore[override]
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _batch() -> BatchLogRecordProcessor:
    return BatchLogRecordProcessor(DiscardingExporter(), max_queue_size=65536, schedule_delay_millis=50)


def pipeline(name: str, processors: list[LogRecordProcessor], handler: type = LoggingHandler
             ) -> tuple[logging.Logger, LoggerProvider]:
    provider = LoggerProvider(resource=Resource.create({"service.name": "bench"}), shutdown_on_exit=False)
    for processor in processors:
        provider.add_log_record_processor(processor)
    log = logging.getLogger(f"bench.{name}")
    log.handlers[:] = [handler(logger_provider=provider)]
    log.propagate = False
    log.setLevel(logging.INFO)
    return log, provider


def time_calls(call: Callable[[], None], calls: int) -> float:
    """CPU time of this thread per call: the batch processor's worker thread, other processes and
    the scheduler (this machine has 2 cores) do not count against the case being measured."""
    gc.collect()  # every case starts from the same heap state
    start = time.thread_time_ns()
    for _ in range(calls):
        call()
    return (time.thread_time_ns() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=41)
    args = parser.parse_args()

    otel_session.configure(service_name="bench", exporter="none", level="INFO")
    plain, p_plain = pipeline("plain", [_batch()])
    contrib, p_contrib = pipeline("contrib", [BaggageLogProcessor(ALLOW_ALL_BAGGAGE_KEYS), _batch()])
    ours, p_ours = pipeline("ours", [SessionLogProcessor(_batch())], BridgeHandler)
    ours_plain_handler, p_ours2 = pipeline("ours_plain_handler", [SessionLogProcessor(_batch())])
    quiet = logging.getLogger("bench.quiet")  # propagates to the root: INFO, our bridge handler
    info = lambda log: lambda: log.info("request handled in %d ms", 12)  # noqa: E731
    debug = lambda: quiet.debug("cache miss %s", "k")  # noqa: E731

    exporting = {
        "plain OTel SDK": info(plain),
        "+ contrib BaggageLogProcessor": info(contrib),
        "otel_session (enrich + gate)": info(ours),
        "otel_session processor, SDK handler": info(ours_plain_handler),
    }
    names = [*exporting, "otel_session, capture open", "stdlib, disabled debug",
             "disabled debug, no session live",
             "debug elsewhere while a session is at DEBUG",
             "enrich + gate, no grants", "grants configured, none live", "one grant live, for another session"]
    results: dict[str, list[float]] = {name: [] for name in names}
    few = args.calls * 10

    loud_ready, stop = threading.Event(), threading.Event()

    def loud() -> None:  # another session at DEBUG, live for the whole measurement
        with otel_session.session(session_id="loud", log_level="DEBUG"):
            loud_ready.set()
            stop.wait()

    with otel_session.session(session_id="sess-1234", user_id="user-42", user_name="Ada Lovelace"):
        for _ in range(args.rounds):
            for name, call in exporting.items():
                results[name].append(time_calls(call, args.calls))
            with otel_session.capture():
                results["otel_session, capture open"].append(time_calls(info(ours), args.calls))
            _stdlib.uninstall()
            results["stdlib, disabled debug"].append(time_calls(debug, few))
            _stdlib.install()
            results["disabled debug, no session live"].append(time_calls(debug, few))
            for provider in (p_plain, p_contrib, p_ours, p_ours2):
                provider.force_flush()
        thread = threading.Thread(target=loud)
        thread.start()
        loud_ready.wait(5)
        for _ in range(args.rounds):  # paired with a fresh stdlib baseline each round
            _stdlib.uninstall()
            base = time_calls(debug, few)
            _stdlib.install()
            results["debug elsewhere while a session is at DEBUG"].append(time_calls(debug, few))
            results["stdlib, disabled debug"].append(base)
        stop.set()
        thread.join()

        # Debug grants: the watcher runs beside (its own thread, not timed here), the emit path only
        # reads its mirror. Each round: no grants, grants configured and none live, one grant live
        # for another session; ratios against the first.
        other = GrantTable(by_session={"someone-else": (logging.DEBUG, "g-bench")})
        for _ in range(args.rounds):
            results["enrich + gate, no grants"].append(time_calls(info(ours), args.calls))
            redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
            STATE.plug(RedisLive(STATE, redis_url, "bench-grants:", "bench"))
            results["grants configured, none live"].append(time_calls(info(ours), args.calls))
            STATE.set_grants(other)
            results["one grant live, for another session"].append(time_calls(info(ours), args.calls))
            STATE.unplug()
            p_ours.force_flush()

    def report(name: str, base: str, suffix: str = "") -> None:
        pairs = list(zip(results[name], results[base], strict=False))
        if name == "debug elsewhere while a session is at DEBUG":
            pairs = list(zip(results[name], results[base][-len(results[name]):], strict=True))
        ratio = statistics.median(a / b for a, b in pairs)
        print(f"{name:44} {statistics.median(results[name]):9.0f} {ratio:6.2f}x{suffix}")

    print(f"{args.rounds} rounds x {args.calls} calls; medians")
    print(f"{'pipeline':44} {'ns/call':>9} {'ratio':>7}")
    for name in [*exporting, "otel_session, capture open"]:
        report(name, "plain OTel SDK")
    for name in names[-6:-3]:
        report(name, "stdlib, disabled debug", " (vs stdlib)")
    for name in names[-2:]:
        report(name, "enrich + gate, no grants", " (vs no grants)")


if __name__ == "__main__":
    main()
