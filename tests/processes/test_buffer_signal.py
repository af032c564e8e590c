"""Tail-based debug across processes: a flush in one configured process reaches every other one
through Redis within 2 s; with Redis away local flushes still work and the lost signal is counted."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import uuid

import pytest
import redis
from opentelemetry import trace

import otel_session
from otel_session import OtlpJsonFileExporter, session
from otel_session.live.signals import STREAM, parse_key, wire_key
from tests.helpers.bot_platform import REDIS_URL
from tests.helpers.support import ROOT, TcpProxy, otlp_records, wait_for

pytestmark = pytest.mark.redis  # and the folder's (tests/conftest.py)
log = logging.getLogger("tests.buffer_signal")
tracer = trace.get_tracer("tests.buffer_signal")


@pytest.fixture
def prefix(monkeypatch):
    prefix = f"test-{uuid.uuid4().hex[:10]}:"
    monkeypatch.setenv("OTEL_SESSION_REDIS_PREFIX", prefix)
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=f"{prefix}*"):
        client.delete(key)
    client.close()
    otel_session.reset()


class Worker:
    def __init__(self, tmp, prefix: str, name: str, redis_url: str = REDIS_URL, *args: str, **env: str) -> None:
        carrier: dict[str, str] = {}
        otel_session.inject_env(carrier)
        self.dir = tmp / name
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.helpers.buffer_worker", *args], cwd=ROOT, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env={**{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}, **carrier,
                 "OTEL_SERVICE_NAME": name, "OTEL_SESSION_LOG_DIR": str(self.dir), "OTEL_BLRP_SCHEDULE_DELAY": "50",
                 "OTEL_SESSION_REDIS_URL": redis_url, "OTEL_SESSION_REDIS_PREFIX": prefix,
                 "OTEL_SESSION_BUFFER_LEVEL": "DEBUG", **env})
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"

    def say(self, line: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def records(self) -> list[dict]:
        return otlp_records(self.dir) if self.dir.exists() else []

    def close(self) -> None:
        if self.proc.poll() is None:
            self.say("exit")
            self.proc.wait(10)


def _configure(otel_logs, tmp_path, redis_url: str = REDIS_URL, **kwargs):
    return otel_logs.configure(exporter=OtlpJsonFileExporter(tmp_path / "here", "here"), redis_url=redis_url,
                               buffer_level="DEBUG", **kwargs)


def test_a_failure_here_flushes_the_trace_in_other_processes_within_2_s(otel_logs, tmp_path, prefix):
    telemetry = _configure(otel_logs, tmp_path)
    with session(session_id="s-x"), tracer.start_as_current_span("crosses"):
        failing = format(trace.get_current_span().get_span_context().trace_id, "032x")
        workers = [Worker(tmp_path, prefix, name) for name in ("gateway-ish", "operator-ish")]
    with tracer.start_as_current_span("fine"):
        bystander = Worker(tmp_path, prefix, "bystander")
    try:
        time.sleep(0.6)  # every worker's watcher has read the stream once
        with session(session_id="s-x"), trace.use_span(trace.NonRecordingSpan(trace.SpanContext(
                int(failing, 16), 1, False))):
            log.error("failed here")
        failed_at = time.time()
        for worker in workers:
            flushed = wait_for(lambda w=worker: w.records(), 5, interval=0.05, what=f"{worker.dir.name}'s flush")
            assert time.time() - failed_at < 2.0
            assert [(r["message"], r["trace_id"], r["attrs"]["otel_session.buffered"]) for r in flushed] == [
                (f"held in {worker.dir.name}", failing, True)]
            assert flushed[0]["attrs"]["session.id"] == "s-x"
        time.sleep(1.0)
        assert not bystander.records()  # another trace: nothing
        assert telemetry.stats().signals_sent == 1
        assert "signals_received=1" in workers[0].say("stats") and "flushed=1" in workers[0].say("stats")
    finally:
        for worker in [*workers, bystander]:
            worker.close()


def test_a_failure_in_another_process_flushes_what_this_one_holds(otel_logs, tmp_path, prefix):
    telemetry = _configure(otel_logs, tmp_path)
    with session(session_id="s-y"), tracer.start_as_current_span("from the worker"):
        log.debug("held here")
        worker = Worker(tmp_path, prefix, "worker")
    try:
        assert worker.say("error") == "logged"
        wait_for(lambda: telemetry.stats().flushed == 1, 2.5, interval=0.05, what="this process's flush")
        telemetry.force_flush()
        records = otlp_records(tmp_path / "here")
        assert [(r["message"], r["attrs"]["otel_session.buffered"]) for r in records] == [("held here", True)]
        assert telemetry.stats().signals_received == 1
    finally:
        worker.close()
    worker_records = [r["message"] for r in worker.records()]
    assert worker_records == ["held in worker", "failed in the worker"]


def test_200_concurrent_sessions_across_two_processes_flush_exactly_the_10_that_fail(otel_logs, tmp_path, prefix):
    telemetry = _configure(otel_logs, tmp_path)
    worker = Worker(tmp_path, prefix, "worker", REDIS_URL, "many")
    try:
        entries, failing = [], set()
        for n in range(200):
            with session(session_id=f"s-{n}"), tracer.start_as_current_span(f"session {n}") as span:
                log.debug("here %d", n)  # this process's part of the session: held
                context = span.get_span_context()
                entries.append([f"00-{context.trace_id:032x}-{context.span_id:016x}-01", f"s-{n}", n % 20 == 7])
                if n % 20 == 7:
                    failing.add(f"{context.trace_id:032x}")
        assert worker.say(json.dumps(entries)) == "done"  # 200 asyncio tasks at once over there, 10 failing
        wait_for(lambda: telemetry.stats().signals_received == 10, 4, interval=0.05, what="the 10 remote flushes")
        telemetry.force_flush()
        here = otlp_records(tmp_path / "here")
        assert {r["trace_id"] for r in here} == failing and len(here) == 10
        assert telemetry.stats().buffered == 190
    finally:
        worker.close()
    there = [r for r in worker.records() if r["level"] == "DEBUG"]
    assert {r["trace_id"] for r in there} == failing and len(there) == 30
    for trace_id in failing:
        steps = [r["message"] for r in there if r["trace_id"] == trace_id]
        assert [m.rsplit(" ", 1)[1] for m in steps] == ["0", "1", "2"]


def test_with_redis_away_local_flushes_work_and_the_lost_signal_is_counted(otel_logs, tmp_path, prefix):
    with TcpProxy(6379) as proxy:
        telemetry = _configure(otel_logs, tmp_path, redis_url=proxy.url(), buffer_ttl_s=1.0)
        proxy.cut()
        time.sleep(0.6)
        with tracer.start_as_current_span("alone"):
            log.debug("held")
            started = time.monotonic()
            log.error("fails with Redis away")
            assert time.monotonic() - started < 0.5  # the logging call never waits on Redis
        telemetry.force_flush()
        assert [r["message"] for r in otlp_records(tmp_path / "here")
                if r["trace_id"]] == ["held", "fails with Redis away"]
        wait_for(lambda: telemetry.stats().signals_lost == 1, 4, interval=0.1, what="the lost signal counted")
        assert telemetry.stats().signals_sent == 0


def test_a_signal_sent_while_redis_blinks_is_delivered_when_it_is_back(otel_logs, tmp_path, prefix):
    with TcpProxy(6379) as proxy:
        telemetry = _configure(otel_logs, tmp_path, redis_url=proxy.url())
        proxy.cut()
        with tracer.start_as_current_span("blink"):
            log.error("fails while Redis blinks")
        time.sleep(0.6)
        proxy.restore()
        wait_for(lambda: telemetry.stats().signals_sent == 1, 4, interval=0.1, what="the signal once Redis is back")
    assert telemetry.stats().signals_lost == 0


def test_garbage_in_the_stream_is_skipped(otel_logs, tmp_path, prefix):
    telemetry = _configure(otel_logs, tmp_path)
    client = redis.Redis.from_url(REDIS_URL)
    with tracer.start_as_current_span("real"):
        tid = trace.get_current_span().get_span_context().trace_id
        log.debug("held")
    for junk in ({"key": "trace:zz"}, {"key": "x"}, {"other": "1"}, {"key": "trace:" + "0" * 32}):
        client.xadd(prefix + STREAM, junk)
    client.xadd(prefix + STREAM, {"key": wire_key(tid), "origin": "elsewhere"})
    wait_for(lambda: telemetry.stats().flushed == 1, 2.5, interval=0.05, what="the good entry applied")
    assert telemetry.stats().signals_received == 1
    client.close()


@pytest.mark.parametrize(("text", "key"), [
    ("trace:" + "0" * 31 + "1", 1), ("session:s-1", "session:s-1"), ("trace:1", None), ("session:", None),
    ("trace:" + "g" * 32, None), (b"trace:", None), ("other", None)])
def test_parse_key(text, key):
    assert parse_key(text) == key


def test_a_flush_that_raises_in_the_watcher_does_not_stop_it(otel_logs, tmp_path, prefix, monkeypatch):
    from otel_session._state import STATE

    telemetry = _configure(otel_logs, tmp_path)
    client = redis.Redis.from_url(REDIS_URL)
    real_flush, calls = STATE.buffer.flush, []

    def broken(key, **kwargs):
        calls.append(key)
        if len(calls) == 1:
            raise RuntimeError("an exporter that raises")
        return real_flush(key, **kwargs)

    monkeypatch.setattr(STATE.buffer, "flush", broken)
    with tracer.start_as_current_span("second"):
        second = trace.get_current_span().get_span_context().trace_id
        log.debug("held")
    client.xadd(prefix + STREAM, {"key": wire_key(12345), "origin": "elsewhere"})
    wait_for(lambda: calls, 10, interval=0.05, what="the first remote flush")
    client.xadd(prefix + STREAM, {"key": wire_key(second), "origin": "elsewhere"})
    wait_for(lambda: telemetry.stats().flushed == 1, 10, interval=0.05, what="the watcher to go on")
    assert STATE.live is not None and STATE.live.watcher.errors == 1
    client.close()
