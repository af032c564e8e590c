"""Single-service behaviour: validation, the runner's HTTP API, admin messages, Redis going away."""

from __future__ import annotations

import shutil
import subprocess
import time

import httpx
import pytest

from tests.bot_platform import Platform
from tests.support import free_port, wait_for

ROOM = "https://rooms.example.test/api"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "room_url"),
        ({"room_url": "ftp://files.example.test/x"}, "room_url"),
        ({"room_url": "not a url"}, "room_url"),
        ({"room_url": ROOM, "sessionId": "bad id!"}, "sessionId"),
        ({"room_url": ROOM, "userId": "x" * 200}, "userId"),
        ({"room_url": ROOM, "userName": "line\nbreak"}, "userName"),
    ],
)
def test_invalid_joins_get_422_naming_the_field(platform, body, field):
    platform.start_gateway()
    reply = platform.join(**body)
    assert reply.status_code == 422
    assert any(field in error["loc"] for error in reply.json()["detail"])
    assert platform.lock(ROOM) is None


def test_a_body_that_is_not_json_gets_422(platform):
    url = platform.start_gateway()
    reply = httpx.post(f"{url}/join", content=b"{not json", headers={"content-type": "application/json"})
    assert reply.status_code == 422


def test_runner_start_generates_a_missing_session_id_refuses_a_running_launch_and_leaves(platform):
    runner = platform.start_runner()
    platform.redis.set(platform.key(f"room_active:{ROOM}"), '{"status":"pending","session_id":"x","launch_id":"L-1"}')
    first = httpx.post(f"{runner}/start", json={"room_url": ROOM, "launchId": "L-1"}, timeout=10)
    assert first.status_code == 200
    generated = first.json()["sessionId"]
    assert len(generated) == 32 and first.json()["launchId"] == "L-1" and first.json()["pid"] > 0
    again = httpx.post(f"{runner}/start", json={"room_url": ROOM, "launchId": "L-1", "sessionId": "s"}, timeout=10)
    assert again.status_code == 409
    bad = httpx.post(f"{runner}/start", json={"room_url": ROOM, "sessionId": "no spaces!"}, timeout=10)
    assert bad.status_code == 422
    assert httpx.post(f"{runner}/sessions/nope/leave", timeout=10).status_code == 404
    started = time.monotonic()
    left = httpx.post(f"{runner}/sessions/L-1/leave", timeout=10).json()
    assert left["status"] == "terminated" and time.monotonic() - started < 5
    assert httpx.post(f"{runner}/sessions/L-1/leave", timeout=10).json()["status"] == "already-finished"
    platform.stop_all()
    warnings = [r for r in platform.records() if "without a session id" in (r["message"] or "")]
    assert len(warnings) == 1 and generated in warnings[0]["message"]


def test_admin_messages_are_logged_in_the_bots_session(platform):
    runner = platform.start_runner()
    platform.start_operator()
    gateway = platform.start_gateway()
    launch = platform.join(room_url=ROOM, sessionId="sess-admin", userId="u-a").json()["launchId"]
    platform.wait_running(ROOM)
    assert httpx.post(f"{gateway}/admin", json={"room_url": ROOM, "message": "please wrap up"}).status_code == 202
    assert httpx.post(f"{gateway}/admin", json={"room_url": ROOM}).status_code == 422
    platform.redis.rpush(platform.key(f"admin:queue:{ROOM}"), "garbage")

    def heard():
        return [r for r in platform.records() if r["message"] == "Admin message received: please wrap up"]

    (record,) = wait_for(heard, what="admin message logged")
    assert record["service"] == "bot-runner" and record["attrs"]["session.id"] == "sess-admin"
    assert record["attrs"]["bot.launch_id"] == launch
    assert wait_for(lambda: [r for r in platform.records() if "Malformed admin message" in (r["message"] or "")])
    httpx.post(f"{runner}/sessions/{launch}/leave", timeout=10)


@pytest.fixture
def own_redis(tmp_path):
    """A Redis this test may stop and restart (append-only file, so the queue survives a restart)."""
    server = shutil.which("redis-server")
    assert server, "redis-server is needed (make test installs it)"
    port, data = free_port(), tmp_path / "redis"
    data.mkdir()

    def start():
        subprocess.run([server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data), "--save", "",
                        "--appendonly", "yes", "--appendfsync", "always", "--daemonize", "yes",
                        "--logfile", str(data / "log")], check=True)
        wait_for(lambda: subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout
                 == b"PONG\n", what="own redis up")

    def stop():
        subprocess.run(["redis-cli", "-p", str(port), "shutdown"], capture_output=True)
        wait_for(lambda: subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).returncode != 0,
                 what="own redis down")

    start()
    yield f"redis://127.0.0.1:{port}/0", start, stop
    stop()


def test_redis_going_away_gives_503_and_loses_no_queued_job(tmp_path, own_redis):
    url, start, stop = own_redis
    platform = Platform(tmp_path, redis_url=url)
    try:
        runner = platform.start_runner()
        platform.start_gateway()
        queued = platform.join(room_url=ROOM, sessionId="sess-before-outage")
        assert queued.status_code == 202
        stop()
        operator = platform.start_operator()  # starts while Redis is down: waits, does not crash
        refused = platform.join(room_url=f"{ROOM}-2", sessionId="sess-during-outage")
        assert refused.status_code == 503 and "unavailable" in refused.json()["detail"]
        wait_for(lambda: "Redis unavailable" in platform.text_of(operator), what="operator backing off")
        assert operator.popen.poll() is None
        start()
        lock = platform.wait_running(ROOM, timeout=30)  # the job queued before the outage
        assert lock["launch_id"] == queued.json()["launchId"]
        assert [s["launchId"] for s in platform.sessions(runner)] == [queued.json()["launchId"]]
        assert platform.lock(f"{ROOM}-2") is None  # the refused join left no lock
    finally:
        platform.cleanup()
