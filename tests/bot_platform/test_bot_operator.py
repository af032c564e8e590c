"""The operator, in process, against the real Redis, tiny real HTTP runners on loopback and real cold processes.

The test runners do what the real runner's `/start` does about fencing (`Launches.take`), and record
every outcome, so a test can count bots: exactly one `ok` per launch.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from bot import dead_letters
from bot.keys import Keys
from bot.launcher import ProcessLauncher
from bot.launches import Launches
from bot.metrics import OperatorMetrics
from bot.models import Job, StartRequest
from bot.operator import Operator, cold_env, main
from bot.settings import Settings
from otel_session import inject_payload, session
from tests.helpers.bot_platform import REDIS_URL, run_with_redis
from tests.helpers.support import ROOT, free_port, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.processes]  # and the folder's (tests/conftest.py)
ROOM = "https://rooms.example.test/op"
KNOBS = {"lock_ttl_s": 2.0, "keepalive_s": 0.2, "pending_ttl_s": 1.0, "heartbeat_s": 0.1, "start_timeout_s": 0.4,
         "cold_start_timeout_s": 5.0, "drain_s": 2.0, "max_body_bytes": 4096}


# -- harness --------------------------------------------------------------------------------------


@pytest.fixture
def logs(otel_logs):
    """The records of the operator's services, with the baggage the bot services keep (`bot.*` too)."""
    otel_logs.configure(baggage_keys=("session.*", "user.*", "bot.*"))
    return otel_logs




def _launches(r: Any, keys: Keys, **knobs: Any) -> Launches:
    return Launches(r, keys, Settings(**{**KNOBS, **knobs}))


async def until(predicate: Callable[[], Awaitable[Any]], timeout: float = 10.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        if value := await predicate():
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


def job_json(launch_id: str, room: str = ROOM, session_id: str | None = None, **extra: Any) -> str:
    """A job as the gateway queues it: inside the join's trace and session."""
    session_id = session_id or f"s-{launch_id}"
    with trace.get_tracer("tests").start_as_current_span("join"), \
            session(session_id=session_id, extra={"bot.launch_id": launch_id}):
        return json.dumps(inject_payload({"room_url": room, "sessionId": session_id, "launchId": launch_id,
                                          **extra}))


async def enqueue(launches: Launches, raw: str) -> Job:
    job = Job.model_validate_json(raw)
    assert await launches.enqueue(job.pending_lock(), raw) == "queued"
    return job


class TestRunner:
    """A warm runner's `/start`, reduced to its fencing: `take` the attempt, 200 only on `ok`.

    `delay` stalls every start before its take (a frozen or slow runner); `status` answers that
    instead (a broken one).
    """

    __test__ = False

    def __init__(self, launches: Launches, delay: float = 0.0, status: int | None = None) -> None:
        self.launches, self.delay, self.status = launches, delay, status
        self.takes: list[tuple[str, int, str]] = []
        self.headers: list[Mapping[str, str]] = []
        self.url = ""
        self._site: web.AppRunner | None = None

    async def __aenter__(self) -> TestRunner:
        app = web.Application()
        app.router.add_post("/start", self._start)
        self._site = web.AppRunner(app)
        await self._site.setup()
        port = free_port()
        await web.TCPSite(self._site, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._site is not None
        await self._site.cleanup()

    async def _start(self, request: web.Request) -> web.Response:
        self.headers.append(dict(request.headers))
        if self.status is not None:
            return web.json_response({"detail": "broken"}, status=self.status)
        body = await request.json()
        return await asyncio.shield(self._take(body))  # a client that gave up does not stop the take

    async def _take(self, body: dict[str, Any]) -> web.Response:
        await asyncio.sleep(self.delay)
        start = StartRequest.model_validate(body)
        outcome = await self.launches.take(start.launchId, start.attempt, start.room, self.url, "warm", "{}")
        self.takes.append((start.launchId, start.attempt, outcome))
        if outcome != "ok":
            return web.json_response({"detail": outcome}, status=409)
        return web.json_response({"sessionId": start.sessionId, "launchId": start.launchId,
                                  "attempt": start.attempt, "pid": os.getpid()})

    def started(self) -> list[tuple[str, int]]:
        return [(lid, attempt) for lid, attempt, outcome in self.takes if outcome == "ok"]


# A cold bot reduced to its fencing: take its attempt from the env, keep it until told to stop, release.
COLD_BOT = r"""
import asyncio, json, os, sys
from pathlib import Path
import redis.asyncio as aioredis
from bot import rooms
from bot.keys import Keys
from bot.launches import Launches
from bot.settings import Settings

async def main():
    prefix, url, out, delay, knobs = sys.argv[1], sys.argv[2], Path(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
    r = aioredis.Redis.from_url(url, decode_responses=True)
    launches = Launches(r, Keys(prefix), Settings(**json.loads(knobs)))
    lid, attempt = os.environ["BOT_LAUNCH_ID"], int(os.environ["BOT_ATTEMPT"])
    room = rooms.room_hash(os.environ["BOT_ROOM_URL"])
    await asyncio.sleep(delay)
    outcome = await launches.take(lid, attempt, room, f"cold:{os.getpid()}", "cold", "{}")
    (out / f"{lid}.{attempt}.{os.getpid()}.json").write_text(json.dumps({"outcome": outcome, "env": dict(os.environ)}))
    if outcome != "ok":
        return
    while not (out / f"stop-{lid}").exists():
        await launches.keepalive(lid, attempt, room, "{}", True)
        await asyncio.sleep(0.1)
    await launches.release(lid, attempt, room, "ended", "left")

asyncio.run(main())
"""


def cold_launcher(keys: Keys, out: Path, delay: float = 0.0, **knobs: Any) -> ProcessLauncher:
    args = [keys.prefix, REDIS_URL, str(out), str(delay), json.dumps({**KNOBS, **knobs})]
    return ProcessLauncher(command=[sys.executable, "-c", COLD_BOT, *args], cwd=str(ROOT))


def cold_takes(out: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]


@asynccontextmanager
async def operating(launches: Launches, launcher: Any = None, operator_id: str | None = None,
                    metrics: OperatorMetrics | None = None) -> AsyncIterator[tuple[Operator, asyncio.Task[None]]]:
    """An operator running in this event loop; stopped (as by SIGTERM) on the way out."""
    stop = asyncio.Event()
    async with httpx.AsyncClient() as http:
        operator = Operator(launches, launcher or ProcessLauncher(command=["false"]), http, operator_id, metrics)
        task = asyncio.create_task(operator.run(stop))
        try:
            yield operator, task
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)


def metered() -> tuple[OperatorMetrics, Callable[[str], dict[str, Any]]]:
    """Operator metrics on a provider of the test's own, and a reader of one metric: attribute value -> value
    (a histogram's count)."""
    reader = InMemoryMetricReader()
    metrics = OperatorMetrics(MeterProvider(metric_readers=[reader]).get_meter("test"))

    def read(name: str) -> dict[str, Any]:
        data = reader.get_metrics_data()
        found = [m for rm in (data.resource_metrics if data else []) for sm in rm.scope_metrics for m in sm.metrics
                 if m.name == name]
        return {next(iter(p.attributes.values())): p.count if hasattr(p, "bucket_counts") else p.value
                for m in found for p in m.data.data_points}

    return metrics, read


async def dead(r: Any, keys: Keys) -> list[dict[str, Any]]:
    return [json.loads(e) for e in await r.lrange(keys.dead_letter, 0, -1)]


async def status(launches: Launches, launch_id: str) -> str | None:
    rec = await launches.record(launch_id)
    return None if rec is None else rec["status"]


# -- poison ---------------------------------------------------------------------------------------


def test_poison_and_garbage_are_dead_lettered_and_the_operator_goes_on(tmp_path):
    async def test(r, keys):
        launches = _launches(r, keys, max_body_bytes=65_536)
        big = json.dumps({"token": "tok-big-secret", "pad": "x" * 140_000})  # over 2 * max_body_bytes
        garbage = ["[" * 100000, "not json", "[1, 2]", big, '{"room_url": "https://x.test/r"}',
                   json.dumps({"room_url": "ftp://x", "sessionId": "s", "launchId": "l", "otel": {}}),
                   json.dumps({"room_url": ROOM, "sessionId": "bad id!", "launchId": "l", "otel": {},
                               "token": "tok-secret-1"})]
        await r.rpush(keys.launch_queue, *garbage)
        await r.rpush(keys.launch_queue, b"\xff\xfe not UTF-8")
        raw = job_json("L-after")
        await enqueue(launches, raw)
        async with TestRunner(launches) as runner, operating(launches) as (_, task):
            await r.rpush(keys.standby_pool, runner.url)
            await until(lambda: status(launches, "L-after"), what="a record")
            await until(lambda: _eq(status(launches, "L-after"), "running"), what="the good job running")
            letters = await until(lambda: _len_at_least(dead(r, keys), len(garbage) + 1), what="dead letters")
            assert not task.done()
        assert runner.started() == [("L-after", 1)]
        assert await r.llen(keys.processing) == 0 and await r.llen(keys.launch_queue) == 0
        reasons = [e["reason"] for e in letters]
        assert any("RecursionError" in reason for reason in reasons)
        assert any("not UTF-8" in reason for reason in reasons)
        assert any("characters long" in reason for reason in reasons)
        assert any("room_url" in reason for reason in reasons) and any("sessionId" in reason for reason in reasons)
        text = json.dumps(letters)
        assert "tok-secret-1" not in text and "tok-big-secret" not in text
        assert all(len(e["job"]) <= dead_letters.JOB_CAP for e in letters)
        (cut,) = [e for e in letters if "characters long" in e["reason"]]
        assert cut["truncated"] and cut["job"].startswith('{"token": "[REDACTED]"')
        assert {e["job"] for e in letters} >= {"not json", "[1, 2]", '{"room_url": "https://x.test/r"}'}

    run_with_redis(test)


async def _eq(value: Awaitable[Any], want: Any) -> bool:
    return (await value) == want


async def _len_at_least(values: Awaitable[list[Any]], n: int) -> list[Any] | None:
    got = await values
    return got if len(got) >= n else None


def test_redaction_covers_json_text_and_a_token_cut_short():
    assert dead_letters.redact('{"a": 1}') == ('{"a": 1}', False)  # no token: kept byte for byte
    text, _ = dead_letters.redact('{"token": "t-1", "x": {"room_token": 7}}')
    assert json.loads(text) == {"token": "[REDACTED]", "x": {"room_token": "[REDACTED]"}}
    text, _ = dead_letters.redact('{not json, "token": "t-2\\"x", "token" : "t-3')
    assert "t-2" not in text and "t-3" not in text and text.count("[REDACTED]") == 2
    text, cut = dead_letters.redact('{"pad": "' + "y" * 50 + '", "token": "t-4' + "z" * 100, cap=70)
    assert cut and "t-4" not in text and len(text) <= 70 + len("[REDACTED]")


# -- exactly once ---------------------------------------------------------------------------------


def test_a_job_whose_room_a_newer_launch_took_is_failed_and_dead_lettered(logs):
    async def test(r, keys):
        launches = _launches(r, keys)
        old = job_json("L-old", token="tok-old-secret")
        await enqueue(launches, old)
        await r.delete(keys.room_active(Job.model_validate_json(old).room))  # its claim lapsed...
        await r.hdel(keys.claims, "L-old")
        await enqueue(launches, job_json("L-new"))  # ...and a newer launch took the room
        async with TestRunner(launches) as runner, operating(launches):
            await r.rpush(keys.standby_pool, runner.url)
            await until(lambda: _eq(status(launches, "L-new"), "running"), what="the newer launch running")
            await until(lambda: _eq(status(launches, "L-old"), "failed"), what="the old launch failed")
        assert runner.started() == [("L-new", 1)]
        assert (await launches.record("L-old"))["reason"] == "room taken by a newer launch"
        (letter,) = await dead(r, keys)
        assert letter["launchId"] == "L-old" and letter["sessionId"] == "s-L-old"
        assert letter["reason"] == "room taken by a newer launch"
        assert json.loads(letter["job"])["token"] == "[REDACTED]" and "tok-old-secret" not in json.dumps(letter)
        assert (await launches.lock(Job.model_validate_json(old).room))["launch_id"] == "L-new"

    run_with_redis(test)
    (rejected,) = [r for r in logs.records if r.message.startswith("Job rejected")]
    assert rejected.session_id == "s-L-old" and rejected.attributes["bot.launch_id"] == "L-old"


def test_a_start_that_times_out_is_fenced_and_never_becomes_a_second_bot(logs):
    async def test(r, keys):
        launches = _launches(r, keys)
        raw = job_json("L-slow")
        trace_id = json.loads(raw)["otel"]["traceparent"].split("-")[1]
        await enqueue(launches, raw)
        async with TestRunner(launches, delay=1.0) as frozen, TestRunner(launches) as healthy, \
                operating(launches):
            await r.rpush(keys.standby_pool, healthy.url, frozen.url)  # the frozen one is asked first
            await until(lambda: _eq(status(launches, "L-slow"), "running"), what="running")
            await until(lambda: _truthy(frozen.takes), what="the late start")
        assert frozen.takes == [("L-slow", 1, "fenced")]  # the late start of attempt 1 was refused
        assert healthy.started() == [("L-slow", 2)]
        rec = await launches.record("L-slow")
        assert rec["runner"] == healthy.url and rec["attempt"] == 2
        for headers in frozen.headers + healthy.headers:
            assert headers["traceparent"].split("-")[1] == trace_id

    run_with_redis(test)
    records = [r for r in logs.records if r.attributes.get("bot.launch_id") == "L-slow"]
    assert any("did not answer /start" in r.message for r in records)
    assert all(r.session_id == "s-L-slow" for r in records)


async def _truthy(value: Any) -> Any:
    return value


def test_a_timed_out_start_with_no_other_runner_goes_cold_and_only_one_bot_runs(tmp_path, logs):
    async def test(r, keys):
        launches = _launches(r, keys)
        await enqueue(launches, job_json("L-fallback", userId="u-7", personalityId="p-1"))
        async with TestRunner(launches, delay=1.0) as frozen, \
                operating(launches, cold_launcher(keys, tmp_path)) as (operator, _):
            await r.rpush(keys.standby_pool, frozen.url)
            await until(lambda: _eq(status(launches, "L-fallback"), "running"), what="running")
            await until(lambda: _truthy(frozen.takes), what="the late start")
            assert frozen.takes == [("L-fallback", 1, "fenced")]
            (cold,) = cold_takes(tmp_path)
            assert cold["outcome"] == "ok" and cold["env"]["BOT_ATTEMPT"] == "2"
            assert cold["env"]["BOT_USER_ID"] == "u-7" and cold["env"]["BOT_PERSONALITY_ID"] == "p-1"
            assert cold["env"]["TRACEPARENT"] and all(cold["env"].values())
            (tmp_path / "stop-L-fallback").touch()
            await until(lambda: _eq(status(launches, "L-fallback"), "ended"), what="ended")
            await until(lambda: _eq(_zcard(r, keys.cold_slots), 0), what="the cold slot freed")
            await until(lambda: _falsy(operator.launcher.children), what="the cold bot reaped")  # no zombie

    run_with_redis(test)


async def _zcard(r: Any, key: str) -> int:
    return int(await r.zcard(key))


async def _falsy(value: Any) -> bool:
    return not value


def test_a_live_operators_job_is_never_adopted_and_a_dead_ones_is():
    async def test(r, keys):
        launches = _launches(r, keys, start_timeout_s=3.0)
        raw = job_json("L-live")
        await enqueue(launches, raw)
        async with TestRunner(launches, delay=1.2) as slow, operating(launches, operator_id="op-1"):
            await r.rpush(keys.standby_pool, slow.url)
            await until(lambda: _truthy(slow.headers), what="the start in flight")
            async with operating(launches, operator_id="op-2") as (second, _):
                await until(lambda: _eq(status(launches, "L-live"), "running"), what="running")
                assert second.inflight == {}
            assert await r.hget(keys.owners, _sha(raw)) in (None, "op-1")
        assert slow.takes == [("L-live", 1, "ok")]  # one start, by its own operator

        # An operator died with a /start in flight: it beat, took the job, claimed attempt 1, and stopped.
        raw = job_json("L-orphan", room=ROOM + "-2")
        job = await enqueue(launches, raw)
        await launches.heartbeat("op-dead")
        assert await launches.take_job("op-dead") == raw
        assert (await launches.claim(job.pending_lock(), "op-dead")).attempt == 1
        async with TestRunner(launches) as runner, operating(launches, operator_id="op-3"):
            await r.rpush(keys.standby_pool, runner.url)
            await until(lambda: _eq(status(launches, "L-orphan"), "running"), what="the orphan adopted")
            await until(lambda: _eq(r.llen(keys.processing), 0), what="processing drained")
        assert runner.started() == [("L-orphan", 2)]
        assert await launches.take("L-orphan", 1, job.room, "http://late", "warm", "{}") == "fenced"

    run_with_redis(test)


def _sha(raw: str) -> str:
    from bot.launches import job_sha

    return job_sha(raw)


def test_a_bad_pool_entry_or_a_refusing_runner_never_dead_letters_a_job_while_a_healthy_runner_waits():
    async def test(r, keys):
        launches = _launches(r, keys)
        await enqueue(launches, job_json("L-pool"))
        async with TestRunner(launches) as healthy, TestRunner(launches, status=500) as broken, \
                operating(launches):
            closed = f"http://127.0.0.1:{free_port()}"
            await r.rpush(keys.standby_pool, healthy.url, broken.url, closed, "http://127.0.0.1:99999",
                          "not a url", "http://x\n.test")
            await until(lambda: _eq(status(launches, "L-pool"), "running"), what="running")
        assert healthy.started() == [("L-pool", 3)]  # attempts 1 (closed port) and 2 (500) were given up on
        assert await dead(r, keys) == [] and await r.llen(keys.standby_pool) == 0

    run_with_redis(test)


def test_a_slow_cold_boot_does_not_stall_a_warm_launch(tmp_path):
    async def test(r, keys):
        launches = _launches(r, keys)
        await enqueue(launches, job_json("L-cold"))
        async with TestRunner(launches) as runner, \
                operating(launches, cold_launcher(keys, tmp_path, delay=1.5)):
            await until(lambda: _eq(status(launches, "L-cold"), "starting"), what="the cold boot")
            await r.rpush(keys.standby_pool, runner.url)
            await enqueue(launches, job_json("L-warm", room=ROOM + "-warm"))
            await until(lambda: _eq(status(launches, "L-warm"), "running"), what="the warm launch")
            assert await status(launches, "L-cold") == "starting"  # still booting
            await until(lambda: _eq(status(launches, "L-cold"), "running"), what="the cold launch")
            (tmp_path / "stop-L-cold").touch()

    run_with_redis(test)


class RedisProxy:
    """A TCP proxy to Redis on loopback that can be cut (every connection closed, new ones refused) and restored."""

    def __init__(self) -> None:
        self.cut = False
        self.writers: list[asyncio.StreamWriter] = []
        self.url = ""

    async def __aenter__(self) -> RedisProxy:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"redis://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/0"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cut_off()
        self.server.close()

    def cut_off(self) -> None:
        self.cut = True
        for writer in self.writers:
            writer.close()
        self.writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut:
            writer.close()
            return
        host, port = REDIS_URL.split("//")[1].split("/")[0].split(":")
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        self.writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


def test_a_redis_failure_mid_dispatch_is_retried_not_dead_lettered_and_starts_no_second_bot():
    async def test(r, keys):
        async with RedisProxy() as proxy:
            op_redis = aioredis.Redis.from_url(proxy.url, decode_responses=True, socket_timeout=1,
                                               socket_connect_timeout=1)
            launches = _launches(op_redis, keys)
            direct = _launches(r, keys)
            await enqueue(direct, job_json("L-cut"))
            metrics, read = metered()
            async with TestRunner(direct) as runner, operating(launches, metrics=metrics) as (operator, _):
                runner.delay = 0.1
                await r.rpush(keys.standby_pool, runner.url)
                await until(lambda: _truthy(runner.headers), what="the start")
                proxy.cut_off()  # the runner starts the bot; the operator cannot record that it is done
                await until(lambda: _eq(status(direct, "L-cut"), "running"), what="running")
                await until(lambda: _falsy(operator.inflight), what="the dispatch to give up on Redis")
                assert await r.llen(keys.processing) == 1 and await dead(r, keys) == []  # kept, to retry
                proxy.cut = False
                await until(lambda: _eq(r.llen(keys.processing), 0), what="the retry")
            await op_redis.aclose()
        assert runner.takes == [("L-cut", 1, "ok")] and await dead(r, keys) == []  # the retry saw it running
        # the dispatch that lost Redis is retried; the retry finds the launch running and starts nothing
        assert read("bot.dispatches") == {"retried": 1, "skipped": 1}
        assert read("bot.join.duration") == {"warm": 1}  # it did start: its wait ended once

    run_with_redis(test)


# -- bounds ---------------------------------------------------------------------------------------


def test_with_one_cold_slot_a_second_cold_job_waits_queued_and_starts_when_the_slot_frees(tmp_path):
    async def test(r, keys):
        launches = _launches(r, keys, max_cold=1)
        await enqueue(launches, job_json("L-1"))
        async with operating(launches, cold_launcher(keys, tmp_path, max_cold=1)):
            await until(lambda: _eq(status(launches, "L-1"), "running"), what="the first cold bot")
            await enqueue(launches, job_json("L-2", room=ROOM + "-2"))
            # it is claimed and handed back, again and again, while the slot is taken
            await until(lambda: _attempt_at_least(launches, "L-2", 2), what="the second job retried")
            assert await status(launches, "L-2") in ("queued", "starting")
            assert await dead(r, keys) == []
            (tmp_path / "stop-L-1").touch()
            await until(lambda: _eq(status(launches, "L-2"), "running"), what="the second cold bot")
            (tmp_path / "stop-L-2").touch()
            await until(lambda: _eq(status(launches, "L-2"), "ended"), what="ended")
        assert sorted(t["env"]["BOT_LAUNCH_ID"] for t in cold_takes(tmp_path) if t["outcome"] == "ok") == ["L-1", "L-2"]

    run_with_redis(test)


async def _attempt_at_least(launches: Launches, launch_id: str, n: int) -> bool:
    rec = await launches.record(launch_id)
    return bool(rec) and int(rec.get("attempt", 0)) >= n


def test_a_cold_bot_that_never_starts_is_fenced_killed_retried_then_dead_lettered(tmp_path):
    async def test(r, keys):
        launches = _launches(r, keys, cold_start_timeout_s=0.5)
        job = await enqueue(launches, job_json("L-stuck", token="tok-stuck"))
        launcher = cold_launcher(keys, tmp_path, delay=60)
        async with operating(launches, launcher):
            await until(lambda: _eq(status(launches, "L-stuck"), "failed"), what="failed")
            (letter,) = await dead(r, keys)
            assert letter["reason"] == "the cold bot did not start" and "tok-stuck" not in json.dumps(letter)
            assert launcher.children == {} and await r.zcard(keys.cold_slots) == 0
            assert await launches.lock(job.room) is None
        assert (await launches.record("L-stuck"))["attempt"] == 3  # two cold bots given up on, then fenced

    run_with_redis(test)


class BrokenLauncher:
    """A launcher whose platform refuses every start (say, the cluster is out of quota)."""

    def launch(self, launch_id: str, env: Mapping[str, str]) -> int:
        raise RuntimeError("no capacity for cold bots")

    def alive(self, bot_id: int) -> bool:
        return False

    def kill(self, bot_id: int) -> None:
        pass

    def reap(self) -> list[tuple[str, int]]:
        return []


def test_a_failed_launch_is_dead_lettered_and_frees_the_room(logs):
    async def test(r, keys):
        launches = _launches(r, keys)
        job = await enqueue(launches, job_json("L-fail", session_id="s-fail"))
        async with operating(launches, BrokenLauncher()):
            await until(lambda: _eq(status(launches, "L-fail"), "failed"), what="failed")
        assert await launches.lock(job.room) is None and await r.llen(keys.processing) == 0
        assert await r.zcard(keys.cold_slots) == 0  # the slot it took for the bot is free again
        (letter,) = await dead(r, keys)
        assert "no capacity" in letter["reason"] and letter["launchId"] == "L-fail"

    run_with_redis(test)
    (failure,) = [rec for rec in logs.records if rec.message.startswith("Launch L-fail failed")]
    assert failure.session_id == "s-fail" and "no capacity for cold bots" in (failure.exception or "")


def test_cold_env_never_holds_empty_or_stale_values():
    job = Job(room_url=ROOM, sessionId="s", launchId="L", userId="u", personalityId="p")
    base = {"PATH": "/bin", "EMPTY": "", "BOT_ROOM_TOKEN": "stale", "BOT_USER_NAME": "stale", "BAGGAGE": "x=old",
            "BOT_LOCK_TTL_S": "2"}
    env = cold_env(job, 3, base=base)
    assert env["BOT_SESSION_ID"] == "s" and env["BOT_LAUNCH_ID"] == "L" and env["BOT_ROOM_URL"] == ROOM
    assert env["BOT_ATTEMPT"] == "3" and env["BOT_USER_ID"] == "u" and env["BOT_PERSONALITY_ID"] == "p"
    assert env["BOT_LOCK_TTL_S"] == "2"  # the operator's knobs pass on
    for gone in ("EMPTY", "BOT_ROOM_TOKEN", "BOT_USER_NAME", "BAGGAGE"):
        assert gone not in env
    assert all(env.values())


# -- shutdown -------------------------------------------------------------------------------------


def test_stopping_finishes_a_start_in_flight_or_hands_a_booting_cold_job_back(tmp_path):
    async def test(r, keys):
        launches = _launches(r, keys, start_timeout_s=3.0)
        await enqueue(launches, job_json("L-drain"))
        metrics, read = metered()
        async with TestRunner(launches, delay=0.5) as slow:
            async with operating(launches, metrics=metrics):
                await r.rpush(keys.standby_pool, slow.url)
                await until(lambda: _truthy(slow.headers), what="the start in flight")
            assert await status(launches, "L-drain") == "running"  # it was let finish
            assert await r.llen(keys.processing) == 0 and slow.started() == [("L-drain", 1)]

        launches = _launches(r, keys, drain_s=0.3)
        raw = job_json("L-back", room=ROOM + "-back")
        job = await enqueue(launches, raw)
        launcher = cold_launcher(keys, tmp_path, delay=60)
        async with operating(launches, launcher, metrics=metrics):
            await until(lambda: _truthy(launcher.children), what="the cold boot")
        assert launcher.children == {}  # stopped, and reaped
        assert read("bot.dispatches") == {"warm": 1, "requeued": 1}  # the start let finish; the boot handed back
        assert await status(launches, "L-back") == "queued"
        assert await r.lrange(keys.launch_queue, 0, -1) == [raw]  # back at the head, as it was
        lock = await launches.lock(job.room)
        assert lock["status"] == "pending" and lock["launch_id"] == "L-back"
        assert await r.llen(keys.processing) == 0 and await r.zcard(keys.cold_slots) == 0

    run_with_redis(test)


# -- the command line -----------------------------------------------------------------------------


def _main(monkeypatch, capsys, keys: Keys, *args: str, redis_url: str = REDIS_URL) -> tuple[int, str, str]:
    """`python -m bot.operator ARGS` in this process: its exit code, stdout and stderr."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("BOT_KEY_PREFIX", keys.prefix)
    monkeypatch.setenv("BOT_HEARTBEAT_S", "0.2")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    out = capsys.readouterr()
    return int(exit_.value.code or 0), out.out, out.err


def _sync(keys: Keys, step: Callable[[Any, Launches], Awaitable[Any]]) -> Any:
    async def run() -> Any:
        r = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
        try:
            return await step(r, _launches(r, keys, pending_ttl_s=60.0, heartbeat_s=0.2))
        finally:
            await r.aclose()

    return asyncio.run(run())


@pytest.fixture
def cli_keys():
    keys = Keys(f"test-{uuid.uuid4().hex[:10]}:")
    yield keys
    _sync(keys, lambda r, _: _delete_all(r, keys))


async def _delete_all(r: Any, keys: Keys) -> None:
    async for key in r.scan_iter(match=f"{keys.prefix}*"):
        await r.delete(key)


def test_dead_letters_are_listed_and_replayed_without_their_token(monkeypatch, capsys, cli_keys):
    keys = cli_keys
    raw = job_json("L-dead", token="tok-dead-secret")
    other = job_json("L-blocked", room=ROOM + "-blocked")

    async def setup(r, launches):
        for job, reason in ((raw, "room taken by a newer launch"), (other, "the cold bot did not start")):
            await r.rpush(keys.processing, job)
            await launches.dead_letter(job, dead_letters.entry(job, reason, json.loads(job)["launchId"]))
        await enqueue(launches, job_json("L-holder", room=ROOM + "-blocked"))  # holds the other's room

    _sync(keys, setup)
    code, out, _ = _main(monkeypatch, capsys, keys, "--dead-letters")
    assert code == 0
    entries = [json.loads(line) for line in out.splitlines()]
    assert [e["launchId"] for e in entries] == ["L-dead", "L-blocked"] and "tok-dead-secret" not in out

    code, out, err = _main(monkeypatch, capsys, keys, "--replay", entries[0]["id"])
    assert code == 0, err
    assert "L-dead" in out and "token" in out  # it says the token is gone

    async def replayed(r, launches):
        (queued,) = [json.loads(j) for j in await r.lrange(keys.launch_queue, 0, -1) if "L-dead" in j]
        assert "token" not in queued and queued["otel"] == json.loads(raw)["otel"]  # same launch, same trace
        assert await status(launches, "L-dead") == "queued"
        assert [e["launchId"] for e in await dead(r, keys)] == ["L-blocked"]

    _sync(keys, replayed)
    code, _, err = _main(monkeypatch, capsys, keys, "--replay", entries[1]["id"])
    assert code == 1 and "taken" in err
    code, _, err = _main(monkeypatch, capsys, keys, "--replay", "no-such-id")
    assert code == 1 and "no dead letter" in err


def test_check_exits_zero_only_while_an_operator_beats(monkeypatch, capsys, cli_keys):
    code, _, err = _main(monkeypatch, capsys, cli_keys, "--check")
    assert code == 1 and "no operator is alive" in err
    code, _, err = _main(monkeypatch, capsys, cli_keys, "--check", redis_url=f"redis://127.0.0.1:{free_port()}/0")
    assert code == 2 and "Redis unreachable" in err
    _sync(cli_keys, lambda _, launches: launches.heartbeat("op-beating"))
    code, out, _ = _main(monkeypatch, capsys, cli_keys, "--check")
    assert code == 0 and "1 operator alive" in out
    time.sleep(0.7)  # past 3 heartbeats of 0.2 s without a beat: it counts as gone
    assert _main(monkeypatch, capsys, cli_keys, "--check")[0] == 1


def test_the_operator_process_beats_and_exits_cleanly_on_sigterm(tmp_path, cli_keys):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "OTEL_", "TRACE", "BAGGAGE"))}
    env.update(REDIS_URL=REDIS_URL, BOT_KEY_PREFIX=cli_keys.prefix, BOT_HEARTBEAT_S="0.2",
               OTEL_LOGS_EXPORTER="none", BOT_CONSOLE_LEVEL="WARNING")
    with open(tmp_path / "operator.out", "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "bot.operator"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _sync(cli_keys, lambda r, _: r.zcard(cli_keys.operators)), 20, what="a heartbeat")
        proc.terminate()
        assert proc.wait(15) == 0, (tmp_path / "operator.out").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert _sync(cli_keys, lambda r, _: r.zcard(cli_keys.operators)) == 0  # it left at once: its jobs are adoptable
