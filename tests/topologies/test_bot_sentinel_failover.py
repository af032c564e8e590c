"""A 202 is a promise across a Sentinel failover: the bot services on `redis+sentinel://`, real processes.

A master, a replica and three Sentinels (`down-after-milliseconds` 1000), the services started as the README
starts them. Joins arrive steadily; replication is stalled (the replica frozen) and the master then killed,
so every write the replica never got is lost, as an acknowledged write is in a real failover. Then the old
master comes back empty, and the Sentinels make it a replica of the new one.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from bot.demo.harness import wait_for
from otel_session import grants
from tests.helpers.bot_platform import Platform
from tests.helpers.sentinel import Failover, client, crash, freeze, role, thaw

pytestmark = [pytest.mark.bot, pytest.mark.latest_only]  # the folder adds redis and processes

JOIN_EVERY_S = 0.1
# A bot renews every second and fences itself after 12 s without a confirmed renewal: longer than the
# stall plus the failover here, so the bots running before it run on.
KNOBS = {"BOT_LOCK_TTL_S": "15", "BOT_KEEPALIVE_S": "1", "BOT_PENDING_TTL_S": "15", "BOT_REPLICA_WAIT_MS": "300",
         "BOT_START_TIMEOUT_S": "3", "BOT_MAX_COLD": "1"}


class Joins:
    """Joins sent every `JOIN_EVERY_S` from a thread, each to its own room; every answer kept, stamped."""

    def __init__(self, platform: Platform) -> None:
        self.platform, self.answers, self.stop = platform, [], threading.Event()
        self.paused = threading.Event()  # no new joins while set: the runner's slots are not endless
        self._pool = ThreadPoolExecutor(8)
        self._sent: list[Future[None]] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Joins:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._thread.join(10)
        for sent in self._sent:
            sent.result(30)
        self._pool.shutdown()

    def _run(self) -> None:
        while not self.stop.is_set():
            if self.paused.is_set():
                time.sleep(JOIN_EVERY_S)
                continue
            self._sent.append(self._pool.submit(self._one, f"https://rooms.example.test/fo-{uuid.uuid4().hex[:12]}"))
            time.sleep(JOIN_EVERY_S)

    def _one(self, room: str) -> None:
        sent = time.monotonic()
        try:
            reply = httpx.post(f"{self.platform.gateway_url}/join", json={"room_url": room}, timeout=20)
        except httpx.HTTPError as exc:
            self.answers.append({"room": room, "sent": sent, "status": None, "error": type(exc).__name__})
            return
        body: dict[str, Any] = reply.json() if reply.headers.get("content-type") == "application/json" else {}
        self.answers.append({"room": room, "sent": sent, "answered": time.monotonic(), "status": reply.status_code,
                             "retry_after": reply.headers.get("retry-after"), "launch": body.get("launchId")})

    def accepted(self) -> list[dict[str, Any]]:
        return [a for a in self.answers if a["status"] == 202]


def _status(platform: Platform, launch: str) -> str | None:
    """What the gateway says of a launch, once it is settled (404: never queued, as far as Redis knows)."""
    reply = httpx.get(f"{platform.gateway_url}/launches/{launch}", timeout=5)
    status = "unknown" if reply.status_code == 404 else reply.json()["status"]
    return status if status in ("unknown", "running", "ended", "failed") else None


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
            wait_for(lambda: len(joins.accepted()) >= 8, 30, what="joins accepted before the fault")
            joins.paused.set()
            time.sleep(1.0)  # the joins in flight answered
            before = [a["launch"] for a in joins.accepted()]
            for launch in before:
                platform.wait_status(launch, "running")
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

        answers = joins.answers
        refused = [a for a in answers if a["status"] in (429, 503)]
        assert refused, "the stall and the failover refused no join: nothing was tested"
        assert all(a["retry_after"] and int(a["retry_after"]) > 0 for a in refused), refused
        assert {a["status"] for a in answers} <= {202, 429, 503}, answers

        accepted = [a["launch"] for a in joins.accepted()]
        for launch in accepted:  # every 202 runs, on the new master's word
            try:
                platform.wait_status(launch, "running", timeout=40)
            except TimeoutError:
                answer = next(a for a in answers if a["launch"] == launch)
                lines = [line for s in platform.services for line in s.output().splitlines() if launch in line]
                raise AssertionError(f"{answer} {platform.record(launch)} {platform.lock(answer['room'])}\n"
                                     + "\n".join(lines)) from None
        bots = wait_for(lambda: (b := platform.bots()) and all(b.get(launch) for launch in accepted) and b, 30,
                        what="a bot for every accepted join")
        assert {launch: bots.get(launch) for launch in accepted} == dict.fromkeys(accepted, 1)
        assert all(n == 1 for n in bots.values()), bots  # no launch has two bots
        # a refused join may have been queued all the same (its answer lost with the master): it names its launch,
        # and says the truth about it; no bot runs for a launch its caller was never told of
        named = [a["launch"] for a in refused if a["launch"]]
        assert set(bots) <= set(accepted) | set(named)
        for launch in named:
            status = wait_for(lambda launch=launch: _status(platform, launch), 30, what=f"launch {launch} settled")
            assert (status == "running") == (launch in bots), (launch, status)
        print(f"{len(accepted)} joins accepted, {len(refused)} refused ({len(named)} naming their launch), "
              f"{len([n for n in named if n in bots])} of those queued all the same")

        for launch in before:  # the bots running before the failover run on, once, as the same attempt
            record = platform.record(launch)
            assert record is not None and record["status"] == "running" and record["attempt"] == 1, record
        sessions = [s for url in platform.runner_urls for s in platform.sessions(url) if s["running"]]
        listed = [s["launchId"] for s in sessions]
        assert len(listed) == len(set(listed)) and set(before) <= set(listed)

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
