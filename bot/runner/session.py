"""A bot's life on a runner: the session registry, the fencing check, keepalive, admin and leave, cleanup.

`BotSessions` holds the bots of one process (a warm runner's, or the one cold bot); `BotSession` is one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from opentelemetry import trace
from opentelemetry.context import Context
from redis.exceptions import RedisClusterException, RedisError

from bot import rooms
from bot.keys import Keys
from bot.launches import Launches
from bot.metrics import RunnerMetrics
from bot.models import KeepaliveValue, StartRequest
from bot.settings import Settings
from otel_session import attach, extract_payload, inject_headers, session

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

T = TypeVar("T")

ADMIN_POLL_S = 0.5
REDIS_CALL_S = 2.0  # one Redis round trip (besides the keepalive, which has its own bound)
LEAVE_WAIT_S = 5.0
FINISHED_KEEP_S = 600.0  # ended sessions stay listed this long, then leave the registry
FIRST_RETRY_S = 0.1  # keepalive and cleanup retries start here and double
GREETING = "hello, I am your bot"
MANIFOLD_QUESTION = "In one sentence: what can you do for this call?"
MANIFOLD_TIMEOUT_S = 60.0
REDIS_ERRORS = (RedisError, RedisClusterException, OSError, asyncio.TimeoutError)  # a cluster outage too


class FaultDrillError(RuntimeError):
    """Raised on purpose by the fault drill (`BOT_FAULT_MESSAGE`): the session fails as a real defect would."""


@dataclass(frozen=True)
class Manifold:
    """Where the bot asks its one question (`MANIFOLD_URL`; unset: it asks nothing)."""

    url: str = ""
    model: str = "gpt-4.1-mini"

    @classmethod
    def from_env(cls) -> Manifold:
        return cls(os.environ.get("MANIFOLD_URL", ""), os.environ.get("MANIFOLD_MODEL") or cls.model)


@dataclass
class BotSession:
    job: StartRequest
    created_ts: float = field(default_factory=time.time)
    task: asyncio.Task[None] | None = None
    stopped: bool = False  # the bot's own tasks are over (its cleanup may still be retrying)
    stop_reason: str = ""  # why it was cancelled from outside (drain, leave, shutdown)
    renewed: float = field(default_factory=time.monotonic)  # last lock renewal (sent), monotonic

    @property
    def launch_id(self) -> str:
        return self.job.launchId

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done() and not self.stopped

    def describe(self) -> dict[str, Any]:
        return {"launchId": self.job.launchId, "sessionId": self.job.sessionId, "attempt": self.job.attempt,
                "running": self.running, "created_ts": self.created_ts}


def session_of(job: StartRequest) -> session:
    extra = {"bot.launch_id": job.launchId}
    if job.personalityId:
        extra["bot.personality_id"] = job.personalityId
    return session(session_id=job.sessionId, user_id=job.userId, user_name=job.userName, extra=extra)


class BotSessions:
    """The registry and lifecycle of the bot sessions in this process, keyed by launch id.

    `self_url` set: a warm runner that offers `slots` entries in the standby pool and puts one back
    each time a slot frees. `cold`: one cold bot (`runner="cold:{pid}"`, its keepalive renews its cold slot).
    `metrics` (default: the global meter provider's): live sessions, their length and failures.
    """

    def __init__(self, redis: Any, keys: Keys, settings: Settings, *, self_url: str | None = None,
                 slots: int = 1, manifold: Manifold | None = None, cold: bool = False,
                 metrics: RunnerMetrics | None = None) -> None:
        self.redis, self.keys, self.settings, self.cold = redis, keys, settings, cold
        self.metrics = metrics or RunnerMetrics.shared()
        self.launches = Launches(redis, keys, settings)
        self.self_url, self.slots = self_url, max(1, slots)
        self.manifold = manifold or Manifold()
        self.sessions: dict[str, BotSession] = {}
        self.draining = False
        self._taking: set[str] = set()  # launch ids whose `take` is in flight
        # the sessions that may still run: `busy` walks these, not the registry's ended ones (kept 10 minutes)
        self._live: dict[str, BotSession] = {}
        self._reoffering: asyncio.Task[bool] | None = None
        self._offering = asyncio.Lock()  # one count-then-push at a time: two would push the same free slot twice
        self._started_at = time.monotonic()  # the last /start (or cold start) that arrived

    @property
    def runner_id(self) -> str:
        return f"cold:{os.getpid()}" if self.cold else self.self_url or f"warm:{os.getpid()}"

    @property
    def busy(self) -> int:
        for launch_id, bot in list(self._live.items()):
            if not bot.running:
                del self._live[launch_id]
        return len(self._taking) + len(self._live)

    # -- the standby pool -------------------------------------------------------------------------

    async def offer(self, count: int = 1) -> None:
        """Put this warm runner's URL into the standby pool `count` times (raises on Redis errors)."""
        if self.self_url and count > 0:
            await _bounded(self.redis.lpush(self.keys.standby_pool, *([self.self_url] * count)))

    async def withdraw(self) -> None:
        """Every pool entry of this runner out, so no operator picks it any more."""
        if self.self_url:
            try:
                await _bounded(self.redis.lrem(self.keys.standby_pool, 0, self.self_url))
            except REDIS_ERRORS as exc:
                logger.warning("Could not leave the standby pool (%s: %s)", type(exc).__name__, exc)

    # -- starting ---------------------------------------------------------------------------------

    async def start(self, job: StartRequest, ctx: Context) -> tuple[str, BotSession | None]:
        """`ok` and the bot, or why not: draining | full | running | fenced | lost | left (or a Redis error)."""
        self._started_at = time.monotonic()
        if self.draining:
            return "draining", None
        existing = self.sessions.get(job.launchId)
        if job.launchId in self._taking or (existing is not None and existing.running):
            return "running", None
        if self.busy >= self.slots:
            return "full", None
        began = time.time()  # the record's `times.started`
        self._prune()
        self._taking.add(job.launchId)
        try:
            keepalive = KeepaliveValue(session_id=job.sessionId, launch_id=job.launchId, attempt=job.attempt)
            sent = time.monotonic()
            outcome = await asyncio.wait_for(
                self.launches.take(job.launchId, job.attempt, job.room, runner=self.runner_id,
                                   kind="cold" if self.cold else "warm", keepalive=keepalive.model_dump_json(),
                                   started=began),
                self.settings.start_timeout_s)
        except REDIS_ERRORS:
            self.reoffer()  # the operator popped our entry for this start: Redis failing must not lose it
            raise
        finally:
            self._taking.discard(job.launchId)
        if outcome != "ok":
            with attach(ctx), session_of(job):
                logger.warning("Start of attempt %d refused: %s", job.attempt, outcome)
            self.reoffer()  # popped for a start that will never come
            return outcome, None
        bot = BotSession(job, renewed=sent)
        self.sessions[job.launchId] = self._live[job.launchId] = bot
        bot.task = asyncio.create_task(self._run(bot, ctx), name=f"bot-{job.launchId}")
        return "ok", bot

    def _prune(self) -> None:
        cutoff = time.time() - FINISHED_KEEP_S
        for launch_id, old in list(self.sessions.items()):
            if (old.task is None or old.task.done()) and old.created_ts < cutoff:
                del self.sessions[launch_id]

    # -- ending -----------------------------------------------------------------------------------

    async def stop(self, launch_id: str, reason: str, wait_s: float = LEAVE_WAIT_S) -> str:
        """Cancel one bot (`reason` goes into its record); `terminated` or `already-finished`."""
        bot = self.sessions[launch_id]
        if not bot.running or bot.task is None:
            return "already-finished"
        if not bot.stop_reason:  # cancel once: a second cancel would cut its cleanup short
            bot.stop_reason = reason
            bot.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(bot.task), wait_s)
        return "terminated"

    async def drain(self) -> None:
        """SIGTERM: out of the pool at once, no new bots, live ones run up to `drain_s`, then end."""
        if self.draining:
            return
        self.draining = True
        await self.withdraw()
        live = [bot for bot in self.sessions.values() if bot.running]
        logger.info("Draining: %d live session(s), up to %.1f s", len(live), self.settings.drain_s)
        tasks = [bot.task for bot in live if bot.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=self.settings.drain_s)
        await self.close("drained")

    async def close(self, reason: str = "runner stopped") -> None:
        self.draining = True
        if self._reoffering is not None:
            self._reoffering.cancel()
        await asyncio.gather(*(self.stop(lid, reason) for lid in list(self.sessions)), return_exceptions=True)
        await self.withdraw()

    # -- one bot ----------------------------------------------------------------------------------

    async def _run(self, bot: BotSession, ctx: Context) -> None:
        job = bot.job
        with attach(ctx), session_of(job), tracer.start_as_current_span("bot.session"):
            logger.info("Bot session started in room %s (attempt %d)", rooms.display(job.room_url), job.attempt)
            inbox: asyncio.Queue[str | None] = asyncio.Queue()
            inbox.put_nowait(GREETING)
            ends: set[asyncio.Task[tuple[str, str]]] = {
                asyncio.create_task(self._pipeline(inbox), name="pipeline"),
                asyncio.create_task(self._keepalive(bot), name="keepalive"),
                asyncio.create_task(self._admin_and_leave(bot, inbox), name="admin"),
                asyncio.create_task(self._max_session(), name="max-session"),
            }
            helpers: set[asyncio.Task[Any]] = set()
            if self.manifold.url:
                helpers.add(asyncio.create_task(self._ask_manifold(job, inbox), name="manifold"))
            status, reason, failure = "ended", "", ""
            mode, began = "cold" if self.cold else "warm", time.monotonic()
            self.metrics.started(mode)
            try:
                done, _ = await asyncio.wait(ends, return_when=asyncio.FIRST_COMPLETED)
                task = next(iter(done))
                if (exc := task.exception()) is not None:
                    logger.error("Bot %s failed", task.get_name(), exc_info=exc)
                    status, reason = "failed", f"bot {task.get_name()} failed: {type(exc).__name__}"
                    failure = "error"
                else:
                    status, reason = task.result()
                    failure = "lock_lost" if status == "failed" else ""  # the keepalive's only way to fail
            except asyncio.CancelledError:
                reason = bot.stop_reason or "stopped"
                logger.info("Bot session stopped (%s)", reason)
                raise
            finally:
                await _cancel_all(ends | helpers)
                bot.stopped = True
                self.metrics.ended(mode, status, time.monotonic() - began, failure)
                await asyncio.shield(self._release(bot, status, reason))
                logger.info("Bot session ended: %s%s", status, f" ({reason})" if reason else "")

    async def _pipeline(self, inbox: asyncio.Queue[str | None]) -> tuple[str, str]:
        from bot.pipeline import run_pipeline

        replies = await run_pipeline(inbox)
        logger.info("Pipeline finished after %d replies", len(replies))
        return "ended", "pipeline finished"

    async def _max_session(self) -> tuple[str, str]:
        await asyncio.sleep(self.settings.max_session_s)
        logger.info("Session reached its maximum length (%.0f s); ending it", self.settings.max_session_s)
        return "ended", "max session length"

    async def _keepalive(self, bot: BotSession) -> tuple[str, str]:
        """Renew the lock every `keepalive_s`; return (end the bot) as soon as it may not be ours.

        Redis errors: retry with a doubling backoff, one warning per failure streak. The last
        renewal that succeeded is timed from before it was sent, so the fence is conservative.
        """
        s, job = self.settings, bot.job
        last_ok = bot.renewed  # `take` set the lock's TTL just before the bot was created
        delay, failing = s.keepalive_s, False
        while True:
            deadline = last_ok + s.fence_after_s
            await asyncio.sleep(max(0.0, min(delay, deadline - time.monotonic())))
            sent = time.monotonic()
            # late (a busy loop): one more try while the lock still lives; the script checks it is ours
            left = deadline - sent if sent < deadline else (last_ok + s.lock_ttl_s - sent) / 2
            value = KeepaliveValue(session_id=job.sessionId, launch_id=job.launchId, attempt=job.attempt)
            try:
                ours = await asyncio.wait_for(
                    self.launches.keepalive(job.launchId, job.attempt, job.room, value.model_dump_json(),
                                            cold=self.cold),
                    max(0.05, min(s.keepalive_s, left)))
            except REDIS_ERRORS as exc:
                if time.monotonic() >= deadline:
                    logger.error("Bot lost its lock (no renewal for %.1f s, the lock lives %.1f s); stopping itself",
                                 time.monotonic() - last_ok, s.lock_ttl_s)
                    return "failed", "lost its lock"
                if not failing:
                    logger.warning("Keepalive failed (%s: %s); retrying with backoff", type(exc).__name__, exc)
                    delay = min(FIRST_RETRY_S, s.keepalive_s)
                else:
                    delay = min(delay * 2, s.keepalive_s)
                failing = True
                continue
            if not ours:
                logger.warning("The room lock is no longer this attempt's; ending the session")
                return "failed", "lock lost"
            if failing:
                logger.info("Keepalive recovered after %.1f s", sent - last_ok)
            last_ok, delay, failing = sent, s.keepalive_s, False
            bot.renewed = sent
            logger.debug("Keepalive written")

    async def _admin_and_leave(self, bot: BotSession, inbox: asyncio.Queue[str | None]) -> tuple[str, str]:
        """One round trip per poll: the next admin message and whether the leave flag is set.

        The fault drill (`BOT_FAULT_MESSAGE` set): a message of exactly that text is not passed on; it
        raises `FaultDrillError` instead, so the session fails the way a defect in the bot would.
        """
        admin_key, leave_key = self.keys.admin_queue(bot.launch_id), self.keys.leave(bot.launch_id)
        failing = False
        while True:
            try:
                pipe = self.redis.pipeline(transaction=False)
                pipe.lpop(admin_key)
                pipe.exists(leave_key)
                raw, leaving = await _bounded(pipe.execute())
            except REDIS_ERRORS as exc:
                if not failing:
                    logger.warning("Admin queue unavailable (%s: %s)", type(exc).__name__, exc)
                failing = True
                await asyncio.sleep(ADMIN_POLL_S)
                continue
            failing = False
            if leaving:
                logger.info("Asked to leave")
                return "ended", "left"
            if raw is None:
                await asyncio.sleep(ADMIN_POLL_S)
                continue
            message = self._admin_message(raw)
            if message is None:
                continue
            if self.settings.fault_message is not None and message == self.settings.fault_message:
                logger.debug("Fault drill message received; failing the session")
                raise FaultDrillError("the fault drill's message (BOT_FAULT_MESSAGE) was received")
            inbox.put_nowait(message)

    @staticmethod
    def _admin_message(raw: str) -> str | None:
        """The message's text (logged with the sender's trace id), or None for a malformed one (dropped)."""
        try:
            data = json.loads(raw)
            message = data["message"]
            if not isinstance(message, str):
                raise TypeError("message is not text")
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            logger.warning("Malformed admin message dropped (%s): %r", type(exc).__name__, raw[:80])
            return None
        sender = trace.get_current_span(extract_payload(data, trusted=False)).get_span_context()
        logger.info("Admin message received: %s", message,
                    extra={"bot.admin_trace_id": format(sender.trace_id, "032x")})
        return message

    async def _ask_manifold(self, job: StartRequest, inbox: asyncio.Queue[str | None]) -> None:
        """One question per session to the manifold, with the W3C headers: its logs join this session."""
        body = {"model": self.manifold.model, "stream": True, "user": job.userId or "anonymous",
                "messages": [{"role": "user", "content": MANIFOLD_QUESTION}]}
        headers = {"x-chat-id": f"bot-{job.launchId}"}
        if job.userName:
            headers["x-user-name"] = job.userName
        if job.personalityId:
            headers["x-personality-id"] = job.personalityId
        answer: list[str] = []
        try:
            async with httpx.AsyncClient(timeout=MANIFOLD_TIMEOUT_S) as client, client.stream(
                "POST", f"{self.manifold.url.rstrip('/')}/v1/chat/completions", json=body,
                headers=inject_headers(headers),
            ) as reply:
                reply.raise_for_status()
                async for line in reply.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    data = json.loads(line[6:])
                    for choice in data.get("choices") or []:
                        answer.append(choice.get("delta", {}).get("content") or "")
        except Exception as exc:  # best effort: whatever the manifold sends, the session goes on
            logger.warning("The manifold could not answer: %s: %s", type(exc).__name__, exc)
            return
        text = "".join(answer)
        logger.info("The manifold answered (%d characters)", len(text))
        inbox.put_nowait(text)

    async def _release(self, bot: BotSession, status: str, reason: str) -> None:
        """Free the room (if still this attempt's) and write the record; then a warm runner offers itself.

        Redis may be away (a self-fenced bot): retry with backoff. A cold bot gives up once its lock
        has expired by itself (past that, its live process would look like a second bot); a warm
        runner keeps trying (its bot is no longer listed as running), so the record ends and the
        runner gets back into the pool. A late release is safe: it only touches this attempt's state.
        """
        job = bot.job
        deadline = bot.renewed + self.settings.lock_ttl_s if self.cold else None
        await self._retry("release the launch", deadline,
                          lambda: self.launches.release(job.launchId, job.attempt, job.room, status, reason))
        if self.self_url:
            await self._retry("offer this runner again", None, self._offer_freed_slot)

    async def keep_offered(self) -> None:
        """An entry back for each free slot the pool lost (a failover can roll back an offer, or a pop without
        its start): a warm runner never drops out of the pool for good. A shortfall counts once it outlived a
        `/start` in flight (`start_timeout_s` with no start arriving): an entry popped for a start on its way is
        not lost. Checked every `keepalive_s`; never raises."""
        short_since: float | None = None
        while True:
            await asyncio.sleep(self.settings.keepalive_s)
            with contextlib.suppress(*REDIS_ERRORS):
                missing = await self._missing()
                now = time.monotonic()
                if missing <= 0:
                    short_since = None
                elif short_since is None or self._started_at >= short_since:
                    short_since = now
                elif now - short_since > self.settings.start_timeout_s:
                    logger.warning("The standby pool lost %d entries of this runner; offering them again", missing)
                    await self._offer_freed_slot()
                    short_since = None

    async def _missing(self) -> int:
        """Free slots without a pool entry (0 when draining or not in the pool)."""
        if not self.self_url or self.draining:
            return 0
        listed = await _bounded(self.redis.lpos(self.keys.standby_pool, self.self_url, count=0))
        return self.slots - self.busy - len(listed or [])

    def reoffer(self) -> None:
        """Put a popped pool entry back, retrying in the background while Redis fails (a failover)."""
        if self.self_url and (self._reoffering is None or self._reoffering.done()):
            self._reoffering = asyncio.create_task(self._retry("offer this runner again", None,
                                                               self._offer_freed_slot))

    async def _offer_freed_slot(self) -> None:
        """Entries back into the pool until it holds one per free slot (unless we drain)."""
        async with self._offering:
            if not self.self_url or self.draining or self.busy >= self.slots:
                return
            await self.offer(await self._missing())

    async def _retry(self, what: str, deadline: float | None, call: Any) -> bool:
        delay, warned = FIRST_RETRY_S, False
        while True:
            try:
                await _bounded(call())
                return True
            except REDIS_ERRORS as exc:
                if deadline is not None and time.monotonic() + delay > deadline:
                    logger.error("Could not %s (%s: %s); giving up, the lock expires by itself",
                                 what, type(exc).__name__, exc)
                    return False
                if not warned:
                    logger.warning("Could not %s yet (%s: %s); retrying", what, type(exc).__name__, exc)
                    warned = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.settings.keepalive_s)


async def _bounded(call: Awaitable[T] | Coroutine[Any, Any, T], timeout: float = REDIS_CALL_S) -> T:
    """A Redis call that cannot hang on a black-holed connection."""
    return await asyncio.wait_for(call, timeout)


async def _cancel_all(tasks: set[asyncio.Task[Any]]) -> None:
    """Cancel and wait; cancel again what swallowed it (a client library mid-connect may)."""
    for _ in range(10):
        pending = [task for task in tasks if not task.done()]
        if not pending:
            return
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=0.5)
    logger.error("Bot tasks did not stop: %s", [t.get_name() for t in tasks if not t.done()])
