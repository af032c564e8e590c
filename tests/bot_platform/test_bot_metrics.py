"""The bot platform's instruments (`bot.metrics`), in process, read through the SDK's `InMemoryMetricReader` on a
`MeterProvider` of the test's own; the gateway's join outcomes through its real app on the real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from bot.gateway import create_app
from bot.keys import Keys
from bot.launches import Launches
from bot.metrics import (
    GatewayMetrics,
    OperatorMetrics,
    RunnerMetrics,
    Sample,
    sample_every_s,
    sample_forever,
    stop_sampler,
)
from bot.settings import Settings
from tests.helpers.bot_platform import REDIS_URL, clear_keys
from tests.helpers.support import free_port, served_in_thread, wait_for

ORIGIN = "https://app.example.test"
RELAY_KEY = "metrics-test-key-0123456789abcdef"


def _reader() -> tuple[InMemoryMetricReader, MeterProvider]:
    reader = InMemoryMetricReader()
    return reader, MeterProvider(metric_readers=[reader])


def _metrics(reader: InMemoryMetricReader) -> dict[str, Any]:
    """name -> the metric (its unit and data) of one collection."""
    data = reader.get_metrics_data()
    if data is None:
        return {}
    return {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}


def _values(metric: Any) -> dict[tuple[tuple[str, Any], ...], Any]:
    """Attributes (sorted items) -> value (sums, gauges) or (count, sum) (histograms)."""
    out = {}
    for point in metric.data.data_points:
        key = tuple(sorted((point.attributes or {}).items()))
        out[key] = (point.count, point.sum) if hasattr(point, "bucket_counts") else point.value
    return out


# -- the instruments ------------------------------------------------------------------------------


def test_the_runner_counts_live_sessions_their_length_and_failures():
    reader, provider = _reader()
    runner = RunnerMetrics(provider.get_meter("test"))
    runner.started("warm")
    runner.started("warm")
    runner.started("cold")
    runner.ended("warm", "ended", 2.0)
    runner.ended("cold", "failed", 0.5, "lock_lost")
    got = _metrics(reader)
    assert _values(got["bot.session.active"]) == {(("mode", "warm"),): 1, (("mode", "cold"),): 0}
    assert got["bot.session.active"].unit == "{session}"
    assert _values(got["bot.session.duration"]) == {(("mode", "warm"), ("status", "ended")): (1, 2.0),
                                                     (("mode", "cold"), ("status", "failed")): (1, 0.5)}
    assert got["bot.session.duration"].unit == "s"
    assert _values(got["bot.session.failures"]) == {(("mode", "cold"), ("reason", "lock_lost")): 1}


def test_the_operator_counts_dispatches_and_times_joins_and_dispatches():
    reader, provider = _reader()
    operator = OperatorMetrics(provider.get_meter("test"))
    operator.dispatched("warm", 0.2)
    operator.dispatched("warm", 0.4)
    operator.dispatched("dead_lettered", 0.01)
    operator.running("warm", 1.5)
    operator.running("cold", -3.0)  # the operator's clock behind the gateway's: no figure at all
    got = _metrics(reader)
    assert _values(got["bot.dispatches"]) == {(("outcome", "warm"),): 2, (("outcome", "dead_lettered"),): 1}
    count, total = _values(got["bot.dispatch.duration"])[(("outcome", "warm"),)]
    assert count == 2 and total == pytest.approx(0.6)
    assert _values(got["bot.join.duration"]) == {(("mode", "warm"),): (1, 1.5)}
    # seconds, with buckets for seconds (the SDK's default ones are for milliseconds)
    (point,) = got["bot.join.duration"].data.data_points
    assert got["bot.join.duration"].unit == "s" and point.explicit_bounds[:3] == (0.01, 0.025, 0.05)


def test_the_gateway_counts_joins_and_the_relays_records_and_refusals():
    reader, provider = _reader()
    gateway = GatewayMetrics(provider.get_meter("test"))
    for outcome in ("queued", "queued", "taken", "cors_refused"):
        gateway.join(outcome)
    gateway.relay_accepted(3)
    gateway.relay_accepted(0)
    gateway.relay_refused("expired")
    got = _metrics(reader)
    assert _values(got["bot.joins"]) == {(("outcome", "queued"),): 2, (("outcome", "taken"),): 1,
                                         (("outcome", "cors_refused"),): 1}
    assert got["bot.joins"].unit == "{join}"
    assert _values(got["bot.relay.records"]) == {(): 3}
    assert _values(got["bot.relay.refusals"]) == {(("reason", "expired"),): 1}


def test_a_gauge_reports_the_last_sample_and_nothing_once_cleared():
    reader, provider = _reader()
    gateway = GatewayMetrics(provider.get_meter("test"))
    assert "bot.queue.depth" not in _metrics(reader)  # nothing sampled yet: no point at all
    gateway.queue.set(depth=4, claims=3, processing=1)
    gateway.queue.set(depth=2)
    got = _metrics(reader)
    assert (_values(got["bot.queue.depth"]), _values(got["bot.queue.claims"]),
            _values(got["bot.queue.processing"])) == ({(): 2}, {(): 3}, {(): 1})
    gateway.queue.clear()  # Redis did not answer: no stale figure
    assert "bot.queue.depth" not in _metrics(reader)


class _Broken(dict):  # type: ignore[type-arg]
    def get(self, *args: Any) -> Any:
        raise RuntimeError("broken sample")


def test_a_failing_callback_is_warned_about_once_and_never_reaches_the_export(caplog):
    reader, provider = _reader()
    gateway = GatewayMetrics(provider.get_meter("test"))
    gateway.queue.values = _Broken()
    with caplog.at_level(logging.WARNING, logger="bot.metrics"):
        for _ in range(3):
            got = _metrics(reader)
    assert "bot.queue.depth" not in got
    warned = [r.getMessage() for r in caplog.records if r.name == "bot.metrics"]
    assert len([w for w in warned if "bot.queue.depth" in w]) == 1 and "RuntimeError" in warned[0]


def test_a_process_has_one_instance_of_each_on_the_global_provider():
    # the SDK keeps the first instrument of a name: a second instance's gauge callbacks would never run
    assert GatewayMetrics.shared() is GatewayMetrics.shared()
    assert OperatorMetrics.shared() is OperatorMetrics.shared() and RunnerMetrics.shared() is RunnerMetrics.shared()
    assert len({id(GatewayMetrics.shared()), id(OperatorMetrics.shared()), id(RunnerMetrics.shared())}) == 3


@pytest.mark.parametrize(("interval_ms", "every_s"), [("", 5.0), ("60000", 5.0), ("1000", 0.5), ("50", 0.1),
                                                      ("junk", 5.0)])
def test_gauges_are_sampled_twice_per_export_within_bounds(interval_ms, every_s):
    assert sample_every_s({"OTEL_METRIC_EXPORT_INTERVAL": interval_ms}) == every_s


async def _until(check: Any) -> None:
    while not check():
        await asyncio.sleep(0.01)


@pytest.mark.redis
def test_the_sampler_reads_the_queue_and_clears_with_one_warning_while_redis_is_away(caplog):
    keys = Keys(f"test-{uuid.uuid4().hex[:10]}:")

    async def main() -> None:
        import redis.asyncio as aioredis

        up = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
        down = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2)
        try:
            await up.rpush(keys.launch_queue, "a", "b", "c")
            await up.hset(keys.claims, mapping={"l1": "{}", "l2": "{}"})
            await up.rpush(keys.processing, "d")
            sample = Sample()
            task = asyncio.create_task(sample_forever(Launches(up, keys, Settings()).queue_sizes, sample, 0.05, "q",
                                                      asyncio.Event()))
            await asyncio.wait_for(_until(lambda: sample.values), 10)
            task.cancel()
            assert sample.values == {"depth": 3, "claims": 2, "processing": 1}
            task = asyncio.create_task(sample_forever(Launches(down, keys, Settings()).queue_sizes, sample, 0.05,
                                                      "the queue", asyncio.Event()))
            await asyncio.wait_for(_until(lambda: not sample.values), 10)
            await asyncio.sleep(0.3)  # more failures: still one warning
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        finally:
            for key in (keys.launch_queue, keys.claims, keys.processing):
                await up.delete(key)
            await up.aclose()
            await down.aclose()

    with caplog.at_level(logging.WARNING, logger="bot.metrics"):
        asyncio.run(main())
    assert [r.getMessage() for r in caplog.records if "Could not sample" in r.getMessage()] == [
        "Could not sample the queue for the metrics (ConnectionError); its gauges report nothing until it answers"]


def test_a_sampler_that_lost_its_cancel_still_stops():
    """redis-py's asyncio client (and `asyncio.wait_for`'s race in 3.11) now and then swallow a cancel; the
    sampler then goes on, and a shutdown that only cancelled and awaited it would wait forever."""

    async def main() -> None:
        sample, stop, reads = Sample(), asyncio.Event(), []

        async def read() -> dict[str, int]:
            reads.append(1)
            return {"depth": len(reads)}

        async def cancel_lost() -> None:
            try:
                await sample_forever(read, sample, 0.01, "q", stop)
            except asyncio.CancelledError:  # as if the cancel had been swallowed: the loop goes on
                await sample_forever(read, sample, 0.01, "q", stop)

        task = asyncio.create_task(cancel_lost())
        await asyncio.wait_for(_until(lambda: len(reads) > 2), 10)
        await asyncio.wait_for(stop_sampler(task, stop), 10)
        assert task.done() and not task.cancelled()  # it ended by itself, on `stop`
        done = len(reads)
        await asyncio.sleep(0.05)
        assert len(reads) == done  # and samples no more

    asyncio.run(main())


# -- the gateway's join outcomes, through its real app ---------------------------------------------


@contextlib.contextmanager
def gateway(metrics: GatewayMetrics, **knobs: Any) -> Iterator[tuple[Any, asyncio.AbstractEventLoop, str]]:
    """The real gateway app served by uvicorn in a thread, on the real Redis, with the test's metrics."""
    keys = Keys(f"test-{uuid.uuid4().hex[:10]}:")
    app = create_app(settings=Settings(**knobs), keys=keys, telemetry=False, metrics=metrics)
    try:
        with served_in_thread(app) as served:
            yield served
    finally:
        clear_keys(keys)


def _room() -> str:
    return f"https://rooms.example.test/{uuid.uuid4().hex[:12]}"


@pytest.mark.redis
def test_every_answer_to_a_join_is_counted_once_by_its_outcome(monkeypatch):
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "100")  # the queue sampled every 0.1 s
    reader, provider = _reader()
    metrics = GatewayMetrics(provider.get_meter("test"))
    with gateway(metrics, max_queue=2, max_body_bytes=2048, cors_origins=(ORIGIN,), telemetry_key=RELAY_KEY,
                 redis_pool_size=1, redis_pool_timeout_s=0.2) as (app, loop, url):
        room = _room()
        answers = [httpx.post(f"{url}/join", json={"room_url": room}, timeout=10),  # queued
                   httpx.post(f"{url}/join", json={"room_url": room}, timeout=10),  # taken
                   httpx.post(f"{url}/join", json={"room_url": _room()}, timeout=10),  # queued: the queue is full
                   httpx.post(f"{url}/join", json={"room_url": _room()}, timeout=10),  # full
                   httpx.post(f"{url}/join", json={"room_url": "ftp://x"}, timeout=10),  # invalid
                   httpx.post(f"{url}/join", json={"room_url": _room(), "userName": "x" * 4000}, timeout=10),  # 413
                   ]
        assert [a.status_code for a in answers] == [202, 409, 202, 429, 422, 413]
        preflight = {"access-control-request-method": "POST", "access-control-request-headers": "content-type"}
        assert httpx.options(f"{url}/join", headers={"origin": "https://evil.example.test", **preflight},
                             timeout=10).status_code == 400  # cors_refused
        assert httpx.options(f"{url}/join", headers={"origin": ORIGIN, **preflight}, timeout=10).status_code == 200
        assert httpx.get(f"{url}/launches/{uuid.uuid4().hex}", timeout=10).status_code == 404  # not a join
        pool = app.state.redis.connection_pool
        held = asyncio.run_coroutine_threadsafe(pool.get_connection(), loop).result(5)  # the only connection
        try:
            assert httpx.post(f"{url}/join", json={"room_url": _room()}, timeout=10).status_code == 429  # overloaded
        finally:
            asyncio.run_coroutine_threadsafe(pool.release(held), loop).result(5)
        token = answers[0].json()["telemetryToken"]
        relay = f"{url}/v1/logs"
        assert httpx.post(relay, json={}, timeout=10).status_code == 401  # missing
        bad = httpx.post(relay, content=b"{", headers={"authorization": f"Bearer {token}",
                                                       "content-type": "application/json"}, timeout=10)
        assert bad.status_code == 400  # not_otlp

        def sampled() -> dict[str, Any] | None:
            got = _metrics(reader)
            return got if "bot.queue.depth" in got and _values(got["bot.queue.depth"]) == {(): 2} else None

        got = wait_for(sampled, what="a queue sample after the joins")
        assert _values(got["bot.queue.claims"]) == {(): 2} and _values(got["bot.queue.processing"]) == {(): 0}
    joins = {dict(k)["outcome"]: v for k, v in _values(got["bot.joins"]).items()}
    assert joins == {"queued": 2, "taken": 1, "full": 1, "invalid": 1, "too_large": 1, "cors_refused": 1,
                     "overloaded": 1}
    assert _values(got["bot.relay.refusals"]) == {(("reason", "missing"),): 1, (("reason", "not_otlp"),): 1}
