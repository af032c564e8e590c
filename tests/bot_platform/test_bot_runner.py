"""The runner on its own: real runner processes, real Redis, the operator's side played by the test.

The test claims a launch itself (`Launches.enqueue` + `claim`, what an operator does) and then
calls `/start` or starts a cold bot, so each fencing outcome can be set up exactly.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import pytest
import redis.asyncio as aioredis

from bot import rooms
from bot.demo.harness import Deployment, Service
from bot.launches import Launches
from bot.models import Job
from bot.settings import Settings, redis_url
from tests.helpers.bot_platform import DRILL, DRILL_TOKEN, Platform, admin
from tests.helpers.support import ROOT, LoopbackHTTP, TcpProxy, otlp_records, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.processes]  # and the folder's (tests/conftest.py)
T = TypeVar("T")

ROOM = "https://rooms.example.test/call"
KNOBS = {"BOT_LOCK_TTL_S": "2", "BOT_KEEPALIVE_S": "0.2", "BOT_PENDING_TTL_S": "5", "BOT_DRAIN_S": "1"}
SETTINGS = Settings.from_env(KNOBS)


class Rig:
    """One test's deployment plus the operator's side of the launch state machine."""

    def __init__(self, tmp: Path) -> None:
        self.dep = Deployment(tmp, **KNOBS)
        self.dep.base_env["GLOBAL_LOG_LEVEL"] = "DEBUG"
        self.keys = self.dep.keys
        self.redis = self.dep.redis

    def launches(self, call: Callable[[Launches], Awaitable[T]], settings: Settings = SETTINGS) -> T:
        async def main() -> T:
            client = aioredis.Redis.from_url(self.dep.redis_url, decode_responses=True)
            try:
                return await call(Launches(client, self.keys, settings))
            finally:
                await client.aclose()

        return asyncio.run(main())

    def claim(self, launch_id: str, room_url: str = ROOM, give_up: int = 0, cold: bool = False,
              **fields: Any) -> dict[str, Any]:
        """Queue and claim a launch as an operator would; `give_up` more claims fence the earlier attempts.

        `cold`: a starting lock that outlives a cold bot's boot (the operator would `hold` it meanwhile).
        Returns the `/start` body for the newest attempt.
        """
        settings = Settings(**{**SETTINGS.__dict__, "lock_ttl_s": 30.0}) if cold else SETTINGS
        job = Job(room_url=room_url, sessionId=fields.pop("sessionId", f"s-{launch_id}"), launchId=launch_id,
                  **fields)
        pending = job.pending_lock()
        assert self.launches(lambda ls: ls.enqueue(pending, job.model_dump_json())) == "queued"
        claim = self.launches(lambda ls: ls.claim(pending, "op-test"), settings)
        for _ in range(give_up):
            claim = self.launches(lambda ls, a=claim.attempt: ls.claim(pending, "op-test", expected_attempt=a),
                                  settings)
        assert claim.outcome == "claimed", claim
        return {**job.model_dump(mode="json", exclude_none=True), "attempt": claim.attempt}

    def runner(self, slots: int = 1, **env: str) -> tuple[str, Service]:
        service = self.dep.start_runner(slots=slots, **env)
        return self.dep.runner_urls[-1], service

    def pool(self) -> list[str]:
        return list(self.redis.lrange(self.keys.standby_pool, 0, -1))

    def pop_pool(self, url: str) -> None:
        """What the operator does before its `/start`: take one of the runner's pool entries."""
        wait_for(lambda: url in self.pool(), what="runner in the pool")
        assert self.redis.lrem(self.keys.standby_pool, 1, url) == 1

    def lock(self, room_url: str = ROOM) -> dict[str, Any] | None:
        return self.dep.lock(room_url)

    def record(self, launch_id: str) -> dict[str, Any] | None:
        return self.dep.record(launch_id)

    def sessions(self, url: str) -> list[dict[str, Any]]:
        return list(httpx.get(f"{url}/sessions", timeout=5).json())

    def running(self, url: str) -> list[str]:
        return [s["launchId"] for s in self.sessions(url) if s["running"]]

    def records(self) -> list[dict[str, Any]]:
        return otlp_records(self.dep.otel_dir)

    def messages(self, text: str) -> list[dict[str, Any]]:
        return [r for r in self.records() if text in (r["message"] or "")]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    deployment = Rig(tmp_path)
    yield deployment
    deployment.dep.cleanup()


def start(url: str, body: dict[str, Any], **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{url}/start", json=body, timeout=10, **kwargs)


def room_hash(room_url: str = ROOM) -> str:
    return rooms.room_hash(rooms.canonical(room_url))


# -- /start and the fencing check -----------------------------------------------------------------


def test_a_claimed_attempt_starts_one_bot_whose_lock_runs_and_it_leaves_back_into_the_pool(rig):
    url, service = rig.runner(slots=1)
    assert rig.pool() == [url]
    room = f"{ROOM}?key=SECRET"  # a room URL's query may hold a secret: never logged
    body = rig.claim("L-1", room_url=room, userId="u-1")
    rig.pop_pool(url)
    reply = start(url, body)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"sessionId": "s-L-1", "launchId": "L-1", "attempt": 1, "pid": service.pid}
    lock = rig.lock(room)
    assert (lock["status"], lock["attempt"], lock["runner"], lock["type"]) == ("running", 1, url, "warm")
    assert rig.record("L-1")["status"] == "running"
    keepalive = json.loads(wait_for(lambda: rig.redis.get(rig.keys.room_keepalive(room_hash(room))), what="keepalive"))
    assert (keepalive["launch_id"], keepalive["session_id"], keepalive["attempt"]) == ("L-1", "s-L-1", 1)
    (listed,) = rig.sessions(url)
    assert {k: listed[k] for k in ("launchId", "sessionId", "attempt", "running")} == {
        "launchId": "L-1", "sessionId": "s-L-1", "attempt": 1, "running": True}
    # the same launch again (an operator retrying the same runner): refused, still one bot
    assert start(url, body).json() == {"detail": "running"}
    assert start(url, body).status_code == 409
    # another launch while the only slot is busy: 503, nothing taken
    other = rig.claim("L-2", room_url=f"{ROOM}-2")
    assert start(url, other).status_code == 503 and rig.lock(f"{ROOM}-2")["status"] == "starting"
    assert rig.running(url) == ["L-1"] and rig.pool() == []

    assert httpx.post(f"{url}/sessions/nope/leave", timeout=10).status_code == 404
    assert httpx.post(f"{url}/sessions/L-1/leave", timeout=10).json() == {"launchId": "L-1", "status": "terminated"}
    assert httpx.post(f"{url}/sessions/L-1/leave", timeout=10).json()["status"] == "already-finished"
    record = rig.dep.wait_status("L-1", "ended", timeout=10)
    assert record["reason"] == "left" and rig.lock(room) is None
    wait_for(lambda: rig.pool() == [url], what="runner back in the pool")
    started = rig.messages("Bot session started")
    assert len(started) == 1 and started[0]["attrs"]["session.id"] == "s-L-1"
    assert started[0]["attrs"]["bot.launch_id"] == "L-1" and started[0]["attrs"]["user.id"] == "u-1"
    assert "rooms.example.test/call?…" in started[0]["message"]
    assert not any("SECRET" in (r["message"] or "") for r in rig.records())


def test_a_late_start_for_a_fenced_attempt_is_refused_and_the_runner_returns_to_the_pool(rig):
    url, _ = rig.runner(slots=1)
    body = rig.claim("L-late", give_up=1)  # attempt 1 timed out; the operator claimed attempt 2
    assert body["attempt"] == 2
    rig.pop_pool(url)
    late = start(url, {**body, "attempt": 1})
    assert (late.status_code, late.json()) == (409, {"detail": "fenced"})
    wait_for(lambda: rig.pool() == [url], what="runner back in the pool")
    assert rig.running(url) == [] and rig.lock()["status"] == "starting" and rig.lock()["attempt"] == 2
    # an unknown launch, and one the user left before it started
    unknown = {**body, "launchId": "L-unknown"}
    assert start(url, unknown).json() == {"detail": "lost"}
    rig.redis.set(rig.keys.leave("L-late"), "1")
    assert start(url, body).json() == {"detail": "left"}
    assert rig.running(url) == [] and rig.pool() == [url]  # one entry per free slot, however many refusals
    (warning, *_) = wait_for(lambda: rig.messages("Start of attempt 1 refused: fenced"), what="refusal logged")
    assert warning["level"] == "WARN" and warning["attrs"]["session.id"] == "s-L-late"
    assert warning["attrs"]["bot.launch_id"] == "L-late"


def test_bad_start_bodies_get_422_or_413_without_echoing_them(rig):
    url, _ = rig.runner(slots=1, BOT_MAX_BODY_BYTES="8192")
    body = rig.claim("L-bad")
    secret = "tok-SECRET-" + "x" * 5000
    cases = [
        ({k: v for k, v in body.items() if k != "sessionId"}, "sessionId"),
        ({k: v for k, v in body.items() if k != "launchId"}, "launchId"),
        ({k: v for k, v in body.items() if k != "attempt"}, "attempt"),
        ({**body, "attempt": 0}, "attempt"),
        ({**body, "token": secret[:4097]}, "token"),
        ({**body, "room_url": "https://user:pw-SECRET@rooms.example.test/x?token=SECRET\n"}, "room_url"),
    ]
    for bad, field in cases:
        reply = start(url, bad)
        assert reply.status_code == 422, (field, reply.text)
        assert any(field in error["loc"] for error in reply.json()["detail"]), reply.text
        assert "SECRET" not in reply.text and "input" not in reply.json()["detail"][0]
    not_json = httpx.post(f"{url}/start", content=b"[" * 5000, headers={"content-type": "application/json"})
    assert not_json.status_code == 422
    too_big = start(url, {**body, "userName": "x" * 9000})
    assert too_big.status_code == 413 and "x" * 100 not in too_big.text
    assert rig.lock()["status"] == "starting" and rig.running(url) == []
    assert not any("SECRET" in (r["message"] or "") for r in rig.records())


# -- ending a session -----------------------------------------------------------------------------


def test_admin_messages_by_launch_and_the_leave_flag_end_the_session_as_ended(rig):
    url, _ = rig.runner(slots=1)
    rig.pop_pool(url)
    assert start(url, rig.claim("L-adm")).status_code == 200
    queue = rig.keys.admin_queue("L-adm")
    rig.redis.rpush(queue, json.dumps({"type": "admin_message", "message": "please wrap up", "otel": {}}), "garbage")
    (heard,) = wait_for(lambda: rig.messages("Admin message received: please wrap up"), what="admin message")
    assert heard["attrs"]["session.id"] == "s-L-adm" and heard["attrs"]["bot.launch_id"] == "L-adm"
    assert wait_for(lambda: rig.messages("Malformed admin message dropped"), what="malformed message warning")
    assert rig.launches(lambda ls: ls.leave("L-adm")) == "leaving"
    record = rig.dep.wait_status("L-adm", "ended", timeout=10)
    assert record["reason"] == "left" and rig.lock() is None
    assert not rig.redis.exists(queue, rig.keys.leave("L-adm"))
    wait_for(lambda: rig.running(url) == [] and rig.pool() == [url], what="bot gone, runner back in the pool")


def test_a_lock_that_is_no_longer_its_own_ends_the_session_at_once(rig):
    url, _ = rig.runner(slots=1)
    rig.pop_pool(url)
    assert start(url, rig.claim("L-gone")).status_code == 200
    rig.redis.delete(rig.keys.room_active(room_hash()))
    wait_for(lambda: rig.running(url) == [], timeout=5, what="the bot to stop")
    record = rig.dep.wait_status("L-gone", "failed", timeout=5)
    assert record["reason"] == "lock lost"
    wait_for(lambda: rig.messages("no longer this attempt's"), what="the warning exported")
    assert len(rig.messages("no longer this attempt's")) == 1
    wait_for(lambda: rig.pool() == [url], what="runner back in the pool")


def test_a_session_ends_after_the_maximum_session_length(rig):
    url, _ = rig.runner(slots=1, BOT_MAX_SESSION_S="1")
    rig.pop_pool(url)
    assert start(url, rig.claim("L-max")).status_code == 200
    record = rig.dep.wait_status("L-max", "ended", timeout=10)
    assert record["reason"] == "max session length" and rig.lock() is None
    assert rig.running(url) == []


# -- self-fencing and readiness -------------------------------------------------------------------


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    port = urlsplit(redis_url()).port or 6379
    with TcpProxy(port) as p:
        yield p


@pytest.mark.parametrize("blackhole", [False, True], ids=["refused", "black-holed"])
def test_a_bot_cut_off_from_redis_stops_itself_before_its_lock_can_expire(proxy, rig, blackhole):
    url, _ = rig.runner(slots=1, REDIS_URL=proxy.url())
    assert httpx.get(f"{url}/ready", timeout=5).status_code == 200
    rig.pop_pool(url)
    assert start(url, rig.claim("L-cut")).status_code == 200
    lock_key = rig.keys.room_active(room_hash())
    wait_for(lambda: rig.messages("Bot session started"), what="bot running")
    proxy.cut(blackhole=blackhole)
    cut = time.monotonic()
    wait_for(lambda: httpx.get(f"{url}/ready", timeout=5).status_code == 503, timeout=5, what="/ready says 503")
    wait_for(lambda: rig.running(url) == [], timeout=SETTINGS.fence_after_s + 3, what="the bot to stop itself")
    stopped = time.monotonic() - cut
    assert rig.redis.pttl(lock_key) > 0, "the bot stopped only after its lock had expired"
    assert stopped < SETTINGS.lock_ttl_s
    proxy.restore()
    wait_for(lambda: httpx.get(f"{url}/ready", timeout=5).status_code == 200, timeout=10, what="ready again")
    record = rig.dep.wait_status("L-cut", "failed", timeout=10)
    assert record["reason"] == "lost its lock"
    wait_for(lambda: rig.pool() == [url], timeout=10, what="runner back in the pool")
    (error,) = rig.messages("lost its lock (no renewal")
    assert error["level"] == "ERROR" and error["attrs"]["session.id"] == "s-L-cut"
    assert 1 <= len(rig.messages("Keepalive failed")) <= 2  # one per failure streak, not one per retry


# -- drain ----------------------------------------------------------------------------------------


def test_sigterm_leaves_the_pool_at_once_and_drains_live_sessions(rig):
    drain_s = 3.0
    url, service = rig.runner(slots=3, BOT_DRAIN_S=str(drain_s))
    assert rig.pool() == [url] * 3
    rig.pop_pool(url)
    rig.pop_pool(url)
    assert start(url, rig.claim("L-d1")).status_code == 200
    assert start(url, rig.claim("L-d2", room_url=f"{ROOM}-2")).status_code == 200
    service.signal(signal.SIGTERM)
    signalled = time.monotonic()
    wait_for(lambda: rig.pool() == [], timeout=1, what="pool entry gone")
    late = start(url, rig.claim("L-d3", room_url=f"{ROOM}-3"))
    assert (late.status_code, late.json()) == (503, {"detail": "draining"})
    assert httpx.get(f"{url}/ready", timeout=5).status_code == 503
    # a session that ends while draining does not put the runner back
    assert rig.launches(lambda ls: ls.leave("L-d1")) == "leaving"
    assert rig.dep.wait_status("L-d1", "ended", timeout=5)["reason"] == "left"
    assert rig.running(url) == ["L-d2"] and rig.pool() == []
    assert time.monotonic() - signalled < drain_s
    service.popen.wait(drain_s + 10)
    elapsed = time.monotonic() - signalled
    record = rig.record("L-d2")
    assert (record["status"], record["reason"]) == ("ended", "drained")
    assert elapsed >= drain_s * 0.9 and rig.lock(f"{ROOM}-2") is None
    assert rig.pool() == [] and service.popen.returncode == 0


# -- the cold job ---------------------------------------------------------------------------------


class FakeManifold(LoopbackHTTP):
    """Records what the bot asks (body and headers) and answers one streamed sentence."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        manifold = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                manifold.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                chunk = json.dumps({"choices": [{"delta": {"content": "I can help."}}]})
                payload = f"data: {chunk}\n\ndata: [DONE]\n\n".encode()
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        super().__init__(Handler)


def cold_bot(rig: Rig, body: dict[str, Any], **env: str) -> subprocess.Popen[bytes]:
    values = {"BOT_LAUNCH_ID": body.get("launchId"), "BOT_SESSION_ID": body.get("sessionId"),
              "BOT_ROOM_URL": body.get("room_url"), "BOT_ATTEMPT": str(body.get("attempt", "")),
              "BOT_ROOM_TOKEN": body.get("token"), "BOT_USER_ID": body.get("userId"),
              "BOT_USER_NAME": body.get("userName"), "BOT_PERSONALITY_ID": body.get("personalityId")}
    full = {**rig.dep.base_env, **{k: v for k, v in values.items() if v}, **env}
    log = open(rig.dep.log_dir / f"cold-{body.get('launchId')}.out", "ab")  # noqa: SIM115 - the child owns it
    return subprocess.Popen([sys.executable, "-m", "bot.runner", "--job"], env=full, cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT)


def test_a_cold_bot_keeps_the_joins_user_and_personality_and_renews_its_cold_slot(rig):
    manifold = FakeManifold()
    try:
        body = rig.claim("L-cold", cold=True, userId="u-cold", userName="Cold User", personalityId="p-42",
                         token="tok-1")
        assert rig.launches(lambda ls: ls.cold_slot("L-cold"))
        slot = rig.redis.zscore(rig.keys.cold_slots, "L-cold")
        bot = cold_bot(rig, body, MANIFOLD_URL=manifold.url)
        lock = rig.dep.wait_status("L-cold", "running", timeout=20) and rig.lock()
        assert (lock["type"], lock["runner"], lock["attempt"]) == ("cold", f"cold:{bot.pid}", 1)
        wait_for(lambda: rig.redis.zscore(rig.keys.cold_slots, "L-cold") > slot, what="cold slot renewed")
        ((headers, asked),) = wait_for(lambda: manifold.requests, what="the manifold asked")
        assert asked["user"] == "u-cold"
        assert headers["x-personality-id"] == "p-42" and headers["x-user-name"] == "Cold User"
        assert headers["x-chat-id"] == "bot-L-cold" and headers["traceparent"]
        assert "session.id=s-L-cold" in headers["baggage"]
        assert rig.launches(lambda ls: ls.leave("L-cold")) == "leaving"
        assert bot.wait(15) == 0
        assert rig.record("L-cold")["reason"] == "left"
        assert rig.redis.zscore(rig.keys.cold_slots, "L-cold") is None and rig.lock() is None
        answered = [r for r in rig.records() if (r["message"] or "").startswith("The manifold answered")]
        assert answered and answered[0]["attrs"]["user.id"] == "u-cold"
        assert answered[0]["attrs"]["bot.personality_id"] == "p-42"
    finally:
        manifold.close()


def test_a_cold_bot_for_a_fenced_attempt_exits_0_without_starting(rig):
    body = rig.claim("L-cold-late", give_up=1, cold=True)
    bot = cold_bot(rig, {**body, "attempt": 1})
    assert bot.wait(20) == 0
    lock = rig.lock()
    assert (lock["status"], lock["attempt"]) == ("starting", 2)
    assert not rig.messages("Bot session started")
    (refused,) = rig.messages("Cold bot not started: fenced")
    assert refused["attrs"]["session.id"] == "s-L-cold-late"


def test_sigterm_drains_a_cold_bot_too(rig):
    body = rig.claim("L-cold-drain", cold=True)
    bot = cold_bot(rig, body, BOT_DRAIN_S="1.5")
    rig.dep.wait_status("L-cold-drain", "running", timeout=20)
    wait_for(lambda: rig.messages("Bot session started"), what="the cold bot's session")
    bot.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    assert bot.wait(15) == 0
    assert time.monotonic() - signalled >= 1.5 * 0.9  # it ran on while draining
    record = rig.record("L-cold-drain")
    assert (record["status"], record["reason"]) == ("ended", "drained") and rig.lock() is None


@pytest.mark.parametrize(("env", "named"), [
    ({"BOT_ATTEMPT": ""}, "BOT_ATTEMPT not set"),
    ({"BOT_ATTEMPT": "one"}, "BOT_ATTEMPT"),
    ({"BOT_ROOM_URL": "https://rooms.example.test/x?token=SECRET\t"}, "BOT_ROOM_URL"),
    ({"BOT_LOCK_TTL_S": "-1"}, "BOT_LOCK_TTL_S"),
])
def test_a_cold_bot_with_a_bad_environment_exits_2_naming_it(rig, env, named):
    body = {"launchId": "L-env", "sessionId": "s-env", "room_url": ROOM, "attempt": 1}
    bot = cold_bot(rig, body, **env)
    assert bot.wait(20) == 2
    (error,) = wait_for(lambda: rig.messages("Cold bot cannot start"), what="the error exported")
    assert named in error["message"] and "SECRET" not in error["message"]
    assert error["level"] == "ERROR"


# -- the fault drill (BOT_FAULT_MESSAGE) ----------------------------------------------------------
# Through the whole platform: the join and the admin message go through the gateway, as in the demo.

def exported(platform: Platform, message: str) -> list[dict[str, Any]]:
    return [r for r in platform.records() if r["message"] == message]


def drilled(platform: Platform, launch_id: str, session_id: str) -> None:
    """The drill failed `launch_id` the way a defect would: DEBUG first, then the task's ERROR, status failed."""
    record = platform.wait_status(launch_id, "failed", timeout=10)
    assert record["reason"] == "bot admin failed: FaultDrillError", record
    (error,) = wait_for(lambda: exported(platform, "Bot admin failed"), what="the failure exported")
    assert error["level"] == "ERROR" and error["service"] == "bot-runner"
    assert error["attrs"]["exception.type"] == "FaultDrillError"
    assert "BOT_FAULT_MESSAGE" in error["attrs"]["exception.message"]
    assert (error["attrs"]["session.id"], error["attrs"]["bot.launch_id"]) == (session_id, launch_id)
    (debug,) = exported(platform, "Fault drill message received; failing the session")
    assert debug["level"] == "DEBUG" and debug["attrs"]["session.id"] == session_id
    assert debug["time"] <= error["time"]


def test_the_fault_drill_message_fails_its_warm_session_and_the_next_launch_runs_normally(platform):
    url = platform.start_runner(BOT_FAULT_MESSAGE=DRILL)
    platform.start_operator()
    platform.start_gateway(BOT_ADMIN_TOKEN=DRILL_TOKEN)
    room, other_room = f"{ROOM}-drill", f"{ROOM}-after-drill"
    failing = platform.join(room_url=room, sessionId="s-drill").json()["launchId"]
    platform.wait_running(room)
    admin(platform, failing, DRILL)
    drilled(platform, failing, "s-drill")
    assert platform.lock(room) is None
    # the runner survived it: back in the pool, its next session handles messages as usual
    wait_for(lambda: platform.redis.lrange(platform.keys.standby_pool, 0, -1) == [url], what="runner back in the pool")
    after = platform.join(room_url=other_room, sessionId="s-after-drill").json()["launchId"]
    assert platform.wait_running(other_room)["type"] == "warm"
    admin(platform, after, "not the drill phrase")
    wait_for(lambda: exported(platform, "bot heard: not the drill phrase"), what="the ordinary message heard")
    assert platform.record(after)["status"] == "running"
    assert not exported(platform, f"bot heard: {DRILL}")  # never reached the pipeline
    assert len(exported(platform, "Bot admin failed")) == 1


def test_without_the_drill_its_phrase_is_an_ordinary_message(platform):
    platform.start_runner()
    platform.start_operator()
    platform.start_gateway(BOT_ADMIN_TOKEN=DRILL_TOKEN)
    launch = platform.join(room_url=ROOM, sessionId="s-no-drill").json()["launchId"]
    platform.wait_running(ROOM)
    admin(platform, launch, DRILL)
    wait_for(lambda: exported(platform, f"bot heard: {DRILL}"), what="the phrase heard")
    assert platform.record(launch)["status"] == "running"
    assert not exported(platform, "Bot admin failed")
    assert not exported(platform, "Fault drill message received; failing the session")


def test_the_fault_drill_fails_a_cold_bot_too(platform):
    """No warm runner: the operator starts a cold bot, whose environment (and so the drill) is the operator's."""
    platform.start_operator(BOT_FAULT_MESSAGE=DRILL)
    platform.start_gateway(BOT_ADMIN_TOKEN=DRILL_TOKEN)
    launch = platform.join(room_url=ROOM, sessionId="s-cold-drill").json()["launchId"]
    assert platform.wait_running(ROOM)["type"] == "cold"
    admin(platform, launch, DRILL)
    drilled(platform, launch, "s-cold-drill")
    assert not exported(platform, f"bot heard: {DRILL}")
    wait_for(lambda: not platform.cold_bots(), what="the cold bot to exit")


def test_the_operator_never_reuses_a_runner_connection_the_runner_may_be_closing(platform):
    """The operator's client drops an idle connection (`CLIENT_KEEPALIVE_S`) while the runner still keeps it
    open: a `/start` is never sent on a connection the runner closes at that moment (a ReadError, a launch
    sent to the next runner or cold)."""
    from bot.http import CLIENT_KEEPALIVE_S
    from bot.operator import runner_limits

    url = platform.start_runner()

    def local_port(reply: httpx.Response) -> int:
        return int(reply.extensions["network_stream"].get_extra_info("client_addr")[1])

    with httpx.Client(limits=runner_limits(Settings())) as client:
        first = local_port(client.get(f"{url}/health"))
        assert local_port(client.get(f"{url}/health")) == first  # an idle connection is reused at once
        time.sleep(CLIENT_KEEPALIVE_S + 0.5)
        assert local_port(client.get(f"{url}/health")) != first  # and dropped once idle that long
    # while the runner keeps an idle connection open longer than that
    raw = http.client.HTTPConnection(urlsplit(url).hostname, urlsplit(url).port, timeout=5)
    try:
        ports = []
        for pause in (0, CLIENT_KEEPALIVE_S + 1.5):
            time.sleep(pause)
            raw.request("GET", "/health")  # on a connection the runner closed, this raises RemoteDisconnected
            assert raw.getresponse().read() == b'{"status":"ok"}'
            ports.append(raw.sock.getsockname()[1])
        assert ports[0] == ports[1]  # the same connection: it stayed open
    finally:
        raw.close()
