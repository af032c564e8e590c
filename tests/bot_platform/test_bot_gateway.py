"""The gateway on its own: a real process (or a uvicorn server in a thread) against the real Redis.

The bot's side of a launch (claim, take, release) is played by the test through `Launches`, so these
tests need no operator and no runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from bot import rooms
from bot.gateway import LEFT_UNCONFIRMED, create_app
from bot.keys import Keys
from bot.launches import Launches
from bot.settings import Settings
from tests.helpers.bot_platform import Platform, claim_as_operator, clear_keys
from tests.helpers.support import free_port, served_in_thread, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.processes]  # and the folder's (tests/conftest.py)
ADMIN_TOKEN = "admin-secret-token"
KNOBS = {"BOT_ADMIN_TOKEN": ADMIN_TOKEN, "BOT_MAX_ADMIN_MESSAGES": "3", "BOT_MAX_SESSION_S": "60",
         "BOT_LEAVE_WAIT_S": "0.5"}
AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}


def _room() -> str:
    return f"https://rooms.example.test/{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def gw(tmp_path_factory) -> Iterator[Platform]:
    """One gateway for the tests that share its knobs; each test uses rooms of its own."""
    platform = Platform(tmp_path_factory.mktemp("gateway"), **KNOBS)
    platform.start_gateway()
    yield platform
    platform.cleanup()


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Iterator[Platform]:
    """A gateway with a one-launch queue and no admin token."""
    platform = Platform(tmp_path_factory.mktemp("small"), BOT_MAX_QUEUE="1")
    platform.start_gateway()
    yield platform
    platform.cleanup()


def post(platform: Platform, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{platform.gateway_url}{path}", json=body, timeout=30, **kwargs)


def get(platform: Platform, path: str) -> httpx.Response:
    return httpx.get(f"{platform.gateway_url}{path}", timeout=10)


def core(platform: Platform, step: Any) -> Any:
    """Run `step(launches, redis)` against the deployment's keys, with the gateway's own knobs."""

    async def main() -> Any:
        r = aioredis.Redis.from_url(platform.redis_url, decode_responses=True)
        try:
            return await step(Launches(r, platform.keys, Settings.from_env(platform.base_env)), r)
        finally:
            await r.aclose()

    return asyncio.run(main())


async def run_bot(launches: Launches, launch_id: str) -> tuple[int, str]:
    """What the operator and a runner do for a launch, in one go: claim it, take the lock. (attempt, room)"""
    attempt, rec = await claim_as_operator(launches, launch_id)
    assert await launches.take(launch_id, attempt, rec["room"], "test-runner", "warm", "{}") == "ok"
    return attempt, rec["room"]


def queued_job(platform: Platform, launch_id: str) -> dict[str, Any]:
    jobs = [json.loads(raw) for raw in platform.redis.lrange(platform.keys.launch_queue, 0, -1)]
    (job,) = [job for job in jobs if job["launchId"] == launch_id]
    return job


# -- /join ----------------------------------------------------------------------------------------


def test_one_room_spelled_four_ways_gets_one_launch(gw):
    path = uuid.uuid4().hex[:12]
    spellings = [f"HTTPS://Rooms.Example.Test/{path}", f"https://rooms.example.test:443/{path}",
                 f"https://rooms.example.test/{path}#fragment", f"https://rooms.example.test/{path}"]
    replies = [gw.join(room_url=url) for url in spellings]
    assert sorted(r.status_code for r in replies) == [202, 409, 409, 409]
    (accepted,) = [r.json() for r in replies if r.status_code == 202]
    assert gw.lock(spellings[3])["launch_id"] == accepted["launchId"]
    assert queued_job(gw, accepted["launchId"])["room_url"] == f"https://rooms.example.test/{path}"


def test_a_join_is_queued_inside_its_own_trace_and_session(gw):
    client_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    reply = gw.join(room_url=_room(), sessionId="sess-trace", userId="u-1", token="room-token",
                    headers={"traceparent": f"00-{client_trace}-00f067aa0ba902b7-01", "baggage": "session.id=evil"})
    assert reply.status_code == 202
    body = reply.json()
    assert body["status"] == "queued" and body["sessionId"] == "sess-trace" and body["traceId"] != client_trace
    job = queued_job(gw, body["launchId"])
    assert job["token"] == "room-token" and job["userId"] == "u-1" and job["created_ts"] > 0
    assert job["otel"]["traceparent"].split("-")[1] == body["traceId"]  # the gateway's span is the root
    assert "session.id=sess-trace" in job["otel"]["baggage"] and f"bot.launch_id={body['launchId']}" in \
        job["otel"]["baggage"] and "evil" not in job["otel"]["baggage"]
    (queued,) = wait_for(lambda: [r for r in gw.records() if r["message"] and r["message"].startswith(
        "Launch queued") and r["attrs"].get("bot.launch_id") == body["launchId"]], what="the join's log record")
    assert queued["attrs"]["session.id"] == "sess-trace" and queued["trace_id"] == body["traceId"]


def test_a_missing_session_id_is_generated_and_returned(gw):
    body = gw.join(room_url=_room()).json()
    assert len(body["sessionId"]) == 32 and queued_job(gw, body["launchId"])["sessionId"] == body["sessionId"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "room_url"),
        ({"room_url": "ftp://files.example.test/x"}, "room_url"),
        ({"room_url": "not a url"}, "room_url"),
        ({"room_url": "https://rooms.example.test/x\n"}, "room_url"),
        ({"room_url": "https://rooms.example.test/\tx"}, "room_url"),
        ({"room_url": "https://rooms.example.test/x", "session_id": "s"}, "session_id"),
        ({"room_url": "https://rooms.example.test/x", "sessionId": "bad id!"}, "sessionId"),
        ({"room_url": "https://rooms.example.test/x", "userId": "x" * 200}, "userId"),
        ({"room_url": "https://rooms.example.test/x", "userName": "line\nbreak"}, "userName"),
        ({"room_url": "https://rooms.example.test/x", "token": "t" * 5000}, "token"),
    ],
)
def test_invalid_joins_get_422_naming_the_field(gw, body, field):
    reply = gw.join(**body)
    assert reply.status_code == 422
    errors = reply.json()["detail"]
    assert any(error["loc"] == ["body", field] for error in errors), errors
    assert all(set(error) == {"loc", "msg", "type"} for error in errors)
    assert gw.lock("https://rooms.example.test/x") is None


def test_a_body_that_is_not_json_gets_422(gw):
    reply = httpx.post(f"{gw.gateway_url}/join", content=b"{not json", headers={"content-type": "application/json"})
    assert reply.status_code == 422 and reply.json()["detail"][0]["type"] == "json_invalid"


def test_no_error_response_echoes_a_secret(gw):
    secret = "tok-" + uuid.uuid4().hex
    room = _room()
    replies = [
        gw.join(room_url=room, token=secret, session_id="typo"),  # 422: unknown field beside the token
        gw.join(room_url=room, token=secret * 200),  # 422: token too long
        gw.join(room_url=f"https://user:{secret}@rooms.example.test/x\n"),  # 422: a bad URL with a password
        gw.join(room_url=f"https://rooms.example.test/x?key={secret}", token=secret, sessionId="no spaces!"),
        post(gw, "/leave", {"room_url": f"https://rooms.example.test/{secret}?k={secret}"}),  # 404
        post(gw, "/admin", {"room_url": f"https://rooms.example.test/?k={secret}", "message": secret}, headers=AUTH),
        post(gw, "/admin", {"launchId": "x", "message": secret, "extra": secret}, headers=AUTH),  # 422
        post(gw, "/admin", {"launchId": "x", "message": "m"}, headers={"authorization": f"Bearer {secret}"}),  # 401
        get(gw, f"/launches/{secret}!"),
    ]
    assert [r.status_code for r in replies] == [422, 422, 422, 422, 404, 404, 422, 401, 404]
    for reply in replies:
        assert reply.headers["content-type"] == "application/json"
        assert secret not in reply.text, reply.text


def test_bodies_beyond_the_limit_get_413(gw):
    room = _room()
    for body in ({"room_url": room, "token": "x" * 20_000_000}, {"room_url": room, "junk": "y" * 50_000_000}):
        reply = gw.join(timeout=60, **body)
        assert reply.status_code == 413 and "65536" in reply.json()["detail"]

    def chunks() -> Iterator[bytes]:
        yield json.dumps({"room_url": room, "token": ""})[:-2].encode()
        for _ in range(100):
            yield b"z" * 10_000

    reply = httpx.post(f"{gw.gateway_url}/join", content=chunks(), headers={"content-type": "application/json"},
                       timeout=30)
    assert reply.request.headers["transfer-encoding"] == "chunked" and "content-length" not in reply.request.headers
    assert reply.status_code == 413
    assert gw.lock(room) is None
    assert gw.join(room_url=room, token="t" * 4096).status_code == 202  # within every limit


# -- /launches/{id} -------------------------------------------------------------------------------


def test_a_launch_can_be_asked_for(gw):
    body = gw.join(room_url=_room(), sessionId="sess-ask").json()
    assert get(gw, f"/launches/{body['launchId']}").json() == {
        "launchId": body["launchId"], "sessionId": "sess-ask", "status": "queued"}
    assert get(gw, f"/launches/{uuid.uuid4().hex}").status_code == 404
    assert get(gw, "/launches/not%20an%20id").status_code == 404


# -- /leave ---------------------------------------------------------------------------------------


def test_leaving_a_queued_launch_ends_it_and_frees_the_room(gw):
    room = _room()
    launch_id = gw.join(room_url=room).json()["launchId"]
    assert post(gw, "/leave", {"launchId": launch_id}).json() == {"launchId": launch_id, "status": "ended"}
    assert get(gw, f"/launches/{launch_id}").json()["reason"] == "left before it started"
    assert gw.lock(room) is None
    assert gw.join(room_url=room).status_code == 202
    assert post(gw, "/leave", {"launchId": launch_id}).json()["status"] == "ended"  # again: it stays ended


def test_leaving_by_room_url_finds_the_launch_in_the_room(gw):
    path = uuid.uuid4().hex[:12]
    launch_id = gw.join(room_url=f"https://rooms.example.test/{path}").json()["launchId"]
    left = post(gw, "/leave", {"room_url": f"HTTPS://ROOMS.example.test:443/{path}#x"})
    assert left.json() == {"launchId": launch_id, "status": "ended"}
    assert post(gw, "/leave", {"room_url": f"https://rooms.example.test/{path}"}).status_code == 404
    assert post(gw, "/leave", {"launchId": uuid.uuid4().hex}).status_code == 404
    assert post(gw, "/leave", {}).status_code == 422
    assert post(gw, "/leave", {"launchId": launch_id, "room_url": "https://rooms.example.test/x"}).status_code == 422


def test_leave_waits_for_a_running_bot_to_confirm(gw):
    room = _room()
    launch_id = gw.join(room_url=room).json()["launchId"]

    async def step(launches: Launches, r: Any) -> httpx.Response:
        attempt, room_hash = await run_bot(launches, launch_id)
        leaving = asyncio.create_task(asyncio.to_thread(post, gw, "/leave", {"launchId": launch_id}))
        while not await r.exists(launches.keys.leave(launch_id)):  # the bot polls its leave flag
            await asyncio.sleep(0.02)
        assert await launches.release(launch_id, attempt, room_hash, "ended", "left")
        return await leaving

    assert core(gw, step).json() == {"launchId": launch_id, "status": "ended"}
    assert get(gw, f"/launches/{launch_id}").json()["reason"] == "left"  # the bot's word, not a forced end
    assert gw.join(room_url=room).status_code == 202


def test_leave_frees_the_room_of_a_bot_that_never_confirms(gw):
    room = _room()
    launch_id = gw.join(room_url=room).json()["launchId"]
    attempt, room_hash = core(gw, lambda launches, r: run_bot(launches, launch_id))
    started = time.monotonic()
    assert post(gw, "/leave", {"launchId": launch_id}).json() == {"launchId": launch_id, "status": "ended"}
    assert time.monotonic() - started < 3  # BOT_LEAVE_WAIT_S=0.5, three keepalives of 0.3 s
    assert get(gw, f"/launches/{launch_id}").json()["reason"] == LEFT_UNCONFIRMED
    assert gw.lock(room) is None
    # the silent bot's next keepalive fails: it fences itself
    assert not core(gw, lambda launches, r: launches.keepalive(launch_id, attempt, room_hash, "{}", cold=False))
    assert gw.join(room_url=room).status_code == 202


# -- /admin ---------------------------------------------------------------------------------------


def test_admin_needs_the_token(gw, small):
    launch_id = gw.join(room_url=_room()).json()["launchId"]
    body = {"launchId": launch_id, "message": "hello"}
    assert post(small, "/admin", body, headers=AUTH).status_code == 403  # no token configured there
    assert post(gw, "/admin", body).status_code == 401
    assert post(gw, "/admin", body, headers={"authorization": "Bearer wrong"}).status_code == 401
    assert post(gw, "/admin", body, headers={"authorization": f"Basic {ADMIN_TOKEN}"}).status_code == 401
    assert post(gw, "/admin", {"nonsense": 1}, headers={"authorization": "Bearer wrong"}).status_code == 401
    assert not gw.redis.exists(gw.keys.admin_queue(launch_id))
    reply = post(gw, "/admin", body, headers=AUTH)
    assert reply.status_code == 202 and reply.json() == {"status": "queued", "launchId": launch_id}
    (raw,) = gw.redis.lrange(gw.keys.admin_queue(launch_id), 0, -1)
    message = json.loads(raw)
    assert message["type"] == "admin_message" and message["message"] == "hello" and "traceparent" in message["otel"]
    assert 0 < gw.redis.pttl(gw.keys.admin_queue(launch_id)) <= 60_000  # BOT_MAX_SESSION_S
    assert post(gw, "/admin", {"launchId": launch_id}, headers=AUTH).status_code == 422
    assert post(gw, "/admin", {"room_url": _room(), "message": "m"}, headers=AUTH).status_code == 404
    assert post(gw, "/admin", {"launchId": uuid.uuid4().hex, "message": "m"}, headers=AUTH).status_code == 404


def test_admin_messages_are_keyed_by_launch_and_cleared_when_it_ends(gw):
    room = _room()
    first = gw.join(room_url=room).json()["launchId"]
    attempt, room_hash = core(gw, lambda launches, r: run_bot(launches, first))
    assert post(gw, "/admin", {"room_url": room, "message": "for the first"}, headers=AUTH).json()["launchId"] == first
    assert core(gw, lambda launches, r: launches.release(first, attempt, room_hash, "ended"))
    assert not gw.redis.exists(gw.keys.admin_queue(first))
    assert post(gw, "/admin", {"launchId": first, "message": "too late"}, headers=AUTH).status_code == 409
    second = gw.join(room_url=room).json()["launchId"]
    assert post(gw, "/admin", {"room_url": room, "message": "for the second"}, headers=AUTH).json()["launchId"] \
        == second
    assert [json.loads(m)["message"] for m in gw.redis.lrange(gw.keys.admin_queue(second), 0, -1)] == [
        "for the second"]
    assert not gw.redis.exists(gw.keys.admin_queue(first))
    post(gw, "/leave", {"launchId": second})  # ended before it started: its messages go with it
    assert not gw.redis.exists(gw.keys.admin_queue(second))


def test_admin_messages_per_launch_are_capped(gw):
    launch_id = gw.join(room_url=_room()).json()["launchId"]
    codes = [post(gw, "/admin", {"launchId": launch_id, "message": f"m{i}"}, headers=AUTH).status_code
             for i in range(3)]
    assert codes == [202, 202, 202]
    refused = post(gw, "/admin", {"launchId": launch_id, "message": "one too many"}, headers=AUTH)
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
    assert gw.redis.llen(gw.keys.admin_queue(launch_id)) == 3


def test_logs_show_neither_the_admin_message_nor_a_raw_room_url(gw):
    secret = uuid.uuid4().hex
    room = f"https://user:{secret}@rooms.example.test/{uuid.uuid4().hex[:8]}?token={secret}"
    launch_id = gw.join(room_url=room).json()["launchId"]
    assert gw.join(room_url=room).status_code == 409
    text = f"private words {uuid.uuid4().hex}"
    assert post(gw, "/admin", {"room_url": room, "message": text}, headers=AUTH).status_code == 202
    wait_for(lambda: [r for r in gw.records() if r["message"] == f"Admin message ({len(text)} characters) queued "
                      f"for launch {launch_id}"], what="the admin log record")
    logged = json.dumps([r["raw"] for r in gw.records()], ensure_ascii=False)
    assert f"rooms.example.test/{room.rsplit('/', 1)[1].split('?')[0]}?…" in logged  # the display form
    assert secret not in logged and text not in logged
    assert secret not in gw.redis.get(gw.keys.room_active(rooms.room_hash(rooms.canonical(room))))


# -- overload and outages --------------------------------------------------------------------------


def test_a_full_queue_gets_429_not_503(small):
    assert small.join(room_url=_room()).status_code == 202
    refused = small.join(room_url=_room())
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0


def in_thread(settings: Settings, keys: Keys) -> contextlib.AbstractContextManager[
        tuple[Any, asyncio.AbstractEventLoop, str]]:
    """The gateway app served by uvicorn in a thread: the test can reach into its Redis pool."""
    return served_in_thread(create_app(settings=settings, keys=keys, telemetry=False))


def test_an_exhausted_redis_pool_gets_429_not_503():
    keys = Keys(f"test-{uuid.uuid4().hex[:10]}:")
    settings = Settings(redis_pool_size=1, redis_pool_timeout_s=0.2)
    with in_thread(settings, keys) as (app, loop, url):
        pool = app.state.redis.connection_pool
        held = asyncio.run_coroutine_threadsafe(pool.get_connection(), loop).result(5)  # the only connection
        try:
            refused = httpx.post(f"{url}/join", json={"room_url": _room()}, timeout=10)
            assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
            assert httpx.get(f"{url}/launches/{uuid.uuid4().hex}", timeout=10).status_code == 429
            assert httpx.get(f"{url}/ready", timeout=10).status_code == 200  # Redis answers: we are only busy
        finally:
            asyncio.run_coroutine_threadsafe(pool.release(held), loop).result(5)
        assert httpx.post(f"{url}/join", json={"room_url": _room()}, timeout=10).status_code == 202
    clear_keys(keys)


def test_ready_is_503_while_redis_is_unreachable_and_health_stays_ok(tmp_path, gw):
    assert get(gw, "/ready").json() == {"status": "ready"}
    down = Platform(tmp_path, redis_url=f"redis://127.0.0.1:{free_port()}/0", BOT_PENDING_TTL_S="0.3")
    try:
        service = down.start_gateway()
        assert get(down, "/health").json() == {"status": "ok"}
        not_ready = get(down, "/ready")
        assert not_ready.status_code == 503 and int(not_ready.headers["retry-after"]) > 0
        refused = down.join(room_url=_room())
        assert refused.status_code == 503 and "unavailable" in refused.json()["detail"]
        assert int(refused.headers["retry-after"]) > 0
        wait_for(lambda: "Could not renew" in service.output(), what="the renewal warning")
        time.sleep(0.5)  # five more failed renewals: still one warning (rate-limited), and still serving
        assert service.output().count("Could not renew") == 1 and service.alive()
    finally:
        down.cleanup()


def test_a_gateway_without_telemetry_refuses_browser_logs_with_503_and_retry_after(monkeypatch):
    """The relay's one 503 (nothing to export into) says when to come back, as every 429 and 503 does."""
    from tests.bot_platform.test_bot_log_relay import js_export, js_record

    keys = Keys(f"test-{uuid.uuid4().hex[:10]}:")
    with in_thread(Settings(telemetry_key="k" * 32), keys) as (_, _loop, url):
        joined = httpx.post(f"{url}/join", json={"room_url": _room()}, timeout=10)
        assert joined.status_code == 202, joined.text
        monkeypatch.setattr("otel_session.configured", lambda: None)
        refused = httpx.post(f"{url}/v1/logs", json=js_export(js_record("no exporter here")), timeout=10,
                             headers={"authorization": f"Bearer {joined.json()['telemetryToken']}"})
        assert refused.status_code == 503 and int(refused.headers["retry-after"]) > 0
    clear_keys(keys)
