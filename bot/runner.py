"""The bot runner: runs bot sessions, each a Pipecat pipeline inside the caller's session context.

Warm (`--warm`): an HTTP server that waits in the standby pool for `POST /start`.
Cold (`--job`): one session from the environment the operator gave it, then exit.
Sessions are keyed by launch id: a session id is the caller's and may repeat (two tabs, rejoins).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from opentelemetry import trace
from opentelemetry.context import Context
from pydantic import ValidationError
from redis.exceptions import RedisError

from bot import locks
from bot.keys import Keys
from bot.models import Job, KeepaliveValue
from bot.operator import RUNNING_TTL_S
from bot.service import redis_client, setup_telemetry
from otel_session import Telemetry, attach, extract_env, extract_headers, extract_payload, inject_headers, session

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

KEEPALIVE_S = float(os.environ.get("BOT_KEEPALIVE_S", "5"))
ADMIN_POLL_S = 0.5
LEAVE_WAIT_S = 5.0
FINISHED_KEEP_S = 600.0  # ended sessions stay listed this long, then leave the registry
GREETING = "hello, I am your bot"
MANIFOLD_URL = os.environ.get("MANIFOLD_URL", "")
MANIFOLD_MODEL = os.environ.get("MANIFOLD_MODEL", "gpt-4.1-mini")
MANIFOLD_QUESTION = "In one sentence: what can you do for this call?"
MANIFOLD_TIMEOUT_S = 60.0


@dataclass
class BotSession:
    launch_id: str
    session_id: str
    room_url: str
    created_ts: float = field(default_factory=time.time)
    task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def describe(self) -> dict[str, Any]:
        return {"launchId": self.launch_id, "sessionId": self.session_id, "room_url": self.room_url,
                "running": self.running, "created_ts": self.created_ts}


class Runner:
    """The session registry and the bot's lifecycle: keepalive, admin messages, pipeline, cleanup."""

    def __init__(self, redis: Any, keys: Keys, self_url: str | None = None) -> None:
        self.redis, self.keys, self.self_url = redis, keys, self_url
        self.sessions: dict[str, BotSession] = {}
        self.closing = False

    def start(self, job: Job, ctx: Context) -> BotSession:
        cutoff = time.time() - FINISHED_KEEP_S
        for launch_id, old in list(self.sessions.items()):
            if not old.running and old.created_ts < cutoff:
                del self.sessions[launch_id]
        bot = BotSession(job.launchId, job.sessionId, job.room_url)
        self.sessions[job.launchId] = bot
        bot.task = asyncio.create_task(self.run_bot(bot, job, ctx), name=f"bot-{job.launchId}")
        return bot

    async def leave(self, launch_id: str) -> str:
        bot = self.sessions[launch_id]
        if not bot.running or bot.task is None:
            return "already-finished"
        bot.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(bot.task), LEAVE_WAIT_S)
        return "terminated"

    async def run_bot(self, bot: BotSession, job: Job, ctx: Context) -> None:
        with attach(ctx), session(
            session_id=job.sessionId, user_id=job.userId, user_name=job.userName,
            extra={"bot.launch_id": job.launchId},
        ), tracer.start_as_current_span("bot.session"):
            logger.info("Bot session started in room %s", job.room_url)
            inbox: asyncio.Queue[str | None] = asyncio.Queue()
            inbox.put_nowait(GREETING)
            tasks = {
                asyncio.create_task(self._pipeline(inbox), name="pipeline"),
                asyncio.create_task(self._keepalive(bot), name="keepalive"),
                asyncio.create_task(self._admin(bot, inbox), name="admin"),
            }
            try:
                if MANIFOLD_URL:
                    await self._ask_manifold(job, inbox)
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task.exception() is not None:
                        logger.error("Bot %s failed", task.get_name(), exc_info=task.exception())
            except asyncio.CancelledError:
                logger.info("Bot session asked to leave")
                raise
            finally:
                await _cancel_all(tasks)
                await self._release(bot)
                logger.info("Bot session ended")

    async def _pipeline(self, inbox: asyncio.Queue[str | None]) -> None:
        from bot.pipeline import run_pipeline

        replies = await run_pipeline(inbox)
        logger.info("Pipeline finished after %d replies", len(replies))

    async def _ask_manifold(self, job: Job, inbox: asyncio.Queue[str | None]) -> None:
        """One question per session to the manifold, with the W3C headers: its logs join this session."""
        body = {"model": MANIFOLD_MODEL, "stream": True, "user": job.userId or "anonymous",
                "messages": [{"role": "user", "content": MANIFOLD_QUESTION}]}
        answer: list[str] = []
        try:
            async with httpx.AsyncClient(timeout=MANIFOLD_TIMEOUT_S) as client, client.stream(
                "POST", f"{MANIFOLD_URL.rstrip('/')}/v1/chat/completions", json=body,
                headers=inject_headers({"x-chat-id": f"bot-{job.launchId}"}),
            ) as reply:
                reply.raise_for_status()
                async for line in reply.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    data = json.loads(line[6:])
                    for choice in data.get("choices") or []:
                        answer.append(choice.get("delta", {}).get("content") or "")
        except (httpx.HTTPError, ValueError) as exc:
            logger.warning("The manifold could not answer: %s: %s", type(exc).__name__, exc)
            return
        text = "".join(answer)
        logger.info("The manifold answered (%d characters)", len(text))
        inbox.put_nowait(text)

    async def _keepalive(self, bot: BotSession) -> None:
        """Returns when the room's lock is no longer this launch's: then the bot must go."""
        lock_key = self.keys.room_active(bot.room_url)
        while True:
            try:
                value = KeepaliveValue(session_id=bot.session_id, launch_id=bot.launch_id)
                await self.redis.set(self.keys.room_keepalive(bot.room_url), value.model_dump_json(),
                                     ex=max(int(KEEPALIVE_S * 3), 2))
                if not await locks.extend_if_holder(self.redis, lock_key, bot.launch_id, RUNNING_TTL_S):
                    logger.warning("Room lock for %s is no longer this launch's; ending the session", bot.room_url)
                    return
                logger.debug("Keepalive written for room %s", bot.room_url)
            except (RedisError, OSError) as exc:
                logger.warning("Keepalive failed (%s); retrying", exc)
            await asyncio.sleep(KEEPALIVE_S)

    async def _admin(self, bot: BotSession, inbox: asyncio.Queue[str | None]) -> None:
        key = self.keys.admin_queue(bot.room_url)
        while True:
            try:
                raw = await self.redis.lpop(key)
            except (RedisError, OSError) as exc:
                logger.warning("Admin queue unavailable (%s)", exc)
                raw = None
            if raw is None:
                await asyncio.sleep(ADMIN_POLL_S)
                continue
            try:
                data = json.loads(raw)
                message = data["message"]
                if not isinstance(message, str):
                    raise TypeError("message is not text")
            except (ValueError, KeyError, TypeError) as exc:
                logger.warning("Malformed admin message dropped (%s): %r", exc, raw[:80])
                continue
            sender = trace.get_current_span(extract_payload(data, trusted=False)).get_span_context()
            logger.info("Admin message received: %s", message,
                        extra={"bot.admin_trace_id": format(sender.trace_id, "032x")})
            inbox.put_nowait(message)

    async def _release(self, bot: BotSession) -> None:
        """Free the room only if it is still ours; a warm runner offers itself again."""
        try:
            await locks.delete_if_holder(self.redis, self.keys.room_active(bot.room_url), bot.launch_id)
            await locks.delete_if_holder(self.redis, self.keys.room_keepalive(bot.room_url), bot.launch_id)
            if self.self_url and not self.closing:
                await self.redis.lpush(self.keys.standby_pool, self.self_url)
        except (RedisError, OSError) as exc:
            logger.warning("Could not release room %s (%s); its lock expires by itself", bot.room_url, exc)

    async def close(self) -> None:
        self.closing = True
        await asyncio.gather(*(self.leave(lid) for lid in list(self.sessions)), return_exceptions=True)


async def _cancel_all(tasks: set[asyncio.Task[None]]) -> None:
    """Cancel and wait; cancel again what swallowed it (a client library mid-connect may)."""
    for _ in range(10):
        pending = [task for task in tasks if not task.done()]
        if not pending:
            return
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=0.5)
    logger.error("Bot tasks did not stop: %s", [t.get_name() for t in tasks if not t.done()])


def _job_from_body(body: dict[str, Any]) -> Job:
    for key, name in (("sessionId", "session id"), ("launchId", "launch id")):
        if not body.get(key):
            body[key] = uuid.uuid4().hex
            logger.warning("/start without a %s; generated %s", name, body[key])
    return Job.model_validate(body)


def create_app(*, telemetry: bool = True, keys: Keys | None = None, self_url: str | None = None,
               slots: int = 1) -> FastAPI:
    """`self_url` set: a warm runner that waits in the standby pool (`slots` entries)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tel = _setup("bot-runner") if telemetry else None
        k = keys or Keys.from_env()
        app.state.runner = runner = Runner(redis_client(), k, self_url)
        if self_url:
            await runner.redis.lpush(k.standby_pool, *([self_url] * slots))
            logger.info("Warm runner %s waiting in the standby pool", self_url)
        try:
            yield
        finally:
            if self_url:
                with contextlib.suppress(RedisError, OSError):
                    await runner.redis.lrem(k.standby_pool, 0, self_url)
            await runner.close()
            await runner.redis.aclose()
            if tel is not None:
                tel.force_flush()

    app = FastAPI(title="bot runner", lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/start")
    async def start(request: Request) -> JSONResponse:
        runner: Runner = app.state.runner
        ctx = extract_headers(request.headers)  # the operator is inside the platform: trusted
        with attach(ctx):
            try:
                body = await request.json()
                if not isinstance(body, dict):
                    raise ValueError("the body must be a JSON object")
                job = _job_from_body(body)
            except (ValueError, ValidationError) as exc:
                logger.warning("/start refused: %s", exc)
                errors: Any = str(exc)
                if isinstance(exc, ValidationError):
                    errors = exc.errors(include_url=False, include_context=False)
                return JSONResponse({"detail": errors}, status_code=422)
            existing = runner.sessions.get(job.launchId)
            if existing is not None and existing.running:
                logger.warning("/start refused: launch %s is already running", job.launchId)
                return JSONResponse({"detail": "this launch is already running"}, status_code=409)
            runner.start(job, ctx)
        return JSONResponse({"sessionId": job.sessionId, "launchId": job.launchId, "pid": os.getpid()})

    @app.get("/sessions")
    async def sessions() -> list[dict[str, Any]]:
        return [bot.describe() for bot in app.state.runner.sessions.values()]

    @app.post("/sessions/{launch_id}/leave")
    async def leave(launch_id: str) -> JSONResponse:
        runner: Runner = app.state.runner
        if launch_id not in runner.sessions:
            return JSONResponse({"detail": "no such launch"}, status_code=404)
        status = await runner.leave(launch_id)
        return JSONResponse({"launchId": launch_id, "status": status})

    return app


def _setup(service_name: str) -> Telemetry:
    telemetry = setup_telemetry(service_name)
    from loguru import logger as loguru_logger

    import otel_session

    loguru_logger.remove()  # Pipecat's records go through OTel; the console shows only what matters
    loguru_logger.add(sys.stderr, level=os.environ.get("BOT_CONSOLE_LEVEL", "INFO").upper())
    otel_session.install_loguru_bridge()
    return telemetry


async def run_job() -> int:
    """Cold mode: one session from `BOT_*` and the trace context in the environment."""
    telemetry = _setup("bot-runner")
    missing = [name for name in ("BOT_SESSION_ID", "BOT_LAUNCH_ID", "BOT_ROOM_URL") if not os.environ.get(name)]
    if missing:
        logger.error("Cold bot cannot start: %s not set", ", ".join(missing))
        telemetry.force_flush()
        return 2
    ctx = extract_env()
    try:
        with attach(ctx):
            job = Job(room_url=os.environ["BOT_ROOM_URL"], sessionId=os.environ["BOT_SESSION_ID"],
                      launchId=os.environ["BOT_LAUNCH_ID"], token=os.environ.get("BOT_ROOM_TOKEN"))
    except ValidationError as exc:
        logger.error("Cold bot cannot start: %s", exc)
        telemetry.force_flush()
        return 2
    runner = Runner(redis_client(), Keys.from_env())
    bot = runner.start(job, ctx)
    assert bot.task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, bot.task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await bot.task
    await runner.redis.aclose()
    telemetry.force_flush()
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="bot runner")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--warm", action="store_true", help="serve /start and wait in the standby pool")
    mode.add_argument("--job", action="store_true", help="run one session from BOT_* env vars, then exit")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--public-url", default=os.environ.get("RUNNER_URL"),
                        help="the URL the operator reaches this runner at (default http://HOST:PORT)")
    parser.add_argument("--slots", type=int, default=1, help="sessions a warm runner offers at once")
    args = parser.parse_args(argv)
    if args.job:
        sys.exit(asyncio.run(run_job()))
    import uvicorn

    url = args.public_url or f"http://{args.host}:{args.port}"
    app = create_app(self_url=url if args.warm else None, slots=args.slots)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
