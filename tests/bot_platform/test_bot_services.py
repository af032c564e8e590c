"""Single-service behaviour: the runner's HTTP API, admin messages, Redis going away.

The gateway's validation, limits and endpoints on their own: tests/bot_platform/test_bot_gateway.py.
"""

from __future__ import annotations

import shutil
import subprocess

import httpx
import pytest

from bot.service import log_level
from tests.helpers.bot_platform import Platform
from tests.helpers.support import free_port, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.processes, pytest.mark.manifold]  # and the folder's (tests/conftest.py)
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


def test_every_service_logs_under_its_modules_name_when_started_with_python_m(tmp_path):
    """`python -m bot.gateway` runs the file as `__main__`; its records must still say `bot.gateway`.

    Also: `GLOBAL_LOG_LEVEL=DEBUG` on a service exports its DEBUG records (the services pass it to configure).
    """
    platform = Platform(tmp_path)
    try:
        platform.start_manifold()
        platform.start_runner(slots=1)  # one slot: the second join finds the pool dry and gets a cold bot
        platform.start_operator()
        platform.start_gateway(GLOBAL_LOG_LEVEL="DEBUG")
        launches = [platform.join(room_url=f"{ROOM}-{n}", sessionId=f"s-names-{n}").json()["launchId"]
                    for n in (1, 2)]
        kinds = {platform.wait_status(launch, "running")["type"] for launch in launches}
        assert kinds == {"warm", "cold"}
        broken = platform.start("cold", ["-m", "bot.runner", "--job"])  # no BOT_* job: it logs why and exits 2
        assert broken.popen.wait(30) == 2
        for launch in launches:
            httpx.post(f"{platform.gateway_url}/leave", json={"launchId": launch}, timeout=30)
        platform.stop_all()  # every service flushes its records
        records = platform.records()

        def scope_of(service: str, text: str) -> set[str]:
            found = {r["scope"] for r in records if r["service"] == service and text in (r["message"] or "")}
            assert found, (service, text)
            return found

        assert scope_of("bot-gateway", "Launch queued for room") == {"bot.gateway"}
        assert scope_of("bot-gateway", "Join details") == {"bot.gateway"}  # DEBUG, from GLOBAL_LOG_LEVEL
        assert scope_of("bot-operator", "Operator started as") == {"bot.operator"}
        assert scope_of("bot-runner", "waiting in the standby pool") == {"bot.runner.app"}
        assert scope_of("bot-runner", "Bot session started") == {"bot.runner.session"}  # warm and cold
        assert scope_of("bot-runner", "Cold bot cannot start") == {"bot.runner.cold"}
        assert scope_of("manifold", "Serving ") == {"manifold.serve"}
        assert not [r for r in records if r["scope"] == "__main__"]
    finally:
        platform.cleanup()


def test_uvicorn_factory_serves_the_gateway_and_the_runner(tmp_path):
    """`uvicorn --factory bot.gateway:create_app` (and the runner's app) serve for real, no arguments needed."""
    platform = Platform(tmp_path)
    try:
        port, runner_port = free_port(), free_port()
        gateway, runner = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{runner_port}"
        platform.start("gateway", ["-m", "uvicorn", "--factory", "bot.gateway:create_app", "--port", str(port)],
                       f"{gateway}/health")
        platform.start("runner", ["-m", "uvicorn", "--factory", "bot.runner.app:create_app", "--port",
                                  str(runner_port)], f"{runner}/health", RUNNER_URL=runner)
        assert httpx.get(f"{gateway}/ready", timeout=5).json() == {"status": "ready"}
        reply = httpx.post(f"{gateway}/join", json={"room_url": ROOM, "sessionId": "s-factory"}, timeout=10)
        assert reply.status_code == 202 and reply.json()["sessionId"] == "s-factory"
        assert platform.record(reply.json()["launchId"])["status"] == "queued"
        assert httpx.get(f"{runner}/ready", timeout=5).json() == {"status": "ready", "busy": 0, "slots": 1}
        assert platform.redis.lrange(platform.keys.standby_pool, 0, -1) == [runner]  # RUNNER_URL: in the pool
        platform.stop_all()
        assert platform.redis.lrange(platform.keys.standby_pool, 0, -1) == []  # and out of it on shutdown
    finally:
        platform.cleanup()


def test_global_log_level_is_the_services_level_knob():
    assert log_level({"GLOBAL_LOG_LEVEL": " debug "}) == "debug"
    assert log_level({"GLOBAL_LOG_LEVEL": ""}) is None and log_level({}) is None
    with pytest.raises(ValueError, match="GLOBAL_LOG_LEVEL='loud'"):
        log_level({"GLOBAL_LOG_LEVEL": "loud"})
