"""The bot platform on a three-master Redis Cluster: the services started as the README starts them
(`python -m bot.gateway` ...) with `REDIS_URL=redis+cluster://...`, and the debug grants on the same Cluster
through the `otel-session debug` CLI, honoured by a runner."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from bot.demo.harness import ROOT
from bot.gateway import create_app
from bot.keys import Keys
from bot.settings import Settings
from otel_session.live import urls
from tests.helpers.bot_platform import Platform
from tests.helpers.redis_topologies import Cluster, free_port
from tests.helpers.support import wait_for

pytestmark = [pytest.mark.bot, pytest.mark.latest_only]  # and the folder's (tests/conftest.py)
ROOM = "https://rooms.example.test/cluster"


@pytest.fixture(scope="module")
def cluster():
    with Cluster(masters=3) as running:
        yield running


@pytest.fixture
def on_cluster(cluster, tmp_path):
    deployment = Platform(tmp_path, redis_url=cluster.url)
    yield deployment
    deployment.cleanup()


def _leave(platform: Platform, launch_id: str) -> dict:
    reply = httpx.post(f"{platform.gateway_url}/leave", json={"launchId": launch_id}, timeout=15)
    assert reply.status_code == 200, reply.text
    return reply.json()


def _bots_once(platform: Platform, settled) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """launch id -> bots running for it, once `settled(bots)` holds."""
    return dict(wait_for(lambda: (bots := platform.bots()) and settled(bots) and bots, 20, what="the bots"))


def test_joins_and_leaves_run_exactly_one_bot_each(on_cluster, cluster):
    platform = on_cluster
    platform.start_runner(slots=3)
    platform.start_operator()
    platform.start_gateway()
    rooms = [f"{ROOM}/{i}" for i in range(3)]
    launches = []
    for room in rooms:
        reply = platform.join(room_url=room, sessionId=f"s-{room[-1]}")
        assert reply.status_code == 202, reply.text
        launches.append(reply.json()["launchId"])
    assert platform.join(room_url=rooms[0]).status_code == 409  # a room has one bot
    for room in rooms:
        platform.wait_running(room)
    assert _bots_once(platform, lambda b: len(b) == 3) == dict.fromkeys(launches, 1)

    # every key of the platform carries the {bot} tag: all on the one master that serves it
    keys = [k for k in platform.redis.scan_iter(match=f"{platform.prefix}*") if "otel_session:" not in k]
    assert len(keys) >= 9 and all(k.startswith(platform.keys.tag) for k in keys)  # 3 locks, keepalives, records…
    assert {cluster.owner(key) for key in keys} == {cluster.owner("{bot}")}

    assert _leave(platform, launches[0])["status"] == "ended"
    wait_for(lambda: platform.lock(rooms[0]) is None, what="the room's lock freed")
    assert _bots_once(platform, lambda b: launches[0] not in b) == dict.fromkeys(launches[1:], 1)

    again = platform.join(room_url=rooms[0], sessionId="s-again")  # the room is free again
    assert again.status_code == 202, again.text
    platform.wait_running(rooms[0])
    expected = {again.json()["launchId"]: 1, **dict.fromkeys(launches[1:], 1)}
    assert _bots_once(platform, lambda b: len(b) == 3) == expected
    for launch in [again.json()["launchId"], *launches[1:]]:
        assert _leave(platform, launch)["status"] == "ended"
    wait_for(lambda: not platform.bots(), what="every bot gone")
    statuses = {launch: platform.record(launch)["status"] for launch in launches}
    assert statuses == dict.fromkeys(launches, "ended")


def _debug(platform: Platform, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "BOT_", "REDIS_URL"))}
    env.update(OTEL_SESSION_REDIS_URL=platform.redis_url, OTEL_SESSION_REDIS_PREFIX=platform.prefix)
    done = subprocess.run([sys.executable, "-m", "otel_session", "debug", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done


def test_debug_grants_on_the_cluster_reach_a_running_bot(on_cluster, cluster):
    platform = on_cluster
    platform.start_runner(level="INFO")
    platform.start_operator(GLOBAL_LOG_LEVEL="INFO")
    platform.start_gateway()
    launch = platform.join(room_url=ROOM, sessionId="s-granted", userId="u-1").json()["launchId"]
    platform.wait_status(launch, "running")

    def debug_records() -> list:
        return [r for r in platform.records() if r["level"] == "DEBUG" and r["service"] == "bot-runner"
                and r["attrs"].get("bot.launch_id") == launch]

    assert not debug_records()
    _debug(platform, "on", "--session", "s-granted", "--for", "2m", "--reason", "cluster check", "--by", "ops")
    (grant,) = [json.loads(line) for line in _debug(platform, "list", "--json").stdout.splitlines()]
    assert (grant["session_id"], grant["reason"], grant["by"]) == ("s-granted", "cluster check", "ops")
    # the grants' keys share one slot, so each of its scripts is one atomic step on the Cluster
    grant_keys = list(platform.redis.scan_iter(match=f"{platform.prefix}otel_session:*"))
    assert len({cluster.owner(key) for key in grant_keys}) == 1 and len(grant_keys) >= 3

    wait_for(debug_records, 15, what="the running bot's DEBUG records")  # the runner honours it
    entries = wait_for(lambda: [e for e in _audit(platform) if e["event"] == "used"], 15, what="its use audited")
    assert {(e["grant_id"], e["service"]) for e in entries} == {(grant["id"], "bot-runner")}

    _debug(platform, "off", "--session", "s-granted", "--by", "ops")
    assert _debug(platform, "list", "--json").stdout == ""
    events = [(e["event"], e["grant_id"]) for e in _audit(platform) if e["event"] != "used"]
    assert events == [("created", grant["id"]), ("revoked", grant["id"])]
    assert platform.bots() == {launch: 1}


def _audit(platform: Platform) -> list[dict]:
    return [json.loads(line) for line in _debug(platform, "audit", "--json").stdout.splitlines()]


# -- the gateway's answers on a Cluster (in this process: the test reaches into its client) ------------------


@contextlib.contextmanager
def in_thread(settings: Settings, keys: Keys) -> Iterator[tuple[Any, asyncio.AbstractEventLoop, str]]:
    """The gateway app served by uvicorn in a thread of this process, on `REDIS_URL`."""
    app = create_app(settings=settings, keys=keys, telemetry=False)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(server.serve(),), daemon=True)
    thread.start()
    wait_for(lambda: server.started, what="the gateway in a thread")
    try:
        yield app, loop, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        loop.close()


def _on(loop: asyncio.AbstractEventLoop, call):  # type: ignore[no-untyped-def]
    """`call()` run on the gateway's loop (its client is not thread-safe)."""
    async def run():  # type: ignore[no-untyped-def]
        return call()

    return asyncio.run_coroutine_threadsafe(run(), loop).result(5)


def test_a_full_cluster_pool_is_429_not_503(cluster, monkeypatch):
    monkeypatch.setenv("REDIS_URL", cluster.url)
    keys = Keys(f"test-{os.urandom(5).hex()}:")
    try:
        with in_thread(Settings(redis_pool_size=1), keys) as (app, loop, url):
            node = app.state.redis.get_node_from_key(keys.launch_queue)  # the {bot} master: one connection at most
            held = _on(loop, node.acquire_connection)
            try:
                refused = httpx.post(f"{url}/join", json={"room_url": ROOM}, timeout=10)
                assert refused.status_code == 429 and refused.headers["retry-after"] == "1", refused.text
                assert httpx.get(f"{url}/ready", timeout=10).status_code == 200  # the Cluster answers: only busy
            finally:
                _on(loop, lambda: node.release(held))
            assert httpx.post(f"{url}/join", json={"room_url": ROOM}, timeout=10).status_code == 202
    finally:
        client = urls.client(cluster.url, decode_responses=True)
        for key in client.scan_iter(match=f"{keys.prefix}*"):
            client.delete(key)
        client.close()


def test_an_unreachable_cluster_is_503_not_a_defect(monkeypatch):
    monkeypatch.setenv("REDIS_URL", f"redis+cluster://127.0.0.1:{free_port()}/")
    with in_thread(Settings(), Keys("test-nowhere:")) as (_, _loop, url):
        refused = httpx.post(f"{url}/join", json={"room_url": ROOM}, timeout=10)
        assert refused.status_code == 503 and "unavailable" in refused.json()["detail"], refused.text
        assert httpx.get(f"{url}/launches/{os.urandom(16).hex()}", timeout=10).status_code == 503
        assert httpx.get(f"{url}/ready", timeout=10).status_code == 503
