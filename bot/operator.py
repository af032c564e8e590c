"""The queue worker: takes launch jobs from Redis and starts a bot for each, warm or cold.

At-least-once: a job moves to a processing list when taken and leaves it only after dispatch, so
a crashed operator's jobs are dispatched again on restart; the room lock (compare-and-set on the
launch id) makes sure that never becomes a second bot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Mapping
from typing import Any

import httpx
from opentelemetry import trace
from pydantic import ValidationError
from redis.exceptions import RedisError

from bot import locks
from bot.keys import Keys
from bot.launcher import Launcher, ProcessLauncher
from bot.models import Job, LockValue
from bot.service import redis_client, setup_telemetry
from otel_session import attach, extract_payload, inject_env, inject_headers

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

RUNNING_TTL_S = 30  # the bot's keepalive refreshes it; a dead bot frees its room after this
START_TIMEOUT_S = 3.0
BOT_ENV = ("BOT_SESSION_ID", "BOT_LAUNCH_ID", "BOT_ROOM_URL", "BOT_ROOM_TOKEN")


def cold_env(job: Job, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The operator's own configuration, the current trace context, and the job's ids.

    A missing value is an absent variable, never an empty string (nor a stale one from our env).
    """
    env = {k: v for k, v in (os.environ if base is None else base).items() if v and k not in BOT_ENV}
    inject_env(env)
    values = {"BOT_SESSION_ID": job.sessionId, "BOT_LAUNCH_ID": job.launchId, "BOT_ROOM_URL": job.room_url,
              "BOT_ROOM_TOKEN": job.token}
    env.update({k: v for k, v in values.items() if v})
    return env


class Operator:
    def __init__(self, redis: Any, keys: Keys, launcher: Launcher, http: httpx.AsyncClient) -> None:
        self.redis, self.keys, self.launcher, self.http = redis, keys, launcher, http

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`: survive Redis going away (backoff, reconnect), and recover after each reconnect."""
        backoff, recovered = 0.1, False
        while not stop.is_set():
            try:
                if not recovered:
                    await self.recover()
                    recovered = True
                raw = await self.redis.blmove(self.keys.launch_queue, self.keys.processing, 1, "LEFT", "RIGHT")
                backoff = 0.1
                self.launcher.reap()
                if raw is not None:
                    await self.handle(raw)
            except (RedisError, OSError) as exc:
                recovered = False
                logger.warning("Redis unavailable (%s); retrying in %.1f s", exc, backoff)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                backoff = min(backoff * 2, 5.0)

    async def recover(self) -> None:
        left = await self.redis.lrange(self.keys.processing, 0, -1)
        if left:
            logger.warning("Re-dispatching %d jobs a previous operator left unfinished", len(left))
        for raw in left:
            await self.handle(raw)

    async def handle(self, raw: str) -> None:
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or not isinstance(data.get("otel"), dict):
                raise ValueError("a job is a JSON object with an 'otel' trace-context object")
            job = Job.model_validate(data)
        except (ValueError, ValidationError) as exc:
            await self.dead_letter(raw, exc)
            return
        with attach(extract_payload(data)), tracer.start_as_current_span("operator.dispatch"):
            try:
                await self.dispatch(job)
            except (RedisError, ConnectionError):
                raise  # Redis itself: the run loop backs off, and the job stays to be dispatched again
            except Exception as exc:  # a launch that failed: retrying the same job would fail the same way
                logger.exception("Launch %s failed; freeing room %s", job.launchId, job.room_url)
                await locks.delete_if_holder(self.redis, self.keys.room_active(job.room_url), job.launchId)
                await self.dead_letter(raw, exc)
                return
        await self.redis.lrem(self.keys.processing, 1, raw)

    async def dead_letter(self, raw: str, exc: Exception) -> None:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        logger.error("Malformed launch job moved to the dead-letter list: %s (job starts %r)", reason, raw[:80])
        entry = json.dumps({"job": raw, "error": str(exc), "timestamp": time.time()})
        async with self.redis.pipeline(transaction=True) as pipe:  # same hash tag: one slot
            pipe.rpush(self.keys.dead_letter, entry)
            pipe.lrem(self.keys.processing, 1, raw)
            await pipe.execute()

    async def dispatch(self, job: Job) -> None:
        key = self.keys.room_active(job.room_url)
        held = await self.redis.get(key)
        try:
            lock = LockValue.model_validate_json(held) if held else None
        except ValidationError:
            lock = None
        if lock is None or lock.launch_id != job.launchId:
            logger.warning("Job rejected: room %s is not locked for launch %s (stale or duplicate job)",
                           job.room_url, job.launchId)
            return
        if lock.status == "running":
            logger.info("Launch %s is already running (job delivered again); not starting a second bot",
                        job.launchId)
            return
        if await self.dispatch_warm(job, key):
            return
        pid = self.launcher.launch(job.launchId, cold_env(job))
        running = LockValue(status="running", type="cold", session_id=job.sessionId, launch_id=job.launchId, pid=pid)
        if await locks.set_if_holder(self.redis, key, job.launchId, running.dump(), RUNNING_TTL_S):
            logger.info("Cold bot started for room %s (pid %d)", job.room_url, pid)
        else:
            logger.warning("Room %s lock lost while starting cold bot pid %d; it will stop itself", job.room_url, pid)

    async def dispatch_warm(self, job: Job, key: str) -> bool:
        body = job.model_dump(exclude={"otel"}, exclude_none=True)
        while (url := await self.redis.rpop(self.keys.standby_pool)) is not None:
            try:
                reply = await self.http.post(f"{url}/start", json=body, headers=inject_headers({}),
                                             timeout=START_TIMEOUT_S)
            except httpx.HTTPError as exc:
                logger.warning("Warm runner %s failed (%s: %s); dropped from the pool", url, type(exc).__name__, exc)
                continue
            if not reply.is_success:
                logger.warning("Warm runner %s answered /start with %d; dropped from the pool", url, reply.status_code)
                continue
            running = LockValue(status="running", type="warm", session_id=job.sessionId, launch_id=job.launchId,
                                runner_url=url)
            if await locks.set_if_holder(self.redis, key, job.launchId, running.dump(), RUNNING_TTL_S):
                logger.info("Warm runner %s started the bot for room %s", url, job.room_url)
            else:
                logger.warning("Room %s lock lost while starting on %s; asking it to leave", job.room_url, url)
                with contextlib.suppress(httpx.HTTPError):
                    await self.http.post(f"{url}/sessions/{job.launchId}/leave", timeout=START_TIMEOUT_S)
            return True
        logger.info("Standby pool empty; starting a cold bot")
        return False


async def serve(stop: asyncio.Event | None = None) -> None:
    telemetry = setup_telemetry("bot-operator")
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    redis = redis_client()
    async with httpx.AsyncClient() as http:
        operator = Operator(redis, Keys.from_env(), ProcessLauncher(), http)
        logger.info("Operator started")
        try:
            await operator.run(stop)
        finally:
            logger.info("Operator stopping")
            await redis.aclose()
            telemetry.force_flush()


def main() -> None:
    asyncio.run(serve())


if __name__ == "__main__":
    main()
