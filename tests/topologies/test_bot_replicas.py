"""A step a failover could undo is acted on only once a replica has it: real `redis-server` master and replica.

The replica is frozen (SIGSTOP) to stall replication, or killed to leave the master alone; the launch steps
run through `bot.launches.Launches` on a client of the master, as the services run them.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from bot import rooms
from bot.gateway import NOT_REPLICATED
from bot.keys import Keys
from bot.launches import Launches
from bot.replicas import NotReplicatedError
from bot.service import redis_client
from bot.settings import Settings
from tests.helpers.bot_platform import Platform
from tests.helpers.sentinel import Failover, client, crash, freeze, thaw, url

pytestmark = [pytest.mark.bot, pytest.mark.latest_only]  # the folder adds redis and processes

SETTINGS = Settings(replica_wait_ms=200, lock_ttl_s=10, keepalive_s=1)


@pytest.fixture(scope="module")
def pair() -> Iterator[Failover]:
    with Failover(sentinels=0) as topology:
        yield topology


def _pending(room_url: str) -> dict[str, Any]:
    return Launches.pending_lock(launch_id=uuid.uuid4().hex, session_id="s-rep", room=rooms.room_hash(room_url),
                                 room_url=room_url)


def run(pair: Failover, step: Any, settings: Settings = SETTINGS) -> Any:
    async def main() -> Any:
        connection = redis_client(settings, url(pair.master))
        try:
            return await step(Launches(connection, Keys(f"test-{uuid.uuid4().hex[:8]}:"), settings))
        finally:
            await connection.aclose()
    return asyncio.run(main())


def frozen(pair: Failover, step: Any) -> Any:
    """`step` while the replica is frozen; then it thaws and catches up."""
    freeze(pair.replica)
    try:
        return run(pair, step)
    finally:
        thaw(pair.replica)
        pair.wait_linked(pair.master, pair.replica)


def test_a_join_is_accepted_once_the_replica_has_it(pair):
    async def step(launches: Launches) -> None:
        lock = _pending(f"https://rooms.example.test/{uuid.uuid4().hex}")
        assert await launches.enqueue(lock, json.dumps({"launchId": lock["launch_id"]})) == "queued"
        assert await launches.replicas.expected() == 1
        replica = client(pair.replica)
        assert replica.get(launches.keys.launch(lock["launch_id"]))  # on the replica already: WAIT said so
        replica.close()
    run(pair, step)


def test_a_join_no_replica_confirms_is_refused_and_so_is_its_retry(pair):
    async def step(launches: Launches) -> str:
        lock = _pending(f"https://rooms.example.test/{uuid.uuid4().hex}")
        with pytest.raises(NotReplicatedError):
            await launches.enqueue(lock, "{}")
        with pytest.raises(NotReplicatedError):  # a retried call writes nothing new, and its first write is unconfirmed
            await launches.enqueue(lock, "{}")
        return await launches.enqueue(_pending(lock["room_url"]), "{}")  # a refusal needs no confirmation
    assert frozen(pair, step) == "taken"


def test_a_master_whose_replica_died_accepts_as_one_redis_does_once_it_is_gone_for_good():
    gone_s = 1.0
    with Failover(sentinels=0) as alone:
        async def step(launches: Launches) -> None:
            first = _pending(f"https://rooms.example.test/{uuid.uuid4().hex}")
            assert await launches.enqueue(first, "{}") == "queued" and await launches.replicas.expected() == 1
            crash(alone.replica)
            with pytest.raises(NotReplicatedError):  # just gone: a failover could still promote it
                await launches.enqueue(_pending(f"https://rooms.example.test/{uuid.uuid4().hex}"), "{}")
            await asyncio.sleep(gone_s)
            assert await launches.enqueue(_pending(f"https://rooms.example.test/{uuid.uuid4().hex}"), "{}") == "queued"
            assert await launches.replicas.expected() == 0
        run(alone, step, replace(SETTINGS, replica_gone_s=gone_s))


def test_a_cut_replication_link_refuses_joins_though_the_master_counts_no_replica(pair):
    async def step(launches: Launches) -> None:
        assert await launches.replicas.expected() == 1
        master = client(pair.master)
        master.client_kill_filter(_type="replica")  # the frozen replica cannot come back
        assert int(master.info("replication")["connected_slaves"]) == 0
        master.close()
        with pytest.raises(NotReplicatedError):
            await launches.enqueue(_pending(f"https://rooms.example.test/{uuid.uuid4().hex}"), "{}")
    frozen(pair, step)


def test_an_attempt_no_replica_confirms_is_never_dispatched(pair):
    async def step(launches: Launches) -> dict[str, Any] | None:
        pending = _pending(f"https://rooms.example.test/{uuid.uuid4().hex}")
        assert await launches.enqueue(pending, "{}") == "queued"
        freeze(pair.replica)
        try:
            with pytest.raises(NotReplicatedError):
                await launches.claim(pending, "op-1")
        finally:
            thaw(pair.replica)
        pair.wait_linked(pair.master, pair.replica)
        claim = await launches.claim(pending, "op-1")  # replicated now: the next attempt is issued and confirmed
        assert claim.outcome == "claimed" and claim.attempt == 2
        return await launches.lock(pending["room"])
    lock = run(pair, step)
    assert lock is not None and lock["status"] == "starting" and lock["attempt"] == 2


def test_a_take_no_replica_confirms_is_undone_so_the_bot_never_joins(pair):
    async def step(launches: Launches) -> None:
        pending = _pending(f"https://rooms.example.test/{uuid.uuid4().hex}")
        await launches.enqueue(pending, "{}")
        claim = await launches.claim(pending, "op-1")
        freeze(pair.replica)
        try:
            outcome = await launches.take(pending["launch_id"], claim.attempt, pending["room"], "r-1", "warm", "{}")
            lock, record = await launches.lock(pending["room"]), await launches.record(pending["launch_id"])
        finally:
            thaw(pair.replica)
        assert outcome == "unreplicated"
        assert lock is not None and lock["status"] == "starting" and lock["attempt"] == claim.attempt
        assert "runner" not in lock and record is not None and record["status"] == "starting"
        pair.wait_linked(pair.master, pair.replica)
        # the operator gives the attempt up as for any refused /start: the next one is claimed and taken
        again = await launches.claim(pending, "op-1", expected_attempt=claim.attempt)
        assert again.outcome == "claimed"
        assert await launches.take(pending["launch_id"], again.attempt, pending["room"], "r-2", "warm", "{}") == "ok"
    run(pair, step)


def test_a_renewal_no_replica_confirms_does_not_count_for_the_fence(pair):
    async def step(launches: Launches) -> None:
        pending = _pending(f"https://rooms.example.test/{uuid.uuid4().hex}")
        await launches.enqueue(pending, "{}")
        claim = await launches.claim(pending, "op-1")
        assert await launches.take(pending["launch_id"], claim.attempt, pending["room"], "r-1", "warm", "{}") == "ok"
        freeze(pair.replica)
        try:
            with pytest.raises(NotReplicatedError):
                await launches.keepalive(pending["launch_id"], claim.attempt, pending["room"], "{}", cold=False)
            # not ours is said at once, with nothing to wait for
            assert not await launches.keepalive(pending["launch_id"], claim.attempt + 1, pending["room"], "{}",
                                                cold=False)
        finally:
            thaw(pair.replica)
        pair.wait_linked(pair.master, pair.replica)
        assert await launches.keepalive(pending["launch_id"], claim.attempt, pending["room"], "{}", cold=False)
    run(pair, step)


def test_the_gateway_refuses_a_join_no_replica_confirms_with_503_retry_after_and_its_launch(pair, tmp_path):
    platform = Platform(tmp_path, redis_url=url(pair.master), BOT_REPLICA_WAIT_MS="200")
    try:
        platform.start_gateway()
        room = f"https://rooms.example.test/{uuid.uuid4().hex}"
        freeze(pair.replica)
        try:
            refused = platform.join(room_url=room)
        finally:
            thaw(pair.replica)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        launch = refused.json()["launchId"]
        pair.wait_linked(pair.master, pair.replica)
        told = httpx.get(f"{platform.gateway_url}/launches/{launch}", timeout=5).json()
        assert (told["status"], told["reason"]) == ("ended", NOT_REPLICATED)  # it will never run
        accepted = platform.join(room_url=room)  # and it no longer holds the room
        assert accepted.status_code == 202 and accepted.json()["launchId"] != launch
    finally:
        platform.cleanup()
