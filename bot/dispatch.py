"""One launch job's dispatch: claim it, start it on a warm runner or as a cold bot, exactly once.

Each attempt is claimed before anything is sent and given up on by claiming again, which fences it:
a late `/start` or cold bot for that attempt is refused by its own `take`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

import httpx

from bot import rooms
from bot.launcher import Launcher
from bot.launches import Claim, Launches
from bot.models import Job
from otel_session import inject_env, inject_headers

logger = logging.getLogger(__name__)

JOB_ENV = ("BOT_SESSION_ID", "BOT_LAUNCH_ID", "BOT_ROOM_URL", "BOT_ROOM_TOKEN", "BOT_ATTEMPT", "BOT_USER_ID",
           "BOT_USER_NAME", "BOT_PERSONALITY_ID")
TAKEN = "room taken by a newer launch"
COLD_FAILED = "the cold bot did not start"
COLD_TRIES = 2  # cold bots launched for one job before it fails
POLL_S = 0.1  # how often a booting cold bot's record is read


class LaunchError(Exception):
    """The launch cannot start; `reason` goes into its record and its dead letter."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def cold_env(job: Job, attempt: int, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The operator's own configuration, the current trace context, and the job's ids and attempt.

    A missing value is an absent variable, never an empty string (nor a stale one from our env).
    """
    env = {k: v for k, v in (os.environ if base is None else base).items() if v and k not in JOB_ENV}
    inject_env(env)
    values = {"BOT_SESSION_ID": job.sessionId, "BOT_LAUNCH_ID": job.launchId, "BOT_ROOM_URL": job.room_url,
              "BOT_ROOM_TOKEN": job.token, "BOT_ATTEMPT": str(attempt), "BOT_USER_ID": job.userId,
              "BOT_USER_NAME": job.userName, "BOT_PERSONALITY_ID": job.personalityId}
    env.update({k: v for k, v in values.items() if v})
    return env


def runner_url_error(url: object) -> str | None:
    """Why a standby-pool entry is not a runner's base URL (None: it is one): the room URL rules."""
    if not isinstance(url, str):
        return "not a URL"
    try:
        rooms.canonical(url)
    except ValueError as exc:
        return str(exc)
    return None


class Dispatch:
    """One job's dispatch. `attempt` is the attempt this operator holds (0: none), for a hand-back."""

    def __init__(self, raw: str, job: Job, *, launches: Launches, launcher: Launcher, http: httpx.AsyncClient,
                 operator_id: str, cold: dict[str, int], abort: asyncio.Event | None = None) -> None:
        self.raw, self.job, self.pending = raw, job, job.pending_lock()
        self.launches, self.launcher, self.http, self.operator_id = launches, launcher, http, operator_id
        self.settings = launches.settings
        self.cold = cold  # launch id -> pid of its newest cold bot, shared with the operator's reaper
        # Set when the operator stops: the dispatch hands its job back at its next step. Cancelling the task is
        # not enough on its own: redis-py's asyncio client now and then swallows a task's cancellation.
        self.abort = abort or asyncio.Event()
        self.handing_back = False
        self.attempt = 0
        self.mode = ""  # warm or cold: how the current attempt is being started
        self.outcome = ""  # the last claim's outcome when it gave no attempt
        self.pid: int | None = None
        self.slot = False  # this dispatch holds the launch's cold slot
        self.room = rooms.display(job.room_url)

    async def run(self) -> str:
        """`started` (`mode` says how), `done` (nothing to start), `requeued` (no capacity: back in the queue) or
        `retry` (the launch is no longer this operator's to decide: left in the processing list for recovery).
        Raises `LaunchError` when it cannot launch, and `RedisError` when Redis failed."""
        if end := await self._settle(await self.launches.claim(self.pending, self.operator_id)):
            return end
        while (url := await self._next_runner()) is not None:
            self._check_abort()
            self.mode = "warm"
            if await self._start_warm(url):
                return "started"
            if end := await self._give_up():
                return end
        return await self._cold()

    async def _settle(self, claim: Claim, after: str = "") -> str | None:
        """None when `claim` gave this operator an attempt to dispatch; else how the job ends."""
        job, ours = self.job, self.attempt
        if claim.outcome == "claimed":
            self.attempt = claim.attempt
            logger.debug("Launch %s claimed: attempt %d by %s", job.launchId, claim.attempt, self.operator_id)
            return None
        self.attempt = 0
        self.outcome = claim.outcome
        if claim.outcome == "running":
            if after:
                logger.info("Launch %s started after all (attempt %d, %s)", job.launchId, claim.attempt, after)
                if ours and claim.attempt == ours:
                    return "started"  # the attempt given up on is the one bot: started by this dispatch
            else:
                logger.info("Launch %s is already running (job delivered again); not starting a second bot",
                            job.launchId)
            return "done"
        if claim.outcome == "orphan":
            logger.warning("Launch %s reads running (attempt %d) but its bot renews nothing (a take a failover kept, "
                           "its bot gone); left for recovery, claimed again once its lock lapses", job.launchId,
                           claim.attempt)
            return "retry"
        if claim.outcome == "ended":
            logger.info("Launch %s ended before it started (%s); nothing to start", job.launchId, claim.reason)
            return "done"
        if claim.outcome == "taken":
            logger.warning("Job rejected: room %s is taken by a newer launch than %s", self.room, job.launchId)
            raise LaunchError(TAKEN)
        logger.warning("Launch %s: its attempt is no longer this operator's (lock lost); left for recovery",
                       job.launchId)
        return "retry"

    async def _give_up(self, after: str = "the runner did not confirm") -> str | None:
        """Fence the current attempt (claim the next one); how the job ends if it needs no new attempt."""
        gave_up = self.attempt
        claim = await self.launches.claim(self.pending, self.operator_id, expected_attempt=gave_up)
        if claim.outcome == "claimed":
            logger.info("Launch %s: attempt %d given up on (fenced); trying attempt %d", self.job.launchId,
                        gave_up, claim.attempt)
        return await self._settle(claim, after)

    # -- warm ---------------------------------------------------------------------------------

    async def _next_runner(self) -> str | None:
        while (url := await self.launches.redis.rpop(self.launches.keys.standby_pool)) is not None:
            if (error := runner_url_error(url)) is None:
                return str(url)
            logger.warning("Standby pool entry %r dropped: %s", str(url)[:100], error)
        return None

    async def _start_warm(self, url: str) -> bool:
        body: dict[str, Any] = {**self.job.model_dump(exclude={"otel"}, exclude_none=True), "attempt": self.attempt}
        timeout = self.settings.start_timeout_s
        try:
            reply = await self.http.post(f"{url.rstrip('/')}/start", json=body, headers=dict(inject_headers({})),
                                         timeout=timeout)
        except httpx.TimeoutException:
            logger.warning("Warm runner %s did not answer /start for launch %s within %.1f s; dropped from the "
                           "pool", url, self.job.launchId, timeout)
            return False
        except httpx.HTTPError as exc:
            logger.warning("Warm runner %s failed (%s); dropped from the pool", url, type(exc).__name__)
            return False
        if reply.status_code == 200:
            logger.info("Warm runner %s started launch %s in room %s (attempt %d)", url, self.job.launchId,
                        self.room, self.attempt)
            return True
        logger.warning("Warm runner %s refused /start for launch %s with %d; dropped from the pool", url,
                       self.job.launchId, reply.status_code)
        return False

    # -- cold ---------------------------------------------------------------------------------

    async def _cold(self) -> str:
        launches, job = self.launches, self.job
        for tries in range(1, COLD_TRIES + 1):
            self.slot = await launches.cold_slot(job.launchId)
            if not self.slot:
                await launches.requeue(self.raw, self.pending, self.attempt)
                logger.info("Standby pool empty and all %d cold slots in use; launch %s back in the queue",
                            self.settings.max_cold, job.launchId)
                self.attempt = 0
                return "requeued"
            self.mode = "cold"
            self.pid = pid = self.launcher.launch(job.launchId, cold_env(job, self.attempt))
            self.cold[job.launchId] = pid
            logger.info("Standby pool empty; cold bot pid %d started for launch %s in room %s (attempt %d)", pid,
                        job.launchId, self.room, self.attempt)
            why = await self._wait_cold(pid)
            if why is None:
                return "started"
            end = await self._give_up(why)
            if end and self.outcome == "running":
                return "started"  # it took the launch just as we gave up on it: it is the one bot
            if end:
                await self.abandon()
                return end
            self.kill()
            logger.warning("Cold bot pid %d did not start launch %s (%s); try %d of %d failed", pid, job.launchId,
                           why, tries, COLD_TRIES)
        await self.abandon()
        raise LaunchError(COLD_FAILED)

    async def _wait_cold(self, pid: int) -> str | None:
        """None once the cold bot took its attempt; else why not (it exited, or the bound passed)."""
        launches, job = self.launches, self.job
        bound = self.settings.cold_start_timeout_s
        deadline = time.monotonic() + bound
        hold_every = min(1.0, self.settings.lock_ttl_s / 3)
        next_hold = time.monotonic() + hold_every
        while True:
            rec = await launches.record(job.launchId)
            if rec and rec.get("status") == "running" and str(rec.get("attempt")) == str(self.attempt):
                logger.info("Cold bot pid %d took launch %s (attempt %d)", pid, job.launchId, self.attempt)
                return None
            if rec and rec.get("status") in ("ended", "failed"):
                return f"the launch {rec.get('status')}"
            if not self.launcher.alive(pid):
                return "it exited before it took the launch"
            now = time.monotonic()
            if now >= deadline:
                return f"it did not take the launch within {bound:.1f} s"
            self._check_abort()
            if now >= next_hold:
                next_hold = now + hold_every
                if not await launches.hold(self.pending, self.attempt):
                    return "its starting lock is gone"
                await launches.cold_slot(job.launchId)
            await asyncio.sleep(POLL_S)

    def kill(self) -> None:
        if self.pid is not None and self.launcher.alive(self.pid):
            logger.warning("Stopping cold bot pid %d of launch %s: its attempt was given up on", self.pid,
                           self.job.launchId)
            self.launcher.kill(self.pid)

    async def abandon(self) -> None:
        """The launch will not start here: stop our cold bot, if any, and free its slot."""
        if self.pid is not None:
            self.kill()
            if self.cold.get(self.job.launchId) == self.pid:
                del self.cold[self.job.launchId]
            self.pid = None
        if self.slot:
            self.slot = False
            await self.launches.free_cold_slot(self.job.launchId)

    # -- shutdown -----------------------------------------------------------------------------

    def _check_abort(self) -> None:
        if self.abort.is_set():
            raise asyncio.CancelledError("the operator is stopping")

    async def hand_back(self) -> None:
        """SIGTERM cut the dispatch short: fence the attempt in flight and put the job back at the queue head.

        If the attempt had started meanwhile, the job is done instead: never a second bot.
        """
        self.handing_back = True
        launches, job = self.launches, self.job
        attempt = self.attempt
        if attempt:
            claim = await launches.claim(self.pending, self.operator_id, expected_attempt=attempt)
            if claim.outcome in ("running", "ended"):
                logger.info("Launch %s %s while the operator stopped; done", job.launchId, claim.outcome)
                await launches.done(self.raw)
                return
            if claim.outcome != "claimed":
                logger.warning("Launch %s is no longer this operator's (%s); left for recovery", job.launchId,
                               claim.outcome)
                return
            attempt = claim.attempt
        await self.abandon()
        await launches.requeue(self.raw, self.pending, attempt)
        logger.info("Operator stopping: launch %s handed back to the queue", job.launchId)
