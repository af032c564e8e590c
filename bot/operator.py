"""The queue worker: takes launch jobs from Redis and starts one bot for each, warm or cold (`bot.dispatch`).

At-least-once delivery, exactly-once start; a job stays in the processing list until done, handed back
or dead-lettered.

    python -m bot.operator                  # serve
    python -m bot.operator --check          # exit 0 when some operator is alive (1: none, 2: no Redis)
    python -m bot.operator --dead-letters   # list the dead letters, one JSON line each
    python -m bot.operator --replay ID      # queue one again
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import sys
import time
from dataclasses import replace
from typing import Any

import httpx
from opentelemetry import trace
from pydantic import ValidationError

from bot import dead_letters
from bot.dispatch import Dispatch, LaunchError, cold_env
from bot.http import CLIENT_KEEPALIVE_S
from bot.keys import Keys
from bot.launcher import Launcher, ProcessLauncher
from bot.launches import Launches, job_sha
from bot.metrics import OperatorMetrics, sample_every_s, sample_forever, stop_sampler
from bot.models import Job
from bot.replicas import NotReplicatedError
from bot.service import REDIS_ERRORS, redis_client, setup_telemetry
from bot.settings import Settings
from bot.signals import follow, stop_following
from otel_session import attach, extract_payload

__all__ = ["Operator", "cold_env", "main", "serve"]

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

POLL_S = 0.05  # an empty queue is asked again after this long (without the `queued` signal)
SIGNALLED_POLL_S = 0.5  # ... and with it: a queued launch wakes the operator at once (`Keys.queued_channel`)
RECOVER_EVERY = 3  # heartbeats between recovery passes
REQUEUE_PAUSE_S = (0.1, 1.0)  # after a job went back to the queue (no capacity): first and longest pause
MAX_BACKOFF_S = 5.0


def new_operator_id() -> str:
    """Unique per process, and says where it runs: host:pid:random."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _reason(exc: BaseException) -> str:
    """What a dead letter and a log may say about a failure: never the input (a token may be in it)."""
    if isinstance(exc, LaunchError):
        return exc.reason
    if isinstance(exc, ValidationError):
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'job'}: {e['msg']}"
                             for e in exc.errors(include_url=False, include_input=False, include_context=False))
        return f"invalid job: {problems}"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


class Operator:
    """Takes up to `settings.max_jobs` jobs at once, beats, recovers the jobs of operators that stopped.
    `metrics` (default: the global meter provider's) count each job's dispatch by its outcome."""

    def __init__(self, launches: Launches, launcher: Launcher, http: httpx.AsyncClient,
                 operator_id: str | None = None, metrics: OperatorMetrics | None = None,
                 signals: Any = None) -> None:
        """`signals`: a Redis client of its own for the `queued` subscription (None: poll every `POLL_S`)."""
        self.launches, self.launcher, self.http = launches, launcher, http
        self.signals = signals
        self._queued = asyncio.Event()  # set by the subscription: a launch was queued
        self._signalled = False  # the subscription is up
        self.metrics = metrics or OperatorMetrics.shared()
        self.settings = launches.settings
        self.id = operator_id or new_operator_id()
        self.inflight: dict[str, asyncio.Task[None]] = {}  # raw job -> its task
        self.dispatches: dict[str, Dispatch] = {}
        self.cold: dict[str, int] = {}  # launch id -> pid of its newest cold bot
        self._pause_until = 0.0
        self._pause_s = REQUEUE_PAUSE_S[0]
        self._recovery: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._abort = asyncio.Event()  # the drain bound passed: in-flight dispatches hand their jobs back

    # -- the loops ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`: beat, take jobs, recover; then let in-flight jobs finish (`BOT_DRAIN_S`) or hand them back."""
        self._stop = stop
        if not await self._first_beat(stop):
            return
        beat = asyncio.create_task(self._beat(stop))
        sampling = asyncio.Event()
        sampler = asyncio.create_task(sample_forever(self._sample, self.metrics.sample, sample_every_s(),
                                                     "the cold slots and operators", sampling))
        following, signalled = None, asyncio.Event()
        if self.signals is not None:
            following = asyncio.create_task(follow(self.signals, self.launches.keys.queued_channel,
                                                   lambda _: self._queued.set(), self._signal_state, stop=signalled))
        try:
            await self._take(stop)
        finally:
            if self._recovery is not None:
                self._recovery.cancel()
            await stop_sampler(sampler, sampling)
            await self._drain()
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            if following is not None:
                await stop_following(following, signalled)
            with contextlib.suppress(*REDIS_ERRORS, OSError):
                await self.launches.redis.zrem(self.launches.keys.operators, self.id)  # at once adoptable

    async def _first_beat(self, stop: asyncio.Event) -> bool:
        """Beat before taking any job: a job of an operator that never beat is anyone's to adopt."""
        backoff = 0.1
        while not stop.is_set():
            try:
                await self.launches.heartbeat(self.id)
                return True
            except REDIS_ERRORS as exc:
                logger.warning("Redis unavailable (%s); retrying in %.1f s", type(exc).__name__, backoff)
                await self._sleep(stop, backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
        return False

    async def _beat(self, stop: asyncio.Event) -> None:
        """Heartbeat, keep queued launches' room claims, collect ended cold bots, and now and then recover."""
        beats, failing = 0, False
        while not stop.is_set():
            try:
                await self.launches.heartbeat(self.id)
                await self.launches.renew_claims()
                await self._reap()
                if failing:
                    logger.info("Redis reachable again")
                    failing = False
                if beats % RECOVER_EVERY == 0:
                    self.recover_soon()
            except REDIS_ERRORS as exc:
                if not failing:
                    logger.warning("Heartbeat failed: Redis unavailable (%s)", type(exc).__name__)
                failing = True
            beats += 1
            await self._sleep(stop, self.settings.heartbeat_s)

    async def _take(self, stop: asyncio.Event) -> None:
        backoff = 0.1
        while not stop.is_set():
            if len(self.inflight) >= self.settings.max_jobs:
                stopping = asyncio.create_task(stop.wait())
                await asyncio.wait([*self.inflight.values(), stopping], return_when=asyncio.FIRST_COMPLETED)
                stopping.cancel()
                continue
            if (wait := self._pause_until - time.monotonic()) > 0:
                await self._sleep(stop, wait)
                continue
            try:
                self._queued.clear()  # before the take: a launch queued during it still wakes `_idle`
                raw = await self.launches.take_job(self.id)
                backoff = 0.1
            except UnicodeDecodeError:
                logger.warning("Took a launch job that is not UTF-8 text; the recovery pass dead-letters it")
                self.recover_soon()
                continue
            except REDIS_ERRORS as exc:
                logger.warning("Redis unavailable (%s); retrying in %.1f s", type(exc).__name__, backoff)
                await self._sleep(stop, backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            if raw is None:
                await self._idle(stop)
            else:
                self._spawn(raw)

    def _signal_state(self, up: bool) -> None:
        self._signalled = up
        self._queued.set()  # up: a launch queued while it was down may wait; down: back to polling

    async def _idle(self, stop: asyncio.Event) -> None:
        """The queue was empty: wait until a launch is queued (the signal), `stop`, or the next poll."""
        if not self._signalled:
            await self._sleep(stop, POLL_S)
            return
        waits = [asyncio.ensure_future(self._queued.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waits, timeout=SIGNALLED_POLL_S, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    @staticmethod
    async def _sleep(stop: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)

    def _spawn(self, raw: str) -> None:
        task = asyncio.create_task(self._job(raw))
        self.inflight[raw] = task
        task.add_done_callback(lambda _: self.inflight.pop(raw, None))

    async def _drain(self) -> None:
        tasks = list(self.inflight.values())
        if not tasks:
            return
        logger.info("Operator stopping: waiting up to %.1f s for %d launches in flight", self.settings.drain_s,
                    len(tasks))
        _, late = await asyncio.wait(tasks, timeout=self.settings.drain_s)
        self._abort.set()
        deadline = time.monotonic() + max(5.0, self.settings.start_timeout_s)
        while late and time.monotonic() < deadline:
            for raw, task in list(self.inflight.items()):
                dispatch = self.dispatches.get(raw)
                if task in late and not (dispatch and dispatch.handing_back):
                    task.cancel()  # it hands its job back (`Dispatch.hand_back`); again if the cancel was lost
            _, late = await asyncio.wait(late, timeout=0.2)

    async def _sample(self) -> dict[str, int]:
        """What the operator's gauges report: cold slots in use, operators alive (counted, not a beat)."""
        return {"cold": await self.launches.cold_slots_used(), "operators": await self.launches.heartbeat()}

    async def _reap(self) -> None:
        """Free the cold slot of a cold bot that ended (a running one frees it itself; a fenced one cannot)."""
        for launch_id, pid in self.launcher.reap():
            if self.cold.get(launch_id) == pid:
                del self.cold[launch_id]
                await self.launches.free_cold_slot(launch_id)

    # -- recovery -----------------------------------------------------------------------------

    def recover_soon(self) -> None:
        if self._recovery is None or self._recovery.done():
            self._recovery = asyncio.create_task(self._recover_safely())

    async def _recover_safely(self) -> None:
        try:
            await self.recover()
        except REDIS_ERRORS as exc:
            logger.warning("Recovery pass skipped: Redis unavailable (%s)", type(exc).__name__)
        except Exception:
            logger.exception("Recovery pass failed")

    async def recover(self) -> None:
        """Handle every job in the processing list that is ours to handle and not in flight here: one whose
        operator stopped beating (or that has none), or one of ours that Redis failed in the middle of."""
        launches = self.launches
        items = await launches.redis.execute_command("LRANGE", launches.keys.processing, 0, -1, NEVER_DECODE=True)
        for item in items or []:
            if self._stop.is_set() or len(self.inflight) >= self.settings.max_jobs:
                return  # the rest at the next pass
            raw: str | None
            try:
                raw = bytes(item).decode()
            except UnicodeDecodeError:
                raw = None
            if raw is not None and raw in self.inflight:
                continue
            job = raw if raw is not None else bytes(item)
            if not await launches.adopt(job, self.id):
                continue  # a live operator's
            if await launches.redis.lpos(launches.keys.processing, job) is None:
                await launches.redis.hdel(launches.keys.owners, job_sha(job))  # it finished meanwhile
                continue
            if raw is None:
                reason = "the job is not UTF-8 text"
                logger.error("Launch job dead-lettered: %s", reason)
                await launches.dead_letter(bytes(item), dead_letters.entry(bytes(item), reason))
            elif raw not in self.inflight:
                logger.warning("Recovering a launch job from the processing list (its operator stopped, or Redis "
                               "failed while it was dispatched)")
                self._spawn(raw)

    # -- one job ------------------------------------------------------------------------------

    async def _job(self, raw: str) -> None:
        began, outcome = time.monotonic(), "retried"  # unless it ends otherwise: left for a recovery pass
        try:
            outcome = await self.handle(raw)
        except NotReplicatedError as exc:
            logger.warning("Not dispatched: %s (a failover could undo it); the job stays in the processing list "
                           "and the next recovery pass retries it", exc)
        except REDIS_ERRORS as exc:
            logger.warning("Redis failed while a launch was dispatched (%s); the job stays in the processing list "
                           "and the next recovery pass retries it", type(exc).__name__)
        except asyncio.CancelledError:
            outcome = "requeued"  # handed back (`_dispatch`)
            raise
        except Exception:
            logger.exception("Unexpected failure handling a launch job; it stays in the processing list")
        finally:
            self.metrics.dispatched(outcome, time.monotonic() - began)

    async def handle(self, raw: str) -> str:
        """Dispatch one job; its outcome (`bot.dispatches`): warm, cold, requeued, retried, dead_lettered or
        skipped. Any fault of the job dead-letters it; a `RedisError` propagates (retried later)."""
        limit = 2 * self.settings.max_body_bytes
        if len(raw) > limit:
            return await self._dead_letter(raw, f"the job is {len(raw)} characters long; at most {limit} are allowed")
        try:
            data = json.loads(raw)
        except Exception as exc:  # RecursionError too: `"[" * 100000`
            return await self._dead_letter(raw, f"not JSON ({_reason(exc)})")
        if not isinstance(data, dict):
            return await self._dead_letter(raw, f"a job is a JSON object, not {type(data).__name__}")
        ids = {"launch_id": data.get("launchId"), "session_id": data.get("sessionId")}
        with attach(extract_payload(data)), tracer.start_as_current_span("operator.dispatch"):
            try:
                if not isinstance(data.get("otel"), dict):
                    raise ValueError("a job carries an 'otel' trace-context object")
                job = Job.model_validate(data)
            except Exception as exc:  # whatever is wrong with it, it is this job's fault
                return await self._dead_letter(raw, _reason(exc), **ids)
            return await self._dispatch(raw, job, ids)

    async def _dispatch(self, raw: str, job: Job, ids: dict[str, Any]) -> str:
        dispatch = Dispatch(raw, job, launches=self.launches, launcher=self.launcher, http=self.http,
                            operator_id=self.id, cold=self.cold, abort=self._abort)
        self.dispatches[raw] = dispatch
        try:
            outcome = await dispatch.run()
        except REDIS_ERRORS:
            raise
        except asyncio.CancelledError:
            await dispatch.hand_back()
            raise
        except Exception as exc:  # a launch that cannot start: retrying would fail the same way
            reason = _reason(exc)
            if not isinstance(exc, LaunchError):
                logger.exception("Launch %s failed; freeing its room", job.launchId)
            await dispatch.abandon()
            await self.launches.fail(dispatch.pending, reason)
            return await self._dead_letter(raw, reason, **ids)
        finally:
            self.dispatches.pop(raw, None)
        if outcome == "started":  # the join's wait ends here, whatever marking the job done costs
            self.metrics.running(dispatch.mode, time.time() - job.created_ts)
        if outcome in ("started", "done"):
            await self.launches.done(raw)
        if outcome == "requeued":
            self._pause_until = time.monotonic() + self._pause_s
            self._pause_s = min(self._pause_s * 2, REQUEUE_PAUSE_S[1])
        else:
            self._pause_s = REQUEUE_PAUSE_S[0]
        return {"started": dispatch.mode, "done": "skipped", "retry": "retried"}.get(outcome, outcome)

    async def _dead_letter(self, raw: str, reason: str, launch_id: Any = None, session_id: Any = None) -> str:
        entry = dead_letters.entry(raw, reason, launch_id, session_id)
        logger.error("Launch job dead-lettered as %s: %s", entry["id"], reason)
        await self.launches.dead_letter(raw, entry)
        return "dead_lettered"


# -- the process --------------------------------------------------------------------------------


def runner_limits(settings: Settings) -> httpx.Limits:
    """The operator's connections to the warm runners: an idle one is dropped before a runner would close it."""
    return httpx.Limits(max_connections=4 * settings.max_jobs, max_keepalive_connections=settings.max_jobs,
                        keepalive_expiry=CLIENT_KEEPALIVE_S)


async def serve(stop: asyncio.Event | None = None, settings: Settings | None = None) -> None:
    settings = settings or Settings.from_env()
    telemetry = setup_telemetry("bot-operator")
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    redis = redis_client(settings)
    launches = Launches(redis, Keys.from_env(), settings)
    async with httpx.AsyncClient(limits=runner_limits(settings)) as http:
        # the `queued` subscription holds a connection of its own, never one a dispatch waits for
        signals = redis_client(replace(settings, redis_pool_size=1))
        operator = Operator(launches, ProcessLauncher(), http, signals=signals)
        logger.info("Operator started as %s (up to %d launches at once)", operator.id, settings.max_jobs)
        try:
            await operator.run(stop)
        finally:
            logger.info("Operator stopping")
            await redis.aclose()
            await signals.aclose()
            telemetry.force_flush()


async def _command(args: argparse.Namespace, settings: Settings) -> int:
    redis = redis_client(settings)
    launches = Launches(redis, Keys.from_env(), settings)
    try:
        if args.check:
            alive = await launches.heartbeat()
            if alive:
                print(f"ok: {alive} operator{'s' if alive != 1 else ''} alive")
                return 0
            print(f"no operator is alive (none beat within {settings.operator_ttl_s:.1f} s)", file=sys.stderr)
            return 1
        if args.dead_letters:
            return await dead_letters.print_entries(launches)
        return await dead_letters.replay(launches, args.replay)
    except REDIS_ERRORS as exc:
        print(f"Redis unreachable: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    finally:
        await redis.aclose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bot.operator", description=__doc__.splitlines()[0])
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--check", action="store_true", help="exit 0 when at least one operator is alive")
    what.add_argument("--dead-letters", action="store_true", help="list the dead letters, one JSON line each")
    what.add_argument("--replay", metavar="ID", help="queue the dead letter ID again (its token is gone)")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        print(f"bad configuration: {exc}", file=sys.stderr)
        sys.exit(2)
    if args.check or args.dead_letters or args.replay is not None:
        sys.exit(asyncio.run(_command(args, settings)))
    asyncio.run(serve(settings=settings))


if __name__ == "__main__":
    # `python -m bot.operator` runs this file as `__main__`: call the module by its own name, so its loggers and
    # tracer are `bot.operator`, not `__main__`.
    from bot.operator import main as operator_main

    operator_main()
