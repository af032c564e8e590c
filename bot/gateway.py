"""The edge: `POST /join` validates a caller's ids and queues a launch that holds the room's claim.

    python -m bot.gateway --port 8000
    uvicorn --factory bot.gateway:create_app --port 8000   # the same app; `create_app()` needs no arguments

Each join is one trace rooted here; the caller's ids enter baggage here and nowhere else (`edge=True`).
A caller's `traceparent` is linked, not continued (`BOT_EDGE_TRACE`); CORS and `Server-Timing`: `bot.edge`.
A join's answer carries a telemetry token, with which the page sends its own log records to `POST /v1/logs`
(`bot.log_relay`).
Overload is 429 with Retry-After; 503 (with Retry-After too) means Redis does not answer, or no replica
confirmed the join in time (`BOT_REPLICA_WAIT_MS`): a 202 is a promise a failover cannot undo (`bot.replicas`).
Every answer to `/join` is counted by its outcome, and the queue's lengths sampled, for the metrics (`bot.metrics`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from opentelemetry import trace
from pydantic import ValidationError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot import rooms
from bot.edge import install_edge, root_span
from bot.http import install_request_limits, validation_errors
from bot.keys import Keys
from bot.launches import STATUSES, Launches
from bot.log_relay import LogRelay
from bot.metrics import JOIN_OUTCOME, GatewayMetrics, JoinOutcomes, sample_every_s, sample_forever, stop_sampler
from bot.models import AdminRequest, Job, JoinRequest, LeaveRequest
from bot.replicas import NotReplicatedError
from bot.service import REDIS_ERRORS, pool_exhausted, redis_client, setup_telemetry
from bot.settings import Settings
from bot.signals import stop_following
from bot.status_watch import StatusWatch, WaitQueryError, unless_disconnected, wait_query
from bot.telemetry_token import TokenSigner
from otel_session import id_error, inject_payload, session
from otel_session.live import urls

# Redis (or a Cluster) away, or the socket under it: answered 503/429, never a defect (TimeoutError is an OSError)
OUTAGES: tuple[type[Exception], ...] = (*REDIS_ERRORS, OSError)

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

RETRY_AFTER_BUSY_S = 1  # every pooled connection was busy: try again soon
RETRY_AFTER_FULL_S = 5  # the launch queue is at BOT_MAX_QUEUE: operators need a while
RETRY_AFTER_DOWN_S = 2  # Redis does not answer: a Sentinel failover takes a few seconds
RETRY_AFTER_UNREPLICATED_S = 1  # no replica confirmed the join: replication lags, or a failover is under way
NOT_REPLICATED = "not confirmed by a replica in time; refused with 503"
READY_TIMEOUT_S = 1.0
RENEW_WARN_EVERY_S = 30.0
LEFT_UNCONFIRMED = "left; the bot did not confirm"

def _detail(status: int, detail: str, launch_id: str | None = None, **headers: str) -> JSONResponse:
    body = {"detail": detail} if launch_id is None else {"detail": detail, "launchId": launch_id}
    return JSONResponse(body, status_code=status, headers=headers or None)


class Answering:
    """When Redis last answered this process: a timeout just after an answer is our overload, not an outage."""

    RECENT_S = 5.0

    def __init__(self) -> None:
        self.last = time.monotonic()

    def ok(self) -> None:
        self.last = time.monotonic()

    def recently(self) -> bool:
        return time.monotonic() - self.last < self.RECENT_S


async def redis_failed(exc: BaseException, answering: Answering, launch_id: str | None = None) -> JSONResponse:
    """429 while Redis answers and we are only busy, 503 when it does not answer.

    `launch_id`: the join the failed call may still have queued (it failed after it was sent): named in the
    answer, so its caller can ask for it (`GET /launches/{id}`) rather than meet it later unannounced.

    Busy: the pool had no free connection in time, or a call timed out while Redis kept answering
    (under load a saturated event loop makes a connect or read timeout fire).
    """
    busy = pool_exhausted(exc) or (isinstance(exc, (TimeoutError, RedisTimeoutError)) and answering.recently())
    if busy:
        logger.warning("Redis answers but the gateway is overloaded (%s); answering 429", type(exc).__name__)
        return _detail(429, "the gateway is overloaded; try again shortly", launch_id,
                       **{"Retry-After": str(RETRY_AFTER_BUSY_S)})
    logger.error("Redis unavailable: %s", type(exc).__name__)
    return _detail(503, "the launch queue (Redis) is unavailable; try again shortly", launch_id,
                   **{"Retry-After": str(RETRY_AFTER_DOWN_S)})


async def _warm(client: Any, size: int) -> None:
    """Open the pool's connections at start, so a burst of joins never waits on connects. A cluster client
    has a pool per node and none to read here: it learns the slots (and connects) instead."""
    if urls.is_cluster(client):
        try:
            await client.initialize()
        except OUTAGES as exc:
            logger.warning("Redis Cluster not reachable at start (%s); connecting on demand", type(exc).__name__)
        return
    pool, held = client.connection_pool, []
    try:
        for _ in range(size):
            held.append(await pool.get_connection())
    except OUTAGES as exc:
        logger.warning("Redis not reachable at start (%s); connecting on demand", type(exc).__name__)
    finally:
        for connection in held:
            await pool.release(connection)


async def _redis_error(request: Request, exc: Exception) -> JSONResponse:
    """The backstop for a Redis error a route did not answer itself."""
    return await redis_failed(exc, request.app.state.answering)


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def _renew_claims(launches: Launches, every_s: float) -> None:
    """Keeps every queued launch's room claim alive however long the operators are away; never raises."""
    last_warning = -RENEW_WARN_EVERY_S
    while True:
        await asyncio.sleep(every_s)
        try:
            await launches.renew_claims()
        except Exception as exc:
            if time.monotonic() - last_warning >= RENEW_WARN_EVERY_S:
                last_warning = time.monotonic()
                logger.warning("Could not renew the queued launches' room claims (%s); retrying every %.1f s",
                               type(exc).__name__, every_s)


def _outcome(request: Request, outcome: str) -> None:
    """Names a join's outcome for `bot.joins` (`JoinOutcomes` counts it when the answer leaves)."""
    request.scope.setdefault("state", {})[JOIN_OUTCOME] = outcome


def create_app(*, settings: Settings | None = None, keys: Keys | None = None, telemetry: bool = True,
               metrics: GatewayMetrics | None = None) -> FastAPI:
    """`settings` default to the environment's, read here, once. `telemetry=False` leaves
    `otel_session.configure()` to the caller (tests do); `metrics` default to the global meter provider's."""
    settings = settings or Settings.from_env()
    metrics = metrics or GatewayMetrics.shared()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tel = setup_telemetry("bot-gateway") if telemetry else None
        app.state.tokens = TokenSigner.from_setting(settings.telemetry_key)  # after telemetry: its warning is exported
        app.state.redis = redis_client(settings)
        # /ready has its own connection: an overloaded pool is not an unreachable Redis
        app.state.probe = redis_client(replace(settings, redis_pool_size=1, redis_pool_timeout_s=READY_TIMEOUT_S))
        app.state.launches = Launches(app.state.redis, keys or Keys.from_env(), settings)
        app.state.answering = Answering()
        await _warm(app.state.redis, settings.redis_pool_size)
        # the long polls' one subscription holds a connection of its own, never one of the pool's
        subscriber = redis_client(replace(settings, redis_pool_size=1))
        app.state.watch, watching = StatusWatch(subscriber, app.state.launches.keys), asyncio.Event()
        watcher = asyncio.create_task(app.state.watch.run(watching))
        renewer = asyncio.create_task(_renew_claims(app.state.launches, settings.pending_ttl_s / 3))
        # the metrics sample the queue on the probe's connection: never one a join waits for, so under load too
        sampled, stopping = Launches(app.state.probe, app.state.launches.keys, settings), asyncio.Event()
        sampler = asyncio.create_task(sample_forever(sampled.queue_sizes, metrics.queue, sample_every_s(),
                                                     "the launch queue", stopping))
        try:
            yield
        finally:
            await stop_sampler(sampler, stopping)
            await stop_following(watcher, watching)
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            await app.state.redis.aclose()
            await app.state.probe.aclose()
            await subscriber.aclose()
            if tel is not None:
                tel.force_flush()

    # FastAPI's own request spans would continue the caller's trace, with the caller's baggage current:
    # the edge starts each public route's trace itself (`root_span`). A FastAPI without native telemetry
    # keeps the keyword in `app.extra` and ignores it.
    app = FastAPI(title="bot gateway", lifespan=lifespan, telemetry={"tracing": False})
    relay = LogRelay(settings, metrics)  # POST /v1/logs: the page's own records, under its token's session
    install_request_limits(app, settings, paths={relay.path: relay.body_limit})
    install_edge(app, settings)  # after the limits: outside them, so a 413 carries CORS headers too
    app.add_middleware(JoinOutcomes, metrics=metrics)  # outermost: it sees every answer to /join
    relay.install(app)
    for error in REDIS_ERRORS:
        app.add_exception_handler(error, _redis_error)
    app.add_exception_handler(OSError, _redis_error)

    @app.get("/health")
    async def health() -> dict[str, str]:
        """Liveness only: this process serves HTTP. Whether Redis answers is `/ready`'s question."""
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        try:
            await asyncio.wait_for(app.state.probe.ping(), READY_TIMEOUT_S)
            app.state.answering.ok()
        except OUTAGES as exc:
            return JSONResponse({"status": "unavailable", "detail": f"Redis does not answer ({type(exc).__name__})"},
                                status_code=503, headers={"Retry-After": str(RETRY_AFTER_DOWN_S)})
        return JSONResponse({"status": "ready"})

    @app.post("/join", status_code=202)
    async def join(req: JoinRequest, request: Request) -> JSONResponse:
        launches: Launches = app.state.launches
        session_id = req.sessionId or uuid.uuid4().hex
        launch_id = uuid.uuid4().hex
        where = rooms.display(req.room_url)
        with root_span(tracer, request, "POST /join", settings.edge_trace) as span, session(
            session_id=session_id, user_id=req.userId, user_name=req.userName, edge=True,
            extra={"bot.launch_id": launch_id},
        ):
            if req.sessionId is None:
                logger.info("No sessionId sent; generated %s", session_id)
            job = Job(room_url=req.room_url, sessionId=session_id, launchId=launch_id, userId=req.userId,
                      userName=req.userName, personalityId=req.personalityId,
                      token=req.token.get_secret_value() if req.token else None)
            payload = inject_payload(job.model_dump(exclude_none=True))
            try:
                outcome = await launches.enqueue(job.pending_lock(), json.dumps(payload))
            except NotReplicatedError:
                _outcome(request, "unavailable")
                return await unreplicated(launches, launch_id, where)
            except OUTAGES as exc:
                answer = await redis_failed(exc, app.state.answering, launch_id)
                _outcome(request, "overloaded" if answer.status_code == 429 else "unavailable")
                return answer
            app.state.answering.ok()
            _outcome(request, outcome)  # queued, taken or full
            if outcome == "taken":
                logger.info("Join refused: room %s already has a launch", where)
                return _detail(409, "this room already has a bot")  # never whose: its ids are not the caller's
            if outcome == "full":
                logger.warning("Join refused: the launch queue holds %d launches", launches.settings.max_queue)
                return _detail(429, "too many launches are waiting; try again shortly",
                               **{"Retry-After": str(RETRY_AFTER_FULL_S)})
            trace_id = format(span.get_span_context().trace_id, "032x")
            logger.info("Launch queued for room %s", where)
            logger.debug("Join details: user %s, personality %s, token %s", req.userId, req.personalityId,
                         "given" if req.token else "none")
        token = app.state.tokens.issue(session_id, launch_id, req.userId, settings.max_session_s)
        return JSONResponse(
            {"status": "queued", "sessionId": session_id, "launchId": launch_id, "traceId": trace_id,
             "telemetryToken": token},
            status_code=202,
        )

    async def unreplicated(launches: Launches, launch_id: str, where: str) -> JSONResponse:
        """503: the join is on the master only. It is ended there; should a failover keep the join but lose
        the ending, the launch id in the answer is how the caller finds it (`GET /launches/{id}`)."""
        logger.warning("Join refused: no replica confirmed launch %s for room %s within %d ms", launch_id, where,
                       launches.replicas.wait_ms)
        try:
            await launches.leave(launch_id, NOT_REPLICATED)
        except OUTAGES as exc:
            logger.warning("Could not end the unconfirmed launch %s (%s)", launch_id, type(exc).__name__)
        return _detail(503, "the launch queue could not confirm the join on a replica; try again shortly", launch_id,
                       **{"Retry-After": str(RETRY_AFTER_UNREPLICATED_S)})

    @app.get("/launches/{launch_id}")
    async def launch(launch_id: str, request: Request) -> JSONResponse:
        """`?wait_s=N&seen=<status>`: a long poll, answered once the status is not `seen`, or at N seconds."""
        launches: Launches = app.state.launches
        if id_error(launch_id):
            return _detail(404, "no such launch")
        try:
            wait = wait_query(request.query_params, settings.max_wait_s, STATUSES)
        except WaitQueryError as exc:
            return JSONResponse({"detail": exc.detail}, status_code=422)
        headers = None
        if wait is None:
            record = await launches.status(launch_id)
        else:
            headers = {"X-Wait-S": f"{wait[0]:g}"}  # the bound applied: a longer ask is capped
            answered, record = await unless_disconnected(request.receive, app.state.watch.wait_change(
                launch_id, lambda: launches.status(launch_id), wait[1], wait[0]))
            if not answered:
                return _detail(499, "the client went away")  # never sent: the connection is gone
        if record is None:
            return _detail(404, "no such launch")
        body = {"launchId": launch_id, "sessionId": record.get("sessionId"), "status": record.get("status")}
        if record.get("reason"):
            body["reason"] = record["reason"]
        return JSONResponse(body, headers=headers)

    async def launch_in_room(room_url: str) -> str | None:
        lock = await app.state.launches.lock(rooms.room_hash(room_url))
        return str(lock["launch_id"]) if lock and lock.get("launch_id") else None

    @app.post("/leave")
    async def leave(req: LeaveRequest) -> JSONResponse:
        """Ends the launch, warm or cold: at once if it had not started, else its bot is told to leave
        and, if it does not confirm in time, the room is freed anyway (the bot then fences itself)."""
        launches: Launches = app.state.launches
        launch_id = req.launchId or await launch_in_room(str(req.room_url))
        if launch_id is None:
            return _detail(404, "no launch holds this room")
        outcome = await launches.leave(launch_id)
        if outcome == "unknown":
            return _detail(404, "no such launch")
        if outcome == "leaving":
            outcome = await wait_left(launch_id)
        # No bot released it (it never started, or did not confirm): clear its admin messages here. The
        # record is final now, so no message can be pushed after this.
        await launches.redis.delete(launches.keys.admin_queue(launch_id))
        return JSONResponse({"launchId": launch_id, "status": outcome})

    async def wait_left(launch_id: str) -> str:
        launches: Launches = app.state.launches
        deadline = time.monotonic() + max(settings.leave_wait_s, 3 * settings.keepalive_s)
        record = await launches.record(launch_id)
        # woken by the record's change (`bot.status_watch`), not a poll every 0.1 s
        while record and record.get("status") not in ("ended", "failed") and (left := deadline - time.monotonic()) > 0:
            record = await app.state.watch.wait_change(launch_id, lambda: launches.record(launch_id),
                                                       str(record.get("status")), left)
        if record is None:
            return "ended"  # the record expired meanwhile: nothing of the launch is left
        if record.get("status") in ("ended", "failed"):
            return str(record["status"])
        logger.warning("Launch %s did not confirm it left; freeing its room", launch_id)
        await launches.force_end(launch_id, str(record.get("room")), LEFT_UNCONFIRMED)
        record = await launches.record(launch_id)
        return str(record.get("status", "ended")) if record else "ended"

    @app.post("/admin", status_code=202)
    async def admin(request: Request) -> JSONResponse:
        """Authenticated before the body is even parsed; the message text is never logged, only its length."""
        expected = settings.admin_token
        if not expected:
            return _detail(403, "admin messages are disabled: BOT_ADMIN_TOKEN is not set")
        given = _bearer(request)
        if given is None or not hmac.compare_digest(given.encode(), expected.encode()):
            return JSONResponse({"detail": "a valid admin token is required"}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})
        try:
            req = AdminRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            return JSONResponse({"detail": validation_errors(exc.errors())}, status_code=422)
        launches: Launches = app.state.launches
        launch_id = req.launchId or await launch_in_room(str(req.room_url))
        if launch_id is None:
            return _detail(404, "no launch holds this room")
        with root_span(tracer, request, "POST /admin", settings.edge_trace), session(
            edge=True, extra={"bot.launch_id": launch_id}
        ):
            message = inject_payload({"type": "admin_message", "message": req.message, "timestamp": time.time()})
            outcome = await launches.push_admin(launch_id, json.dumps(message))
            if outcome == "unknown":
                return _detail(404, "no such launch")
            if outcome in ("ended", "failed"):
                return _detail(409, f"the launch has {outcome}")
            if outcome == "full":
                logger.warning("Admin message refused: %d unread for launch %s", settings.max_admin_messages,
                               launch_id)
                return _detail(429, f"{settings.max_admin_messages} admin messages are already waiting",
                               **{"Retry-After": str(RETRY_AFTER_FULL_S)})
            logger.info("Admin message (%d characters) queued for launch %s", len(req.message), launch_id)
        return JSONResponse({"status": "queued", "launchId": launch_id}, status_code=202)

    return app


def main() -> None:
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description="bot gateway")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    try:
        app = create_app()
    except ValueError as exc:  # a bad knob: named, without a traceback
        raise SystemExit(f"bot.gateway: {exc}") from None
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    # `python -m bot.gateway` runs this file as `__main__`: call the module by its own name, so its loggers and
    # tracer are `bot.gateway`, not `__main__`.
    from bot.gateway import main as gateway_main

    gateway_main()
