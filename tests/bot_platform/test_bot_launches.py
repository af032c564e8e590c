"""The launch state machine's steps, each against the real Redis."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from bot.launches import Launches, job_sha
from bot.settings import Settings
from tests.helpers.bot_platform import run_with_redis

pytestmark = pytest.mark.redis  # and the folder's (tests/conftest.py)
ROOM = "a" * 32




def _launches(r, keys, **settings) -> Launches:
    return Launches(r, keys, Settings(**{"lock_ttl_s": 2.0, "keepalive_s": 0.2, "pending_ttl_s": 0.5, **settings}))


def _pending(launch_id: str = "L1", room: str = ROOM) -> dict:
    return Launches.pending_lock(launch_id=launch_id, session_id="s1", room=room, room_url="https://r.test/x")


def test_a_room_takes_one_queued_launch_and_a_full_queue_says_so():
    async def test(r, keys):
        launches = _launches(r, keys, max_queue=2)
        assert await launches.enqueue(_pending("L1"), "job1") == "queued"
        assert await launches.enqueue(_pending("L2"), "job2") == "taken"
        assert await launches.enqueue(_pending("L3", room="b" * 32), "job3") == "queued"
        assert await launches.enqueue(_pending("L4", room="c" * 32), "job4") == "full"
        assert await r.lrange(keys.launch_queue, 0, -1) == ["job1", "job3"]
        assert (await launches.record("L1"))["status"] == "queued"
        assert await launches.record("L2") is None

    run_with_redis(test)


def test_only_the_claimed_attempt_may_start_and_giving_up_fences_it():
    async def test(r, keys):
        launches = _launches(r, keys)
        await launches.enqueue(_pending(), "job")
        first = await launches.claim(_pending(), "op-a")
        assert (first.outcome, first.attempt) == ("claimed", 1)
        assert (await launches.lock(ROOM))["status"] == "starting"
        # the /start of attempt 1 timed out: the operator gives up on it
        second = await launches.claim(_pending(), "op-a", expected_attempt=1)
        assert (second.outcome, second.attempt) == ("claimed", 2)
        assert await launches.take("L1", 1, ROOM, "http://late", "warm", "{}") == "fenced"
        assert await launches.take("L1", 2, ROOM, "http://r2", "warm", "{}") == "ok"
        assert await launches.take("L1", 2, ROOM, "http://r3", "warm", "{}") == "running"
        # giving up on an attempt that already runs is refused: the operator learns it runs
        assert (await launches.claim(_pending(), "op-a", expected_attempt=2)).outcome == "running"
        assert (await launches.record("L1"))["status"] == "running"
        assert await launches.take("L9", 2, ROOM, "http://other", "warm", "{}") == "lost"
        await r.delete(keys.room_active(ROOM))  # the bot died: its lock lapsed
        assert (await launches.status("L1"))["status"] == "failed"
        assert (await launches.record("L1"))["status"] == "running"

    run_with_redis(test)


def test_status_of_a_live_launch_is_its_record():
    async def test(r, keys):
        launches = _launches(r, keys)
        await launches.enqueue(_pending(), "job")
        assert (await launches.status("L1"))["status"] == "queued"
        await launches.claim(_pending(), "op")
        assert (await launches.status("L1"))["status"] == "starting"
        assert await launches.status("nope") is None

    run_with_redis(test)


def test_a_keepalive_renews_only_its_own_running_attempt_and_release_ends_the_launch():
    async def test(r, keys):
        launches = _launches(r, keys)
        await launches.enqueue(_pending(), "job")
        await launches.claim(_pending(), "op")
        assert not await launches.keepalive("L1", 1, ROOM, "{}", cold=False)  # not running yet
        await launches.take("L1", 1, ROOM, "http://r", "warm", '{"k": 1}')
        assert await launches.keepalive("L1", 1, ROOM, '{"k": 2}', cold=False)
        assert await r.get(keys.room_keepalive(ROOM)) == '{"k": 2}'
        assert not await launches.keepalive("L1", 0, ROOM, '{"k": 3}', cold=False)
        assert await r.get(keys.room_keepalive(ROOM)) == '{"k": 2}'  # written only after the lock check
        await r.rpush(keys.admin_queue("L1"), "hello")
        assert await launches.release("L1", 1, ROOM, "ended")
        assert await launches.lock(ROOM) is None and await r.get(keys.room_keepalive(ROOM)) is None
        assert not await r.exists(keys.admin_queue("L1"))
        assert (await launches.record("L1"))["status"] == "ended"

    run_with_redis(test)


def test_a_queued_launch_keeps_its_room_however_long_it_waits():
    async def test(r, keys):
        launches = _launches(r, keys)
        await launches.enqueue(_pending(), "job")
        await asyncio.sleep(0.7)  # the pending lock lapsed: nothing renewed it
        assert await launches.lock(ROOM) is None
        assert await launches.renew_claims() == 1  # restored for the queued launch
        assert (await launches.lock(ROOM))["launch_id"] == "L1"
        assert await launches.enqueue(_pending("L2"), "job2") == "taken"
        await r.delete(keys.room_active(ROOM))  # lapsed again, then the operator comes back
        claim = await launches.claim(_pending(), "op")
        assert claim.outcome == "claimed" and (await launches.lock(ROOM))["status"] == "starting"
        assert await launches.renew_claims() == 0 and not await r.hlen(keys.claims)

    run_with_redis(test)


def test_a_newer_launch_in_the_room_makes_the_old_claim_fail():
    async def test(r, keys):
        launches = _launches(r, keys)
        await launches.enqueue(_pending("L-new"), "job")
        assert (await launches.claim(_pending("L-old"), "op")).outcome == "taken"

    run_with_redis(test)


def test_a_job_is_adopted_only_from_an_operator_that_stopped_beating():
    async def test(r, keys):
        launches = _launches(r, keys, heartbeat_s=0.2)
        await r.rpush(keys.launch_queue, "job")
        assert await launches.heartbeat("op-a") == 1
        assert await launches.take_job("op-a") == "job"
        assert not await launches.adopt("job", "op-b")  # op-a is alive
        await asyncio.sleep(0.7)
        assert await launches.heartbeat() == 0
        assert await launches.adopt("job", "op-b")
        await r.rpush(keys.processing, "orphan")  # no owner at all (left by an older operator)
        assert await launches.adopt("orphan", "op-b")
        await launches.done("orphan")
        assert not await launches.adopt("orphan", "op-c")  # it left the list meanwhile: nothing to adopt
        assert not await r.hexists(keys.owners, job_sha("orphan"))

    run_with_redis(test)


def test_leaving_a_queued_launch_ends_it_and_its_job_is_then_dropped():
    async def test(r, keys):
        launches = _launches(r, keys)
        await launches.enqueue(_pending(), "job")
        await r.rpush(keys.admin_queue("L1"), "early message")
        assert await launches.leave("L1") == "ended"
        assert not await r.exists(keys.admin_queue("L1"))
        assert await launches.lock(ROOM) is None
        assert await launches.enqueue(_pending("L2"), "job2") == "queued"  # the room is free
        assert (await launches.claim(_pending(), "op")).outcome == "ended"
        assert await launches.leave("nope") == "unknown"

    run_with_redis(test)


def test_leaving_a_starting_launch_refuses_its_start():
    async def test(r, keys):
        launches = _launches(r, keys)
        await launches.enqueue(_pending(), "job")
        await launches.claim(_pending(), "op")
        assert await launches.leave("L1") == "leaving"
        assert await launches.take("L1", 1, ROOM, "http://r", "warm", "{}") == "left"
        assert (await launches.claim(_pending(), "op", expected_attempt=1)).outcome == "ended"
        assert await launches.lock(ROOM) is None and (await launches.record("L1"))["status"] == "ended"

    run_with_redis(test)


def test_requeue_hands_a_claimed_job_back_to_the_head_of_the_queue():
    async def test(r, keys):
        launches = _launches(r, keys)
        await launches.enqueue(_pending(), "job")
        await r.rpush(keys.launch_queue, "later")
        raw = await launches.take_job("op")
        claim = await launches.claim(_pending(), "op")
        await launches.requeue(raw, _pending(), claim.attempt)
        assert await r.lrange(keys.launch_queue, 0, -1) == ["job", "later"]
        assert not await r.llen(keys.processing) and not await r.hlen(keys.owners)
        assert (await launches.lock(ROOM))["status"] == "pending" and await r.hexists(keys.claims, "L1")
        assert (await launches.record("L1"))["status"] == "queued"
        assert (await launches.claim(_pending(), "op")).attempt == 2
        await r.delete(keys.room_active(ROOM))  # the starting lock lapsed before the job was handed back
        await r.rpush(keys.processing, raw)
        await launches.requeue(raw, _pending(), 2)
        assert (await launches.lock(ROOM))["status"] == "pending"  # the claim on the room is restored
        assert (await launches.record("L1"))["status"] == "queued"

    run_with_redis(test)


def test_cold_slots_are_capped_across_operators_and_expire():
    async def test(r, keys):
        launches = _launches(r, keys, max_cold=2, lock_ttl_s=0.5, keepalive_s=0.1)
        assert await launches.cold_slot("a") and await launches.cold_slot("b")
        assert not await launches.cold_slot("c")
        assert await launches.cold_slot("a")  # a launch that holds one keeps it
        await launches.free_cold_slot("a")
        assert await launches.cold_slot("c")
        await asyncio.sleep(0.6)
        assert await launches.cold_slot("d") and await launches.cold_slot("e")

    run_with_redis(test)


def test_dead_letters_are_capped_and_expire():
    async def test(r, keys):
        launches = _launches(r, keys, dead_letter_max=3, dead_letter_ttl_s=60)
        await r.rpush(keys.dead_letter, json.dumps({"id": "old", "timestamp": time.time() - 120}))
        for i in range(5):
            await r.rpush(keys.processing, f"job{i}")
            await launches.dead_letter(f"job{i}", {"id": str(i), "timestamp": time.time()})
        ids = [json.loads(e)["id"] for e in await r.lrange(keys.dead_letter, 0, -1)]
        assert ids == ["2", "3", "4"] and not await r.llen(keys.processing)
        assert 0 < await r.pttl(keys.dead_letter) <= 60_000

    run_with_redis(test)


def test_settings_refuse_bad_values_by_name():
    with pytest.raises(ValueError, match="BOT_LOCK_TTL_S"):
        Settings.from_env({"BOT_LOCK_TTL_S": "soon"})
    with pytest.raises(ValueError, match="BOT_MAX_COLD"):
        Settings.from_env({"BOT_MAX_COLD": "-1"})
    with pytest.raises(ValueError, match="BOT_KEEPALIVE_S"):
        Settings.from_env({"BOT_KEEPALIVE_S": "20", "BOT_LOCK_TTL_S": "30"})
    s = Settings.from_env({"BOT_MAX_COLD": "2", "BOT_ADMIN_TOKEN": "t", "BOT_LOCK_TTL_S": "2",
                           "BOT_KEEPALIVE_S": "0.2"})
    assert (s.max_cold, s.admin_token, s.fence_after_s) == (2, "t", 1.0)
    assert s.fault_message is None  # the fault drill is off unless set
    assert Settings.from_env({"BOT_FAULT_MESSAGE": " "}).fault_message is None
    assert Settings.from_env({"BOT_FAULT_MESSAGE": "fail 3.5"}).fault_message == "fail 3.5"  # text, not a number


def test_a_job_that_is_not_utf8_can_be_adopted_and_dead_lettered():
    async def test(r, keys):
        launches = _launches(r, keys)
        raw = b"\xff\xfe not UTF-8"
        await r.rpush(keys.processing, raw)
        assert await launches.adopt(raw, "op-a")
        await launches.dead_letter(raw, {"id": "x", "reason": "not UTF-8", "timestamp": time.time()})
        assert await r.llen(keys.processing) == 0 and await r.hlen(keys.owners) == 0
        assert [json.loads(e)["id"] for e in await r.lrange(keys.dead_letter, 0, -1)] == ["x"]

    run_with_redis(test)
