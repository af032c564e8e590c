"""The debug buffer: what a buffered record costs against an exported one, and what it saves.

Not a test: it prints ns per call, ratios and export volumes. Same harness as `bench_logging.py`
(many short alternating rounds, each ratio the median of per-round ratios, timed in this thread's
CPU time). Like for like: one logger, one call (`log.debug("cache miss for %s in %s", ...)`), one
session with the same ids, inside one span; stdlib -> our bridge handler -> our processor ->
`BatchLogRecordProcessor` -> an exporter that serialises every batch to OTLP JSON as the file exporter
does and discards the bytes (`bench_logging.py`'s exporter discards without serialising; that never
shows in the calling thread's time, but here the whole-process figure counts the export too). The
two cases differ only in the session's level:

- exported: the session at `log_level="DEBUG"` (the buffer on; it buffers nothing there);
- buffered: the session at the default INFO, `buffer_level="DEBUG"`: the record is created and buffered.
  "not full": the buffer is cleared before each round and `buffer_max_bytes` is above what a round
  buffers; "full": at `buffer_max_bytes=8_000_000`, already full, so every record evicts the oldest
  (the steady state of a busy long-running process).

Then the export volume of 200 sessions, each its own trace, 10 of them failing, through the
OTLP-JSON file exporter, with and without buffering. Run it with `make bench` or
`python benchmarks/bench_buffer.py [--calls N] [--rounds R]`.
"""

from __future__ import annotations

import argparse
import gc
import logging
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from opentelemetry import context, trace
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.resources import Resource

import otel_session
from otel_session import OtlpJsonFileExporter, Record, SessionLogProcessor
from otel_session._buffer import BUFFERED_OVERHEAD
from otel_session._handler import BridgeHandler
from otel_session._otlp_json import decode_request, encode_json_line
from otel_session._state import STATE

BUFFERED = "otel_session.buffered"
FULL_BYTES = 8_000_000  # the size the full case runs at
ROOMY_BYTES = 1 << 30  # above anything one round buffers: the buffer never fills


class EncodingExporter(LogRecordExporter):
    """Serialises each batch to one OTLP-JSON line (the file exporter's encoder), then drops it."""

    def __init__(self) -> None:
        self.records = 0
        self.bytes = 0

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:  # type: ignore[override]
        self.bytes += len(encode_json_line(batch).encode("utf-8"))
        self.records += len(batch)
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def pipeline(name: str, exporter: LogRecordExporter) -> tuple[logging.Logger, LoggerProvider]:
    """Our pipeline on a logger that inherits its level (INFO from the root): a session or the buffer
    can ask for its DEBUG records. Building the processor points the buffer's flushes at it."""
    provider = LoggerProvider(resource=Resource.create({"service.name": "bench"}), shutdown_on_exit=False)
    provider.add_log_record_processor(SessionLogProcessor(
        BatchLogRecordProcessor(exporter, max_queue_size=65536, schedule_delay_millis=50)))
    log = logging.getLogger(f"bench.{name}")
    log.handlers[:] = [BridgeHandler(provider)]
    log.propagate = False
    log.setLevel(logging.NOTSET)
    return log, provider


def buffering(max_bytes: int) -> None:
    otel_session.configure(exporter="none", level="INFO", buffer_level="DEBUG", buffer_max_bytes=max_bytes,
                           buffer_ttl_s=120)


def time_calls(call: Callable[[], None], calls: int, provider: LoggerProvider) -> tuple[float, float]:
    """(this thread's CPU time, the whole process's CPU time) per call. The second includes the
    batch processor's worker serialising what was exported: the loop is followed by a force_flush."""
    gc.collect()  # every case starts from the same heap state
    thread, process = time.thread_time_ns(), time.process_time_ns()
    for _ in range(calls):
        call()
    thread = time.thread_time_ns() - thread
    provider.force_flush()
    process = time.process_time_ns() - process
    return thread / calls, process / calls


def per_record(args: argparse.Namespace) -> None:
    exporter = EncodingExporter()
    log, provider = pipeline("buffered", exporter)

    def debug() -> None:
        log.debug("cache miss for %s in %s", "user:42:profile", "redis")

    def in_session(level: str | None) -> otel_session.session:
        return otel_session.session(session_id="sess-1234", user_id="user-42", user_name="Ada Lovelace",
                                    log_level=level)

    with trace.get_tracer("bench").start_as_current_span("request"):  # one span: the same trace for both
        with in_session("DEBUG"):
            exported_ctx = context.get_current()
        with in_session(None):
            buffered_ctx = context.get_current()

    names = ["exported (session at DEBUG)", "buffered, buffer not full", "buffered, buffer full (evicts)"]
    thread: dict[str, list[float]] = {name: [] for name in names}
    process: dict[str, list[float]] = {name: [] for name in names}

    def case(name: str, ctx: context.Context, exports: int, buffers: int | None) -> None:
        before, stats = exporter.records, STATE.buffer.stats()
        with otel_session.attach(ctx):
            t, p = time_calls(debug, args.calls, provider)
        thread[name].append(t)
        process[name].append(p)
        after = STATE.buffer.stats()
        assert exporter.records - before == exports, (name, exporter.records - before)
        if buffers is not None:
            assert after.buffered - stats.buffered == buffers, (name, after.buffered - stats.buffered)
        assert after.flushes == stats.flushes

    for _ in range(args.rounds):
        buffering(ROOMY_BYTES)
        STATE.buffer.clear()
        case(names[0], exported_ctx, args.calls, 0)
        case(names[1], buffered_ctx, 0, args.calls)
        buffering(FULL_BYTES)
        with otel_session.attach(buffered_ctx):  # fill it up outside the timed loop
            for _ in range(FULL_BYTES // BUFFERED_OVERHEAD + 1):
                debug()
        evicted = STATE.buffer.stats().evicted
        case(names[2], buffered_ctx, 0, None)
        full = STATE.buffer.stats()
        assert full.evicted - evicted >= args.calls * 0.95 and full.buffered_bytes <= FULL_BYTES
        STATE.buffer.clear()

    print(f"{args.rounds} rounds x {args.calls} calls; medians; `log.debug()` in a session, in a span")
    print(f"{'case':44} {'ns/call':>9} {'ratio':>7}   {'process':>9} {'ratio':>7}")
    for name in names:
        ratio = statistics.median(a / b for a, b in zip(thread[name], thread[names[0]], strict=True))
        whole = statistics.median(a / b for a, b in zip(process[name], process[names[0]], strict=True))
        verdict = "" if name == names[0] else ("  meets <= 1.00x" if ratio <= 1.0 else "  MISSES <= 1.00x")
        print(f"{name:44} {statistics.median(thread[name]):9.0f} {ratio:6.2f}x   "
              f"{statistics.median(process[name]):9.0f} {whole:6.2f}x{verdict}")
    print("(ns/call: the calling thread's CPU time; process: all threads' CPU time, export included)")


# --- export volume ---------------------------------------------------------------------------------

SESSIONS, FAILING_EVERY, DEBUG_PER_SESSION, INFO_PER_SESSION = 200, 20, 20, 3


def one_session(log: logging.Logger, tracer: trace.Tracer, i: int, level: str | None) -> int:
    """A request: 3 INFO and 20 DEBUG records; every 20th fails with an ERROR at the end. Its trace id."""
    with otel_session.session(session_id=f"sess-{i:04d}", user_id=f"user-{i % 37}", log_level=level), \
            tracer.start_as_current_span("request") as span:
        log.info("request started: %s %s", "POST", "/api/chat/completions")
        for step in range(5):
            log.debug("cache miss for %s in %s", f"user:{i}:profile", "redis")
            log.debug("fetched %d rows from %s in %.1f ms", 40 + step, "messages", 3.2 + step)
        log.info("model %s answered with %d tokens", "gpt-4o-mini", 512)
        for step in range(5):
            log.debug("tool %s returned %d bytes", "web_search", 2048 + step)
            log.debug("retry budget left: %d of %d", 3 - step % 3, 3)
        log.info("request handled in %d ms", 230 + i)
        if i % FAILING_EVERY == FAILING_EVERY - 1:
            log.error("request failed: %s", "upstream returned 502")
        return span.get_span_context().trace_id


def volume(name: str, directory: Path, level: str | None) -> tuple[list[Record], int, set[str]]:
    """Run the sessions; what reached the file: (records, bytes, failing trace ids in hex)."""
    log, provider = pipeline(f"volume.{name}", OtlpJsonFileExporter(directory, "bench"))
    tracer = trace.get_tracer("bench")
    failing: set[str] = set()
    for i in range(SESSIONS):
        trace_id = one_session(log, tracer, i, level)
        if i % FAILING_EVERY == FAILING_EVERY - 1:
            failing.add(format(trace_id, "032x"))
    provider.force_flush()
    files = sorted(directory.glob("*.jsonl"))
    records = [r for path in files for line in path.read_text().splitlines() for r in decode_request(line)]
    return records, sum(path.stat().st_size for path in files), failing


def export_volume() -> None:
    per = DEBUG_PER_SESSION + INFO_PER_SESSION
    failures = SESSIONS // FAILING_EVERY
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        otel_session.configure(exporter="none", level="INFO", buffer_level="OFF")
        everything, all_bytes, _ = volume("debug", Path(tmp, "debug"), "DEBUG")
        assert len(everything) == SESSIONS * per + failures
        assert not any(BUFFERED in r.attributes for r in everything)

        plain, plain_bytes, _ = volume("info", Path(tmp, "info"), None)
        assert len(plain) == SESSIONS * INFO_PER_SESSION + failures

        STATE.buffer.reset()  # counts from zero
        buffering(FULL_BYTES)
        buffered, buffered_bytes, failing = volume("buffered", Path(tmp, "buffered"), None)
        stats = STATE.buffer.stats()
        STATE.buffer.clear()
        # Honest figures: the buffer exported the DEBUG records of exactly the failing traces, every
        # one of them, marked, and nothing else below INFO.
        debug = [r for r in buffered if r.severity_number < 9]
        assert Counter(r.trace_id for r in debug) == dict.fromkeys(failing, DEBUG_PER_SESSION)
        assert all(r.attributes.get(BUFFERED) is True for r in debug)
        assert not any(BUFFERED in r.attributes for r in buffered if r.severity_number >= 9)
        assert len(buffered) == SESSIONS * INFO_PER_SESSION + failures + failures * DEBUG_PER_SESSION
        assert stats.flushed == failures * DEBUG_PER_SESSION and stats.flushes == failures
        assert stats.buffered + stats.evicted == (SESSIONS - failures) * DEBUG_PER_SESSION
        rows = [("DEBUG everywhere, no buffering", len(everything), all_bytes),
                ("buffering at DEBUG, sessions at INFO", len(buffered), buffered_bytes),
                ("INFO, no buffering (no DEBUG at all)", len(plain), plain_bytes)]

    print(f"\n{SESSIONS} sessions, each its own trace: {INFO_PER_SESSION} INFO + {DEBUG_PER_SESSION} DEBUG records, "
          f"{failures} of them failing (+1 ERROR); OTLP-JSON file exporter")
    print(f"{'export':44} {'records':>9} {'ratio':>7} {'bytes':>11} {'ratio':>7}")
    for name, count, size in rows:
        print(f"{name:44} {count:9d} {count / rows[0][1]:6.2f}x {size:11d} {size / rows[0][2]:6.2f}x")
    print(f"(buffer after the run: {stats.buffered} buffered, {stats.buffered_bytes} bytes, {stats.flushed} flushed in "
          f"{stats.flushes} flushes, {stats.evicted} evicted, {stats.dropped} dropped)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=41)
    args = parser.parse_args()

    otel_session.configure(service_name="bench", exporter="none", level="INFO")
    per_record(args)
    export_volume()


if __name__ == "__main__":
    main()
