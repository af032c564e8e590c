"""A warm runner's HTTP face: `POST /start` (fenced), `/sessions`, `/health`, `/ready`, and drain on SIGTERM.

`python -m bot.runner --warm` serves it behind `DrainingServer`. `create_app()` needs no arguments, so
`uvicorn --factory bot.runner.app:create_app` serves it too (in the pool when `RUNNER_URL` is set; no drain).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from bot.http import SERVER_KEEPALIVE_S, install_request_limits, validation_errors
from bot.keys import Keys
from bot.models import StartRequest
from bot.runner.session import REDIS_ERRORS, BotSessions, Manifold
from bot.service import loguru_console, redis_client, setup_telemetry
from bot.settings import Settings
from otel_session import attach, extract_headers

logger = logging.getLogger(__name__)

READY_PING_S = 1.0


def create_app(*, settings: Settings | None = None, telemetry: bool = True, keys: Keys | None = None,
               self_url: str | None = None, slots: int = 1, manifold: Manifold | None = None,
               redis_url: str | None = None) -> FastAPI:
    """A warm runner offering `slots` sessions at `self_url` (what the operator reaches it at; default
    `RUNNER_URL`, unset: not in the standby pool). `settings` default to the environment's, read here, once."""
    settings = settings or Settings.from_env()
    self_url = self_url or os.environ.get("RUNNER_URL") or None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tel = setup_telemetry("bot-runner") if telemetry else None
        if tel is not None:
            loguru_console()
        importlib.import_module("bot.pipeline")  # Pipecat's import blocks the loop for a second: not in a session
        app.state.bots = bots = BotSessions(redis_client(settings, redis_url), keys or Keys.from_env(), settings,
                                            self_url=self_url, slots=slots,
                                            manifold=manifold or Manifold.from_env())
        if self_url:
            try:
                await bots.offer(bots.slots)
                logger.info("Warm runner %s waiting in the standby pool (%d slots)", self_url, bots.slots)
            except REDIS_ERRORS as exc:  # it serves anyway: /ready says 503 until Redis answers
                logger.error("Warm runner %s could not join the standby pool (%s: %s)", self_url,
                             type(exc).__name__, exc)
        keeper = asyncio.create_task(bots.keep_offered()) if self_url else None
        try:
            yield
        finally:
            if keeper is not None:
                keeper.cancel()
            await bots.close()
            await bots.redis.aclose()
            if tel is not None:
                tel.force_flush()

    app = FastAPI(title="bot runner", lifespan=lifespan)
    install_request_limits(app, settings)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        bots: BotSessions = app.state.bots
        if bots.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        try:
            await asyncio.wait_for(bots.redis.ping(), READY_PING_S)
        except REDIS_ERRORS:
            return JSONResponse({"status": "Redis unavailable"}, status_code=503)
        return JSONResponse({"status": "ready", "busy": bots.busy, "slots": bots.slots})

    @app.post("/start")
    async def start(request: Request) -> JSONResponse:
        bots: BotSessions = app.state.bots
        ctx = extract_headers(request.headers)  # the operator is inside the platform: trusted
        with attach(ctx):
            try:  # the body is already bounded (`install_request_limits`: 413 beyond the cap)
                job = StartRequest.model_validate_json(await request.body())
            except ValidationError as exc:
                errors = validation_errors(exc.errors())
                logger.warning("/start refused: %s", "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                                               for e in errors))
                return JSONResponse({"detail": errors}, status_code=422)
            try:
                outcome, bot = await bots.start(job, ctx)
            except REDIS_ERRORS as exc:
                logger.warning("/start failed: Redis unavailable (%s: %s)", type(exc).__name__, exc)
                return JSONResponse({"detail": "Redis unavailable"}, status_code=503)
        if bot is not None:
            return JSONResponse({"sessionId": job.sessionId, "launchId": job.launchId, "attempt": job.attempt,
                                 "pid": os.getpid()})
        if outcome in ("draining", "full", "unreplicated"):
            return JSONResponse({"detail": outcome}, status_code=503)
        return JSONResponse({"detail": outcome}, status_code=409)

    @app.get("/sessions")
    async def sessions() -> list[dict[str, Any]]:
        return [bot.describe() for bot in app.state.bots.sessions.values()]

    @app.post("/sessions/{launch_id}/leave")
    async def leave(launch_id: str) -> JSONResponse:
        bots: BotSessions = app.state.bots
        if launch_id not in bots.sessions:
            return JSONResponse({"detail": "no such launch"}, status_code=404)
        status = await bots.stop(launch_id, "left")
        return JSONResponse({"launchId": launch_id, "status": status})

    return app


class DrainingServer(uvicorn.Server):
    """The first SIGTERM/SIGINT drains the app's bots before uvicorn's own shutdown; a second one stops now.

    Uvicorn alone stops accepting connections before the app hears of the signal: the runner would stay
    in the pool while it shuts down. Here it leaves the pool at once, refuses `/start` (503), lets live
    sessions run up to `drain_s`, and only then stops.
    """

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self.app = app
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain: asyncio.Task[None] | None = None
        self._signalled = False

    async def serve(self, sockets: Any = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        bots: BotSessions | None = getattr(self.app.state, "bots", None)
        if self._signalled or self._loop is None or bots is None or not self.started:
            super().handle_exit(sig, frame)
            return
        self._signalled = True
        self._loop.call_soon_threadsafe(self._begin_drain, bots)

    def _begin_drain(self, bots: BotSessions) -> None:
        if self._drain is None:
            self._drain = asyncio.create_task(self._drain_then_exit(bots), name="drain")

    async def _drain_then_exit(self, bots: BotSessions) -> None:
        try:
            await bots.drain()
        except Exception:
            logger.exception("Drain failed; stopping anyway")
        finally:
            self.should_exit = True


def serve_warm(host: str, port: int, self_url: str, slots: int, settings: Settings) -> None:
    app = create_app(settings=settings, self_url=self_url, slots=slots)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on",
                            timeout_keep_alive=SERVER_KEEPALIVE_S)
    server = DrainingServer(config, app)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
