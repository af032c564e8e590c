"""When each step of a launch happened, and `GET /launches/{id}?wait_s=N`: the long poll a client waits on.

The gateway is served by uvicorn in a thread (so a test can count its waiters) against the real Redis; the
operator's and the bot's steps are played through `Launches`, except in the end-to-end test, where the
real services run as processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from bot.gateway import create_app
from bot.keys import Keys
from bot.launches import Launches
from bot.settings import Settings
from tests.helpers.bot_platform import REDIS_URL, Platform, claim_as_operator, clear_keys, run_with_redis
from tests.helpers.support import served_in_thread, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.processes]  # and the folder's (tests/conftest.py)
STEPS = ("queued", "claimed", "started", "running")


def _room() -> str:
    return f"https://rooms.example.test/{uuid.uuid4().hex[:12]}"


class Gateway:
    """The gateway app in a thread on its own key prefix; `run(step)` plays an operator or bot step on its keys."""

    def __init__(self, app: Any, loop: asyncio.AbstractEventLoop, url: str, keys: Keys, settings: Settings) -> None:
        self.app, self.loop, self.url, self.keys, self.settings = app, loop, url, keys, settings

    @property
    def waiting(self) -> int:
        return int(self.app.state.watch.waiting)

    def join(self) -> str:
        reply = httpx.post(f"{self.url}/join", json={"room_url": _room()}, timeout=10)
        assert reply.status_code == 202, reply.text
        return str(reply.json()["launchId"])

    def get(self, path: str, timeout: float = 10) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=timeout)

    def run(self, step: Any) -> Any:
        async def main() -> Any:
            r = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
            try:
                return await step(Launches(r, self.keys, self.settings))
            finally:
                await r.aclose()

        return asyncio.run(main())


@contextlib.contextmanager
def gateway(**knobs: Any) -> Iterator[Gateway]:
    keys, settings = Keys(f"test-{uuid.uuid4().hex[:10]}:"), Settings(**knobs)
    try:
        with served_in_thread(create_app(settings=settings, keys=keys, telemetry=False)) as (app, loop, url):
            wait_for(lambda: app.state.watch.subscribed, what="the status subscription")
            yield Gateway(app, loop, url, keys, settings)
    finally:
        clear_keys(keys)


async def _claim(launches: Launches, launch_id: str) -> int:
    return (await claim_as_operator(launches, launch_id))[0]


@pytest.fixture(scope="module")
def gw() -> Iterator[Gateway]:
    with gateway(max_wait_s=30.0) as g:
        yield g


# -- when each step happened ------------------------------------------------------------------------


def test_every_step_of_a_launch_is_timed_in_order():
    async def test(r, keys):
        launches = Launches(r, keys, Settings())
        pending = Launches.pending_lock(launch_id="L1", session_id="s1", room="a" * 32, room_url="https://r.test/x")
        assert await launches.enqueue(pending, "{}") == "queued"
        assert set((await launches.record("L1"))["times"]) == {"queued"}
        claim = await launches.claim(pending, "op-1")
        # a runner whose clock is far behind: its `started` is kept between claimed and running
        assert await launches.take("L1", claim.attempt, "a" * 32, "runner", "warm", "{}", started=1.0) == "ok"
        times = (await launches.record("L1"))["times"]
        assert list(times) != [] and set(times) == set(STEPS)
        assert [times[s] for s in STEPS] == sorted(times[s] for s in STEPS)
        assert times["started"] >= times["claimed"]

    run_with_redis(test)


def test_a_real_join_records_its_steps_in_order(tmp_path):
    platform = Platform(tmp_path)
    try:
        platform.start_runner(level="INFO")
        platform.start_operator()
        platform.start_gateway()
        launch_id = platform.join(room_url=_room()).json()["launchId"]
        status, seen = "queued", []
        while status != "running":
            reply = httpx.get(f"{platform.gateway_url}/launches/{launch_id}",
                              params={"wait_s": 10, "seen": status}, timeout=30)
            assert reply.status_code == 200, reply.text
            assert reply.json()["status"] not in ("failed", "ended"), reply.text
            status = reply.json()["status"]
            seen.append(status)
        times = platform._json(platform.keys.launch(launch_id))["times"]
        assert [times[s] for s in STEPS] == sorted(times[s] for s in STEPS)
        assert seen[-1] == "running"
    finally:
        platform.cleanup()


# -- the long poll ------------------------------------------------------------------------------------


def test_a_long_poll_answers_when_the_status_changes(gw):
    launch_id = gw.join()
    with ThreadPoolExecutor(1) as pool:
        # the gateway would hold it 30 s; the client gives up at 20: only an answer on the change passes
        answer = pool.submit(gw.get, f"/launches/{launch_id}?wait_s=30&seen=queued", 20)
        wait_for(lambda: gw.waiting >= 1, what="the poll waiting")
        gw.run(lambda launches: _claim(launches, launch_id))
        reply = answer.result()
    assert reply.status_code == 200 and reply.json()["status"] == "starting"
    assert reply.headers["x-wait-s"] == "30"
    assert gw.waiting == 0


def test_a_long_poll_answers_at_once_when_seen_is_already_stale(gw):
    launch_id = gw.join()
    gw.run(lambda launches: _claim(launches, launch_id))
    reply = gw.get(f"/launches/{launch_id}?wait_s=30&seen=queued", timeout=20)
    assert reply.json()["status"] == "starting"


def test_a_long_poll_answers_the_unchanged_status_at_its_timeout(gw):
    launch_id = gw.join()
    for query in ("wait_s=0.3&seen=queued", "wait_s=0.3", "wait_s=0"):
        reply = gw.get(f"/launches/{launch_id}?{query}")
        assert reply.status_code == 200 and reply.json() == {
            "launchId": launch_id, "sessionId": reply.json()["sessionId"], "status": "queued"}
    assert gw.get(f"/launches/{uuid.uuid4().hex}?wait_s=1").status_code == 404


def test_a_long_poll_on_an_ended_launch_answers_at_once(gw):
    launch_id = gw.join()
    assert httpx.post(f"{gw.url}/leave", json={"launchId": launch_id}, timeout=10).json()["status"] == "ended"
    reply = gw.get(f"/launches/{launch_id}?wait_s=30&seen=ended", timeout=20)
    assert reply.json()["status"] == "ended"


@pytest.mark.parametrize("query, field", [
    ("wait_s=abc", "wait_s"), ("wait_s=-1", "wait_s"), ("wait_s=nan", "wait_s"), ("wait_s=inf", "wait_s"),
    ("wait_s=", "wait_s"), ("wait_s=1&seen=sleeping", "seen"), ("seen=queued", "seen"),
])
def test_a_bad_wait_is_refused_with_422_naming_it(gw, query, field):
    launch_id = gw.join()
    reply = gw.get(f"/launches/{launch_id}?{query}")
    assert reply.status_code == 422
    (error,) = reply.json()["detail"]
    assert error["loc"] == ["query", field] and field in error["msg"]
    assert gw.waiting == 0


def test_a_long_wait_is_capped():
    with gateway(max_wait_s=0.5) as small:
        launch_id = small.join()
        reply = small.get(f"/launches/{launch_id}?wait_s=3600&seen=queued", timeout=20)
        assert reply.status_code == 200 and reply.json()["status"] == "queued"
        assert reply.headers["x-wait-s"] == "0.5"


def test_a_client_that_goes_away_mid_wait_leaves_no_waiter(gw):
    launch_id = gw.join()
    port = int(gw.url.rsplit(":", 1)[1])
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(f"GET /launches/{launch_id}?wait_s=30&seen=queued HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            wait_for(lambda: gw.waiting == 1, what="the poll waiting")
        wait_for(lambda: gw.waiting == 0, what="the waiter gone with its client")
    assert gw.get(f"/launches/{launch_id}").json()["status"] == "queued"  # and the gateway serves on


def test_a_long_poll_outlives_a_lost_subscription(gw):
    launch_id = gw.join()
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(gw.get, f"/launches/{launch_id}?wait_s=30&seen=queued", 20)
        wait_for(lambda: gw.waiting >= 1, what="the poll waiting")
        watch = gw.app.state.watch
        # the subscription's connection drops (a Redis blip, as the client sees it)
        asyncio.run_coroutine_threadsafe(watch.redis.connection_pool.disconnect(inuse_connections=True),
                                         gw.loop).result(5)
        gw.run(lambda launches: _claim(launches, launch_id))
        reply = answer.result()
    assert reply.json()["status"] == "starting"
    wait_for(lambda: watch.subscribed, what="the subscription back")
    launch_id = gw.join()  # and it wakes polls again
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(gw.get, f"/launches/{launch_id}?wait_s=30&seen=queued", 20)
        wait_for(lambda: gw.waiting >= 1, what="the poll waiting")
        gw.run(lambda launches: _claim(launches, launch_id))
        assert answer.result().json()["status"] == "starting"
