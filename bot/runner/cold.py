"""A cold bot (`python -m bot.runner --job`): one session from the environment the operator gave it, then exit.

Exit 0: it ran, or it was not to start (its attempt was given up on, its launch ended or left);
1: Redis unavailable at start; 2: its environment is missing or invalid. SIGTERM drains it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import signal
from collections.abc import Mapping

from opentelemetry.context import Context
from pydantic import ValidationError

from bot.http import validation_errors
from bot.keys import Keys
from bot.models import StartRequest
from bot.runner.session import REDIS_ERRORS, BotSessions, Manifold, session_of
from bot.service import loguru_console, redis_client, setup_telemetry
from bot.settings import Settings
from otel_session import attach, extract_env

logger = logging.getLogger(__name__)

REQUIRED = ("BOT_LAUNCH_ID", "BOT_SESSION_ID", "BOT_ROOM_URL", "BOT_ATTEMPT")
FIELDS = {"BOT_LAUNCH_ID": "launchId", "BOT_SESSION_ID": "sessionId", "BOT_ROOM_URL": "room_url",
          "BOT_ROOM_TOKEN": "token", "BOT_ATTEMPT": "attempt", "BOT_USER_ID": "userId", "BOT_USER_NAME": "userName",
          "BOT_PERSONALITY_ID": "personalityId"}
NAMES = {value: name for name, value in FIELDS.items()}


def job_from_env(env: Mapping[str, str]) -> StartRequest:
    """The job, or ValueError naming the variables that are missing or invalid (never their values)."""
    missing = [name for name in REQUIRED if not env.get(name)]
    if missing:
        raise ValueError(f"{', '.join(missing)} not set")
    try:
        return StartRequest.model_validate({field: env[name] for name, field in FIELDS.items() if env.get(name)})
    except ValidationError as exc:
        problems = [f"{NAMES.get(str(e['loc'][0]), e['loc'][0]) if e['loc'] else '?'}: {e['msg']}"
                    for e in validation_errors(exc.errors())]
        raise ValueError("; ".join(problems)) from None


async def run_job(settings: Settings | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    telemetry = setup_telemetry("bot-runner")
    loguru_console()
    try:
        return await _run(settings, env)
    finally:
        telemetry.force_flush()


async def _run(settings: Settings | None, env: Mapping[str, str]) -> int:
    ctx = extract_env(env)
    with attach(ctx):
        try:
            settings = settings or Settings.from_env(env)
            job = job_from_env(env)
        except ValueError as exc:
            logger.error("Cold bot cannot start: %s", exc)
            return 2
    with attach(ctx), session_of(job):  # this process is the session's: every record of it carries the ids
        return await _run_bot(settings, env, job, ctx)


async def _run_bot(settings: Settings, env: Mapping[str, str], job: StartRequest, ctx: Context) -> int:
    importlib.import_module("bot.pipeline")  # before the bot starts: the import blocks the loop for a second
    bots = BotSessions(redis_client(settings), Keys(env.get("BOT_KEY_PREFIX", "")), settings,
                       manifold=Manifold(env.get("MANIFOLD_URL", ""), env.get("MANIFOLD_MODEL") or Manifold.model),
                       cold=True)
    try:
        loop = asyncio.get_running_loop()
        stopping: list[asyncio.Task[None]] = []

        def on_signal() -> None:  # the first drains, a second stops at once
            stopping.append(loop.create_task(bots.close("stopped") if stopping else bots.drain()))

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        try:
            outcome, bot = await bots.start(job, ctx)
        except REDIS_ERRORS as exc:
            logger.error("Cold bot cannot start: Redis unavailable (%s: %s)", type(exc).__name__, exc)
            return 1
        if bot is None or bot.task is None:
            logger.info("Cold bot not started: %s", outcome)
            return 0
        with contextlib.suppress(asyncio.CancelledError):
            await bot.task
        return 0
    finally:
        await bots.redis.aclose()
