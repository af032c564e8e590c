"""A warm runner's HTTP face: `POST /start` (fenced), `/sessions`, `/health`, `/ready`, and drain on SIGTERM.

Uvicorn on SIGTERM stops accepting connections before the app hears anything, so a plain server
would stay in the standby pool while it shuts down and cut live sessions short. `DrainingServer`
takes the first SIGTERM itself: out of the pool at once, `/start` refused (503), live sessions run up
to `drain_s`, and only then the server stops. A second signal stops it at once.
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

from bot.bot_session import REDIS_ERRORS, Manifold, Runner
from bot.keys import Keys
from bot.models import StartRequest
from bot.service import loguru_console, redis_client, setup_telemetry
from bot.settings import Settings
from otel_session import attach, extract_headers

logger = logging.getLogger(__name__)

READY_PING_S = 1.0


class BodyTooLargeError(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    """The body, or BodyTooLargeError as soon as it passes `limit` bytes (a Content-Length says so up front)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLargeError
    return bytes(body)


def validation_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """Where and what, never the input (a token, a room URL with its secrets)."""
    return [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_context=False, include_input=False)]


def create_app(*, settings: Settings | None = None, telemetry: bool = True, keys: Keys | None = None,
               self_url: str | None = None, slots: int = 1, manifold: Manifold | None = None,
               redis_url: str | None = None) -> FastAPI:
    """A warm runner offering `slots` sessions at `self_url` (what the operator reaches it at)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tel = setup_telemetry("bot-runner") if telemetry else None
        if tel is not None:
            loguru_console()
        s = settings or Settings.from_env()
        importlib.import_module("bot.pipeline")  # Pipecat's import blocks the loop for a second: not in a session
        app.state.runner = runner = Runner(redis_client(s, redis_url), keys or Keys.from_env(), s,
                                           self_url=self_url, slots=slots, manifold=manifold or Manifold.from_env())
        if self_url:
            try:
                await runner.offer(runner.slots)
                logger.info("Warm runner %s waiting in the standby pool (%d slots)", self_url, runner.slots)
            except REDIS_ERRORS as exc:  # it serves anyway: /ready says 503 until Redis answers
                logger.error("Warm runner %s could not join the standby pool (%s: %s)", self_url,
                             type(exc).__name__, exc)
        try:
            yield
        finally:
            await runner.close()
            await runner.redis.aclose()
            if tel is not None:
                tel.force_flush()

    app = FastAPI(title="bot runner", lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        runner: Runner = app.state.runner
        if runner.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        try:
            await asyncio.wait_for(runner.redis.ping(), READY_PING_S)
        except REDIS_ERRORS:
            return JSONResponse({"status": "Redis unavailable"}, status_code=503)
        return JSONResponse({"status": "ready", "busy": runner.busy, "slots": runner.slots})

    @app.post("/start")
    async def start(request: Request) -> JSONResponse:
        runner: Runner = app.state.runner
        ctx = extract_headers(request.headers)  # the operator is inside the platform: trusted
        with attach(ctx):
            try:
                job = StartRequest.model_validate_json(await read_body(request, runner.settings.max_body_bytes))
            except BodyTooLargeError:
                logger.warning("/start refused: the body is over %d bytes", runner.settings.max_body_bytes)
                return JSONResponse({"detail": f"the body is over {runner.settings.max_body_bytes} bytes"},
                                    status_code=413)
            except ValidationError as exc:
                errors = validation_errors(exc)
                logger.warning("/start refused: %s", "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                                               for e in errors))
                return JSONResponse({"detail": errors}, status_code=422)
            try:
                outcome, bot = await runner.start(job, ctx)
            except REDIS_ERRORS as exc:
                logger.warning("/start failed: Redis unavailable (%s: %s)", type(exc).__name__, exc)
                return JSONResponse({"detail": "Redis unavailable"}, status_code=503)
        if bot is not None:
            return JSONResponse({"sessionId": job.sessionId, "launchId": job.launchId, "attempt": job.attempt,
                                 "pid": os.getpid()})
        if outcome in ("draining", "full"):
            return JSONResponse({"detail": outcome}, status_code=503)
        return JSONResponse({"detail": outcome}, status_code=409)

    @app.get("/sessions")
    async def sessions() -> list[dict[str, Any]]:
        return [bot.describe() for bot in app.state.runner.sessions.values()]

    @app.post("/sessions/{launch_id}/leave")
    async def leave(launch_id: str) -> JSONResponse:
        runner: Runner = app.state.runner
        if launch_id not in runner.sessions:
            return JSONResponse({"detail": "no such launch"}, status_code=404)
        status = await runner.stop(launch_id, "left")
        return JSONResponse({"launchId": launch_id, "status": status})

    return app


class DrainingServer(uvicorn.Server):
    """The first SIGTERM/SIGINT drains the app's runner before uvicorn's own shutdown; a second one stops now."""

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
        runner: Runner | None = getattr(self.app.state, "runner", None)
        if self._signalled or self._loop is None or runner is None or not self.started:
            super().handle_exit(sig, frame)
            return
        self._signalled = True
        self._loop.call_soon_threadsafe(self._begin_drain, runner)

    def _begin_drain(self, runner: Runner) -> None:
        if self._drain is None:
            self._drain = asyncio.create_task(self._drain_then_exit(runner), name="drain")

    async def _drain_then_exit(self, runner: Runner) -> None:
        try:
            await runner.drain()
        except Exception:
            logger.exception("Drain failed; stopping anyway")
        finally:
            self.should_exit = True


def serve_warm(host: str, port: int, self_url: str, slots: int, settings: Settings) -> None:
    app = create_app(settings=settings, self_url=self_url, slots=slots)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    server = DrainingServer(config, app)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
