"""The edge: `POST /join` validates a caller's ids, takes the room's lock and queues a launch job.

Each join is one trace with the gateway's request span as its root; the caller's ids enter baggage
here and nowhere else (`edge=True`), so baggage a client sent has no effect.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from opentelemetry import trace
from opentelemetry.context import Context
from redis.exceptions import RedisError

from bot import locks
from bot.keys import Keys
from bot.models import AdminRequest, JoinRequest, LockValue
from bot.service import redis_client, setup_telemetry
from otel_session import inject_payload, session

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

PENDING_TTL_S = 60
ADMIN_TTL_S = 3600


def _unavailable(exc: Exception) -> JSONResponse:
    logger.error("Redis unavailable: %s", exc)
    return JSONResponse({"detail": "the launch queue (Redis) is unavailable; try again shortly"}, status_code=503)


def create_app(*, telemetry: bool = True, keys: Keys | None = None) -> FastAPI:
    """`telemetry=False` leaves `otel_session.configure()` to the caller (tests do)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tel = setup_telemetry("bot-gateway") if telemetry else None
        app.state.redis = redis_client()
        app.state.keys = keys or Keys.from_env()
        try:
            yield
        finally:
            await app.state.redis.aclose()
            if tel is not None:
                tel.force_flush()

    app = FastAPI(title="bot gateway", lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/join", status_code=202)
    async def join(req: JoinRequest) -> JSONResponse:
        r, k = app.state.redis, app.state.keys
        session_id = req.sessionId or uuid.uuid4().hex
        launch_id = uuid.uuid4().hex
        with tracer.start_as_current_span("POST /join", context=Context()) as span, session(
            session_id=session_id, user_id=req.userId, user_name=req.userName, edge=True,
            extra={"bot.launch_id": launch_id},
        ):
            if req.sessionId is None:
                logger.info("No sessionId sent; generated %s", session_id)
            lock = LockValue(status="pending", session_id=session_id, launch_id=launch_id)
            try:
                taken = await r.set(k.room_active(req.room_url), lock.dump(), nx=True, ex=PENDING_TTL_S)
            except (RedisError, OSError) as exc:
                return _unavailable(exc)
            if not taken:
                logger.info("Join refused: room %s already has a pending or running bot", req.room_url)
                return JSONResponse({"detail": "this room already has a bot"}, status_code=409)
            job: dict[str, Any] = {
                "room_url": req.room_url, "sessionId": session_id, "launchId": launch_id,
                "userId": req.userId, "userName": req.userName, "personalityId": req.personalityId,
                "token": req.token.get_secret_value() if req.token else None, "created_ts": time.time(),
            }
            job = {key: value for key, value in job.items() if value is not None}
            try:
                await r.rpush(k.launch_queue, json.dumps(inject_payload(job)))
            except (RedisError, OSError) as exc:
                try:
                    await locks.delete_if_holder(r, k.room_active(req.room_url), launch_id)
                except (RedisError, OSError):
                    logger.warning("Could not free the room lock after a failed queue push; it expires in %d s",
                                   PENDING_TTL_S)
                return _unavailable(exc)
            trace_id = format(span.get_span_context().trace_id, "032x")
            logger.info("Launch queued for room %s", req.room_url)
        return JSONResponse(
            {"status": "queued", "sessionId": session_id, "launchId": launch_id, "traceId": trace_id},
            status_code=202,
        )

    @app.post("/admin", status_code=202)
    async def admin(req: AdminRequest) -> JSONResponse:
        r, k = app.state.redis, app.state.keys
        with tracer.start_as_current_span("POST /admin", context=Context()):
            message = inject_payload({"type": "admin_message", "message": req.message, "timestamp": time.time()})
            try:
                key = k.admin_queue(req.room_url)
                await r.rpush(key, json.dumps(message))
                await r.expire(key, ADMIN_TTL_S)
            except (RedisError, OSError) as exc:
                return _unavailable(exc)
            logger.info("Admin message (%d characters) queued for room %s", len(req.message), req.room_url)
        return JSONResponse({"status": "queued"}, status_code=202)

    return app


app = create_app()


def main() -> None:
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description="bot gateway")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
