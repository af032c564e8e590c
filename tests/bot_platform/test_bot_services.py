"""Single-service behaviour: the runner's HTTP API, admin messages, Redis going away.

The gateway's validation, limits and endpoints on their own: tests/bot_platform/test_bot_gateway.py.
"""

from __future__ import annotations

import shutil
import subprocess

import httpx
import pytest

from tests.helpers.bot_platform import Platform
from tests.helpers.support import free_port, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.processes]  # and the folder's (tests/conftest.py)
ROOM = "https://rooms.example.test/api"


# The runner's own API (`/start` fencing, 409 for a running launch, 422 without echo, local leave,
# keepalive, drain, the cold job) is tested in tests/bot_platform/test_bot_runner.py.


def test_admin_messages_are_logged_in_the_bots_session(tmp_path):
    """The gateway queues an admin message for the launch in the room; its bot logs it in the caller's session."""
    platform = Platform(tmp_path, BOT_ADMIN_TOKEN="admin-token")
    auth = {"authorization": "Bearer admin-token"}
    try:
        platform.start_runner()
        platform.start_operator()
        platform.start_gateway()
        gateway = platform.gateway_url
        launch = platform.join(room_url=ROOM, sessionId="sess-admin", userId="u-a").json()["launchId"]
        platform.wait_running(ROOM)
        reply = httpx.post(f"{gateway}/admin", json={"room_url": ROOM, "message": "please wrap up"}, headers=auth)
        assert reply.status_code == 202 and reply.json()["launchId"] == launch
        assert httpx.post(f"{gateway}/admin", json={"room_url": ROOM}, headers=auth).status_code == 422
        platform.redis.rpush(platform.keys.admin_queue(launch), "garbage")

        def heard():
            return [r for r in platform.records() if r["message"] == "Admin message received: please wrap up"]

        (record,) = wait_for(heard, what="admin message logged")
        assert record["service"] == "bot-runner" and record["attrs"]["session.id"] == "sess-admin"
        assert record["attrs"]["bot.launch_id"] == launch
        assert wait_for(lambda: [r for r in platform.records() if "Malformed admin message" in (r["message"] or "")])
        left = httpx.post(f"{gateway}/leave", json={"launchId": launch}, timeout=30).json()
        assert left == {"launchId": launch, "status": "ended"}
        assert platform.record(launch)["reason"] != "left; the bot did not confirm"  # the bot itself left
        assert not platform.redis.exists(platform.keys.admin_queue(launch))  # cleared with the session
    finally:
        platform.cleanup()


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
        assert httpx.get(f"{platform.gateway_url}/ready", timeout=5).status_code == 503
        assert httpx.get(f"{platform.gateway_url}/health", timeout=5).json() == {"status": "ok"}
        wait_for(lambda: "Redis unavailable" in platform.text_of(operator), what="operator backing off")
        assert operator.popen.poll() is None
        start()
        wait_for(lambda: httpx.get(f"{platform.gateway_url}/ready", timeout=5).status_code == 200, what="ready")
        lock = platform.wait_running(ROOM, timeout=30)  # the job queued before the outage
        assert lock["launch_id"] == queued.json()["launchId"], lock
        assert lock["type"] == "warm"  # the runner's stale connection was retried, not dropped from the pool
        assert [s["launchId"] for s in platform.sessions(runner)] == [queued.json()["launchId"]]
        assert platform.lock(f"{ROOM}-2") is None  # the refused join left no lock
    finally:
        platform.cleanup()
