"""A 202 is a promise across a Sentinel failover: the bot services on `redis+sentinel://`, real processes.

A master, a replica and three Sentinels (`down-after-milliseconds` 1000), the services started as the README
starts them. Joins arrive steadily; replication is stalled (the replica frozen) and the master then killed,
so every write the replica never got is lost, as an acknowledged write is in a real failover. Then the old
master comes back empty, and the Sentinels make it a replica of the new one.
"""

from __future__ import annotations

import time

import pytest

from bot.demo.harness import wait_for
from otel_session import grants
from tests.helpers.bot_platform import Platform
from tests.helpers.drill import KNOBS, Joins, every_202_ran_once
from tests.helpers.sentinel import Failover, client, crash, freeze, role, thaw

pytestmark = [pytest.mark.bot, pytest.mark.latest_only]  # the folder adds redis and processes



@pytest.fixture
def topology():
    with Failover(sentinels=3) as running:
        yield running


def test_every_202_runs_once_across_a_failover_that_loses_writes(tmp_path, topology):
    platform = Platform(tmp_path, redis_url=topology.url, **KNOBS)
    try:
        # the Sentinel pool does not wait for a free connection (redis-py has no blocking one): room for every
        # bot's keepalive and admin poll at once, as they all reconnect after the failover
        platform.start_runner(slots=60, level="INFO", BOT_REDIS_POOL_SIZE="200")
        platform.start_operator()
        platform.start_gateway()
        grant = grants.grant(session_id="s-failover", ttl_s=600, reason="failover drill", redis_url=topology.url,
                             prefix=platform.prefix)
        with Joins(platform) as joins:
            before = joins.first_running()
            topology.wait_linked(topology.master, topology.replica)  # the replica has all of it, bots included
            joins.paused.clear()
            time.sleep(0.5)

            freeze(topology.replica)
            with client(topology.master) as master:  # the link cut: nothing more reaches the replica
                master.client_kill_filter(_type="replica")
            stalled = time.monotonic()
            time.sleep(1.5)
            crash(topology.master)  # what only the master had is gone
            thaw(topology.replica)
            promoted_in = topology.wait_promoted(topology.replica)
            promoted = time.monotonic()
            wait_for(lambda: [a for a in joins.accepted() if a["sent"] > promoted], 30,
                     what="a join accepted after the promotion")
            reaccepted_in = min(a["answered"] for a in joins.accepted() if a["sent"] > promoted) - promoted
            time.sleep(1.0)

        old = topology.restart_empty(topology.master)  # empty: it must not wipe the new master
        restarted = time.monotonic()
        wait_for(lambda: role(old) == "slave", 40, what="the Sentinels to make the old master a replica")
        topology.wait_linked(topology.replica, old)
        rejoined_in = time.monotonic() - restarted
        print(f"cut {promoted - stalled:.1f} s in all, promotion {promoted_in:.1f} s after the kill, joins "
              f"accepted again {reaccepted_in:.1f} s after it; the empty old master a replica "
              f"{rejoined_in:.1f} s after its restart")

        accepted = every_202_ran_once(platform, joins, before)

        # the empty old master wiped nothing: the new master and its new replica hold every accepted launch
        for node in (topology.replica, old):
            with client(node) as direct:
                assert all(direct.exists(platform.keys.launch(launch)) for launch in accepted)
        # the debug grant and its audit survived too
        assert [g.id for g in grants.active(redis_url=topology.url, prefix=platform.prefix)] == [grant.id]
        audit = grants.audit(redis_url=topology.url, prefix=platform.prefix)
        assert [(e["event"], e["grant_id"]) for e in audit] == [("created", grant.id)]
    finally:
        platform.cleanup()
