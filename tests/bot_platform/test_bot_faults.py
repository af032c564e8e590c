"""Faults against real processes and the real Redis; each ends by counting bots from the outside.

A frozen process is SIGSTOPped, a crash is SIGKILL, and a service cut off from Redis talks to it
through a TCP proxy on loopback that the test cuts. Knobs are small (`tests.helpers.bot_platform.FAST`), so
each fault shows within seconds.
"""

from __future__ import annotations

import json
import os
import signal
import time

import httpx
import pytest

from bot.rooms import canonical, room_hash
from otel_session.log_reader import read_metrics
from tests.helpers.support import TcpProxy, wait_for

ROOM = "https://rooms.example.test/faults"


def _join(platform, room: str = ROOM, **body) -> str:
    reply = platform.join(room_url=room, **body)
    assert reply.status_code == 202, reply.text
    return str(reply.json()["launchId"])


def _exactly_one_bot(platform, launch_id: str, watch_s: float = 2.0) -> None:
    """One bot for the launch now, and never two while we watch."""
    wait_for(lambda: platform.bots().get(launch_id) == 1, 30, what=f"one bot for {launch_id}")
    deadline = time.monotonic() + watch_s
    while time.monotonic() < deadline:
        counts = platform.bots()
        assert all(n == 1 for n in counts.values()), counts
        time.sleep(0.1)


def _pool(platform) -> list[str]:
    return list(platform.redis.lrange(platform.keys.standby_pool, 0, -1))


def test_a_runner_frozen_past_the_start_timeout_never_leads_to_a_second_bot(platform):
    runner = platform.start_runner()
    frozen = platform.services[-1]
    platform.start_operator(BOT_START_TIMEOUT_S="1")
    platform.start_gateway()
    frozen.signal(signal.SIGSTOP)
    launch = _join(platform, sessionId="s-frozen")
    record = platform.wait_status(launch, "running")
    assert record["type"] == "cold" and record["attempt"] >= 2  # attempt 1 was given up on, and fenced
    frozen.signal(signal.SIGCONT)  # its late /start for attempt 1 now arrives
    wait_for(lambda: runner in _pool(platform), what="the refused runner back in the pool")
    assert not [b for b in platform.warm_bots() if b["launchId"] == launch]
    _exactly_one_bot(platform, launch)


def test_an_operator_killed_mid_start_and_restarted_never_starts_a_second_bot(platform):
    platform.start_runner()
    frozen = platform.services[-1]
    first = platform.start_operator(BOT_START_TIMEOUT_S="20")
    platform.start_gateway()
    frozen.signal(signal.SIGSTOP)
    launch = _join(platform, sessionId="s-killed")
    platform.wait_status(launch, "starting")
    time.sleep(0.3)  # its /start is in flight to the frozen runner
    first.signal(signal.SIGKILL)
    platform.start_operator(BOT_START_TIMEOUT_S="20")  # adopts the job once the dead one's heartbeat lapses
    record = platform.wait_status(launch, "running")
    assert record["attempt"] >= 2 and record["type"] == "cold"
    frozen.signal(signal.SIGCONT)
    _exactly_one_bot(platform, launch)


def test_a_second_operator_never_replays_a_live_operators_job(platform):
    runner = platform.start_runner()
    frozen = platform.services[-1]
    # The first operator's /start must not time out while the runner is frozen, however slowly the second
    # operator starts on a loaded machine: a timeout would be a (correct) second attempt, not what is tested here.
    # Beats every 0.5 s (alive while it beat within 1.5 s): a starved machine may stall the first operator for
    # a second without its death being (correctly) declared; the second recovers every 1.5 s. The starting
    # lock outlives the wait (its lapse would, correctly, be a second attempt too).
    slow = {"BOT_START_TIMEOUT_S": "90", "BOT_HEARTBEAT_S": "0.5", "BOT_LOCK_TTL_S": "10"}
    platform.start_operator(**slow)
    platform.start_gateway()
    frozen.signal(signal.SIGSTOP)
    launch = _join(platform, sessionId="s-second")
    platform.wait_status(launch, "starting")
    platform.start_operator(**slow)
    time.sleep(3.5)  # seven heartbeats and two recoveries of the second: time enough to (wrongly) replay the job
    record = platform.record(launch)
    assert record["status"] == "starting" and record["attempt"] == 1
    frozen.signal(signal.SIGCONT)
    record = platform.wait_status(launch, "running")
    assert record["type"] == "warm" and record["runner"] == runner and record["attempt"] == 1
    _exactly_one_bot(platform, launch)


def test_sigterm_to_the_operator_mid_dispatch_loses_no_job_and_starts_one_bot(platform):
    platform.start_runner()
    frozen = platform.services[-1]
    operator = platform.start_operator(BOT_START_TIMEOUT_S="2")
    platform.start_gateway()
    frozen.signal(signal.SIGSTOP)
    launch = _join(platform, sessionId="s-term")
    platform.wait_status(launch, "starting")
    operator.signal(signal.SIGTERM)
    assert operator.popen.wait(30) == 0
    if platform.record(launch)["status"] != "running":  # it handed the job back: the next operator takes it
        platform.start_operator()
    platform.wait_status(launch, "running")
    frozen.signal(signal.SIGCONT)
    _exactly_one_bot(platform, launch)


def test_a_bot_cut_off_from_redis_stops_itself_before_its_room_can_get_a_second_bot(platform):
    with TcpProxy(6379) as proxy:
        cut_url = platform.start_runner(REDIS_URL=proxy.url(), OTEL_METRIC_EXPORT_INTERVAL="200")
        cut_off = platform.services[-1]
        platform.start_operator()
        platform.start_gateway()
        first = _join(platform, sessionId="s-cut")
        platform.wait_status(first, "running")
        lock_key = platform.keys.room_active(room_hash(canonical(ROOM)))
        proxy.cut()
        wait_for(lambda: not [b for b in httpx.get(f"{cut_url}/sessions", timeout=2).json() if b["running"]], 10,
                 what="the cut-off bot to stop itself")
        assert platform.redis.pttl(lock_key) > 0  # it stopped while its lock still held the room
        platform.redis.delete(platform.keys.standby_pool)  # the cut-off runner's entry: it cannot take starts
        platform.start_runner()
        second = wait_for(lambda: (r := platform.join(room_url=ROOM, sessionId="s-next")).status_code == 202
                          and r.json()["launchId"], 15, interval=0.2, what="the room to be free again")
        platform.wait_status(second, "running")
        _exactly_one_bot(platform, second)
        assert platform.bots().get(first) is None
        status = httpx.get(f"{platform.gateway_url}/launches/{first}", timeout=5).json()
        assert status["status"] == "failed" and "lock" in status["reason"]  # it could not say so itself
        warnings = cut_off.output().count("Keepalive failed")
        assert 1 <= warnings <= 3, cut_off.output()[-3000:]
        # its metrics say so too: one session failed because it lost its lock, none left running
        metrics = platform.logs / f"bot-runner.{cut_off.pid}.metrics.jsonl"

        def counted(name: str) -> dict[tuple[tuple[str, str], ...], float]:
            return {tuple(sorted(p.attributes.items())): p.value for p in read_metrics(metrics).get(name, [])}

        wait_for(lambda: counted("bot.session.failures") == {(("mode", "warm"), ("reason", "lock_lost")): 1}, 10,
                 what="the cut-off runner's failure in its metrics")
        assert counted("bot.session.active") == {(("mode", "warm"),): 0}


def test_a_frozen_cold_bot_stops_itself_when_it_thaws_after_its_room_moved_on(platform):
    platform.start_operator()
    platform.start_gateway()
    first = _join(platform, sessionId="s-cold-frozen")
    platform.wait_status(first, "running")
    (bot,) = platform.cold_bots()
    os.kill(bot["pid"], signal.SIGSTOP)
    second = wait_for(lambda: (r := platform.join(room_url=ROOM, sessionId="s-after")).status_code == 202
                      and r.json()["launchId"], 15, interval=0.2, what="the lapsed room to take a new join")
    platform.wait_status(second, "running")
    os.kill(bot["pid"], signal.SIGCONT)
    wait_for(lambda: bot["pid"] not in [b["pid"] for b in platform.cold_bots()], 10, what="the thawed bot to stop")
    _exactly_one_bot(platform, second)


def test_a_join_queued_longer_than_the_pending_ttl_keeps_its_room_and_runs(platform):
    platform.start_gateway(BOT_PENDING_TTL_S="1")
    launch = _join(platform, sessionId="s-wait")
    time.sleep(2.5)  # the operator is away for longer than the pending lock lives
    assert platform.join(room_url=ROOM, sessionId="s-other").status_code == 409
    assert httpx.get(f"{platform.gateway_url}/launches/{launch}", timeout=5).json()["status"] == "queued"
    platform.start_runner()
    platform.start_operator(BOT_PENDING_TTL_S="1")
    assert platform.wait_status(launch, "running")["sessionId"] == "s-wait"
    _exactly_one_bot(platform, launch)


def test_one_poison_job_is_dead_lettered_and_the_operator_goes_on(platform):
    platform.start_runner()
    operator = platform.start_operator()
    platform.start_gateway()
    platform.redis.rpush(platform.keys.launch_queue, "[" * 100_000)
    wait_for(lambda: platform.redis.llen(platform.keys.dead_letter) == 1, what="the poison job dead-lettered")
    (entry,) = [json.loads(e) for e in platform.redis.lrange(platform.keys.dead_letter, 0, -1)]
    assert entry["reason"] and len(entry["job"]) < 10_000
    assert operator.alive()
    launch = _join(platform, sessionId="s-after-poison")
    platform.wait_status(launch, "running")


@pytest.mark.parametrize("kind", ["warm", "cold"])
def test_leave_ends_the_bot_and_frees_the_room(platform, kind):
    if kind == "warm":
        platform.start_runner()
    platform.start_operator()
    platform.start_gateway()
    launch = _join(platform, sessionId=f"s-leave-{kind}")
    assert platform.wait_status(launch, "running")["type"] == kind
    left = httpx.post(f"{platform.gateway_url}/leave", json={"launchId": launch}, timeout=30)
    assert left.status_code == 200 and left.json()["status"] == "ended", left.text
    wait_for(lambda: platform.bots().get(launch) is None, 10, what="the bot to be gone")  # a cold one exits
    assert platform.lock(ROOM) is None
    assert httpx.get(f"{platform.gateway_url}/launches/{launch}", timeout=5).json()["status"] == "ended"
    assert _join(platform, sessionId="s-rejoin")


def test_a_bad_standby_pool_entry_never_costs_a_join_while_a_runner_is_idle(platform):
    runner = platform.start_runner()
    platform.redis.rpush(platform.keys.standby_pool, "http://127.0.0.1:99999", "not a url")  # popped first
    platform.start_operator()
    platform.start_gateway()
    launch = _join(platform, sessionId="s-bad-pool")
    record = platform.wait_status(launch, "running")
    assert record["type"] == "warm" and record["runner"] == runner
    assert platform.redis.llen(platform.keys.dead_letter) == 0
    _exactly_one_bot(platform, launch)


def test_cold_bots_beyond_max_cold_wait_queued_and_start_when_a_slot_frees(platform):
    platform.start_operator(BOT_MAX_COLD="1")
    platform.start_gateway()
    first = _join(platform, room=f"{ROOM}-a", sessionId="s-cold-1")
    platform.wait_status(first, "running")
    second = _join(platform, room=f"{ROOM}-b", sessionId="s-cold-2")
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:  # it waits: neither failed nor dropped, and never a second cold bot
        assert len(platform.cold_bots()) <= 1
        assert platform.record(second)["status"] in ("queued", "starting")
        time.sleep(0.1)
    left = httpx.post(f"{platform.gateway_url}/leave", json={"launchId": first}, timeout=30)
    assert left.json()["status"] == "ended"
    platform.wait_status(second, "running")
    _exactly_one_bot(platform, second)
    assert len(platform.cold_bots()) == 1
