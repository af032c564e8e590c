"""A 202 is a promise across a Redis Cluster failover too: three masters with a replica each, real processes.

A step is confirmed by the replica of the master that serves its keys (`WAIT` sent to that master, on the
connection that wrote it); a frozen replica refuses the step. Then the drill: joins arrive steadily, the
`{bot}` master's replica is cut off and the master killed, the Cluster promotes the replica, and every 202
runs exactly once.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from bot import rooms
from bot.demo.harness import wait_for
from bot.keys import Keys
from bot.launches import Launches
from bot.replicas import NotReplicatedError
from bot.service import redis_client
from bot.settings import Settings
from tests.helpers.bot_platform import Platform
from tests.helpers.drill import KNOBS, Joins, every_202_ran_once
from tests.helpers.redis_topologies import HOST, Cluster
from tests.helpers.sentinel import crash, freeze, thaw

pytestmark = [pytest.mark.bot, pytest.mark.latest_only]  # the folder adds redis and processes

SETTINGS = Settings(replica_wait_ms=200, lock_ttl_s=10, keepalive_s=1)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with Cluster(masters=3, replicas=1) as running:
        yield running


def _pending(room_url: str) -> dict[str, Any]:
    return Launches.pending_lock(launch_id=uuid.uuid4().hex, session_id="s-rep", room=rooms.room_hash(room_url),
                                 room_url=room_url)


def _run(cluster: Cluster, step: Any) -> Any:
    async def main() -> Any:
        connection = redis_client(SETTINGS, cluster.url)
        try:
            return await step(Launches(connection, Keys(f"test-{uuid.uuid4().hex[:8]}:"), SETTINGS))
        finally:
            await connection.aclose()
    return asyncio.run(main())


def _on_replica(port: int, key: str) -> bool:
    with redis.Redis(host=HOST, port=port, single_connection_client=True, socket_timeout=5) as replica:
        replica.execute_command("READONLY")  # a cluster replica answers reads of its master's slots
        return bool(replica.exists(key))


def test_a_join_is_accepted_once_the_replica_of_its_master_has_it(cluster):
    (replica,) = cluster.replicas_of(cluster.owner("{bot}"))

    async def step(launches: Launches) -> None:
        lock = _pending(f"https://rooms.example.test/{uuid.uuid4().hex}")
        assert await launches.enqueue(lock, "{}") == "queued"
        assert await launches.replicas.expected(key=launches.keys.launch_queue) == 1
        assert _on_replica(replica, launches.keys.launch(lock["launch_id"]))  # there already: WAIT said so
    _run(cluster, step)


def test_a_join_the_replica_does_not_confirm_is_refused(cluster):
    """A `WAIT` on any other connection than the write's returns 1 at once (the frozen replica acknowledged
    everything before): a refusal shows that the step's own connection waited."""
    (replica,) = cluster.replicas_of(cluster.owner("{bot}"))

    async def step(launches: Launches) -> str:
        lock = _pending(f"https://rooms.example.test/{uuid.uuid4().hex}")
        with pytest.raises(NotReplicatedError):
            await launches.enqueue(lock, "{}")
        return await launches.enqueue(_pending(lock["room_url"]), "{}")  # a refusal needs no confirmation
    freeze(cluster.node(replica))
    try:
        assert _run(cluster, step) == "taken"
    finally:
        thaw(cluster.node(replica))


def test_every_202_runs_once_across_a_cluster_failover_that_loses_writes(tmp_path):
    with Cluster(masters=3, replicas=1, node_timeout_ms=1000) as cluster:
        platform = Platform(tmp_path, redis_url=cluster.url, **KNOBS)
        try:
            platform.start_runner(slots=60, level="INFO")
            platform.start_operator()
            platform.start_gateway()
            master = cluster.owner("{bot}")
            (replica,) = cluster.replicas_of(master)
            with Joins(platform) as joins:
                before = joins.first_running()
                joins.paused.clear()
                time.sleep(0.5)

                freeze(cluster.node(replica))
                with redis.Redis(host=HOST, port=master) as direct:  # the link cut: nothing more reaches it
                    direct.client_kill_filter(_type="replica")
                stalled = time.monotonic()
                time.sleep(1.5)
                crash(cluster.node(master))  # what only the master had is gone
                thaw(cluster.node(replica))
                wait_for(lambda: cluster.serving("{bot}") == replica, 30, what="the replica promoted")
                promoted = time.monotonic()
                wait_for(lambda: [a for a in joins.accepted() if a["sent"] > promoted], 30,
                         what="a join accepted after the promotion")
                reaccepted_in = min(a["answered"] for a in joins.accepted() if a["sent"] > promoted) - promoted
                time.sleep(1.0)
            print(f"promoted {promoted - stalled:.1f} s after the cut, joins accepted again {reaccepted_in:.1f} s "
                  "after it")
            accepted = every_202_ran_once(platform, joins, before)
            assert all(_on_replica(replica, platform.keys.launch(launch)) for launch in accepted)  # the new master
        finally:
            platform.cleanup()
