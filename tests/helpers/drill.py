"""A failover drill's joins: sent steadily from a thread, each to its own room, every answer kept."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx

from bot.demo.harness import wait_for
from tests.helpers.bot_platform import Platform

JOIN_EVERY_S = 0.1
# A bot renews every second and fences itself after 12 s without a confirmed renewal: longer than the
# stall plus the failover of a drill, so the bots running before it run on.
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

    def first_running(self, count: int = 8) -> list[str]:
        """Once `count` joins are accepted: new joins paused, and every accepted launch running; their ids.
        (`paused.clear()` sends joins again.)"""
        wait_for(lambda: len(self.accepted()) >= count, 30, what="joins accepted before the fault")
        self.paused.set()
        time.sleep(1.0)  # the joins in flight answered
        before = [a["launch"] for a in self.accepted()]
        for launch in before:
            self.platform.wait_status(launch, "running")
        return before


def settled_status(platform: Platform, launch: str) -> str | None:
    """What the gateway says of a launch, once it is settled (404: never queued, as far as Redis knows)."""
    reply = httpx.get(f"{platform.gateway_url}/launches/{launch}", timeout=5)
    status = "unknown" if reply.status_code == 404 else reply.json()["status"]
    return status if status in ("unknown", "running", "ended", "failed") else None


def every_202_ran_once(platform: Platform, joins: Joins, before: list[str]) -> list[str]:
    """The drill's promise, once the fault is over: every refusal says when to come back, every 202 runs with
    one bot, a refused join that was queued all the same says so, and the bots of `before` ran on as the same
    attempt. The accepted launches."""
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
        status = wait_for(lambda launch=launch: settled_status(platform, launch), 30, what=f"launch {launch} settled")
        assert (status == "running") == (launch in bots), (launch, status)
    print(f"{len(accepted)} joins accepted, {len(refused)} refused ({len(named)} naming their launch), "
          f"{len([n for n in named if n in bots])} of those queued all the same")

    for launch in before:  # the bots running before the failover run on, once, as the same attempt
        record = platform.record(launch)
        assert record is not None and record["status"] == "running" and record["attempt"] == 1, record
    sessions = [s for url in platform.runner_urls for s in platform.sessions(url) if s["running"]]
    listed = [s["launchId"] for s in sessions]
    assert len(listed) == len(set(listed)) and set(before) <= set(listed)
    return accepted
