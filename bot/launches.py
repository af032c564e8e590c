"""A launch's life in Redis: queued -> starting -> running -> ended | failed, one atomic step per method.

Exactly once: every step compare-and-sets the room lock (launch, status, attempt); an operator claims
an attempt before it dispatches and gives up on one by claiming again; only the bot's own `take` makes
it running (the fencing check). The Lua scripts live in `bot.launch_scripts`.

The steps a failover must not undo (enqueue, claim, take, keepalive) are acted on only once a replica has
them (`bot.replicas`): otherwise `NotReplicatedError`, or for a take `unreplicated` (undone on the master).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from bot import launch_scripts as lua
from bot.keys import Keys
from bot.replicas import NotReplicatedError, Replicas
from bot.settings import Settings

STATUSES = ("queued", "starting", "running", "ended", "failed")
LEFT = "left before it started"
RENEW_BATCH = 500  # claims one RENEW_CLAIMS call renews


def job_sha(raw: str | bytes) -> str:
    """The job's name in `owners`: the same sha1 the scripts compute (`redis.sha1hex`).

    Bytes: a job that is not UTF-8 (pushed by hand) can still be adopted and dead-lettered.
    """
    data = raw.encode() if isinstance(raw, str) else raw
    return hashlib.sha1(data).hexdigest()  # a name, not a secret


def _room_of(claim: str) -> str:
    """A claim's room ("" when it is not one: the script drops that claim without touching the room's key)."""
    try:
        room = json.loads(claim).get("room")
    except (ValueError, AttributeError, TypeError, RecursionError):
        return ""
    return room if isinstance(room, str) else ""


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


@dataclass(frozen=True)
class Claim:
    """What the operator got: `claimed` (with the attempt it now owns) or why it may not dispatch."""

    outcome: str  # claimed | running | orphan | taken | ended | lost
    attempt: int = 0
    reason: str = ""


class Launches:
    """The launch state machine over one Redis client. Every method is one atomic step."""

    def __init__(self, redis: Any, keys: Keys, settings: Settings) -> None:
        self.redis, self.keys, self.settings = redis, keys, settings
        script = redis.register_script
        self._enqueue, self._renew, self._take_job = script(lua.ENQUEUE), script(lua.RENEW_CLAIMS), script(lua.TAKE_JOB)
        self._adopt, self._heartbeat, self._claim = script(lua.ADOPT), script(lua.HEARTBEAT), script(lua.CLAIM)
        self._take, self._keepalive, self._release = script(lua.TAKE), script(lua.KEEPALIVE), script(lua.RELEASE)
        self._requeue, self._done, self._fail = script(lua.REQUEUE), script(lua.DONE), script(lua.FAIL)
        self._dead, self._cold, self._leave = script(lua.DEAD), script(lua.COLD_SLOT), script(lua.LEAVE)
        self._force_end, self._hold = script(lua.FORCE_END), script(lua.HOLD)
        self._admin_push = script(lua.ADMIN_PUSH)
        self._cold_used = script(lua.COLD_SLOTS_USED)
        self._untake = script(lua.UNTAKE)
        self.replicas = Replicas(redis, settings.replica_wait_ms, settings.replica_gone_s)

    # -- the gateway ------------------------------------------------------------------------------

    @staticmethod
    def pending_lock(*, launch_id: str, session_id: str, room: str, room_url: str) -> dict[str, Any]:
        return {"status": "pending", "launch_id": launch_id, "session_id": session_id, "room": room,
                "room_url": room_url, "attempt": 0, "timestamp": time.time()}

    async def enqueue(self, lock: dict[str, Any], job: str) -> str:
        """`queued`, `taken` (the room has a launch) or `full` (the queue is at `max_queue`).

        `NotReplicatedError` when it is queued on the master only: the caller must not be told it was accepted."""
        k, s = self.keys, self.settings
        record = {"launchId": lock["launch_id"], "sessionId": lock["session_id"], "room": lock["room"],
                  "room_url": lock["room_url"], "status": "queued", "attempt": 0, "updated": time.time()}
        done, acked = await self.replicas.call(
            self._enqueue,
            keys=[k.room_active(lock["room"]), k.launch_queue, k.claims, k.launch(lock["launch_id"])],
            args=[json.dumps(lock), job, _ms(s.pending_ttl_s), lock["launch_id"], json.dumps(record),
                  _ms(s.record_ttl_s), s.max_queue, k.queued_channel])
        outcome = {1: "queued", 0: "taken", -1: "full"}[int(done)]
        if outcome == "queued" and not acked:
            raise NotReplicatedError(f"launch {lock['launch_id']} queued, but no replica confirmed it")
        return outcome

    async def renew_claims(self) -> int:
        """Renew every queued launch's room claim; the claims are read first so that each script declares every
        key it touches, `RENEW_BATCH` claims a script (a long queue never blocks Redis in one call)."""
        k, renewed = self.keys, 0
        claims = list((await self.redis.hgetall(k.claims)).items())
        for start in range(0, len(claims), RENEW_BATCH):
            keys, args = [k.claims], [_ms(self.settings.pending_ttl_s)]
            for launch_id, claim in claims[start:start + RENEW_BATCH]:
                keys += [k.room_active(_room_of(claim)), k.launch(launch_id)]
                args.append(launch_id)
            renewed += int(await self._renew(keys=keys, args=args))
        return renewed

    async def queue_sizes(self) -> dict[str, int]:
        """For the metrics: launches queued (`depth`), queued with a room claim (`claims`), and taken by an
        operator but not finished (`processing`); one round trip."""
        k = self.keys
        pipe = self.redis.pipeline(transaction=False)
        pipe.llen(k.launch_queue)
        pipe.hlen(k.claims)
        pipe.llen(k.processing)
        depth, claims, processing = await pipe.execute()
        return {"depth": int(depth), "claims": int(claims), "processing": int(processing)}

    async def record(self, launch_id: str) -> dict[str, Any] | None:
        raw = await self.redis.get(self.keys.launch(launch_id))
        try:
            value = json.loads(raw) if raw else None
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    async def status(self, launch_id: str) -> dict[str, Any] | None:
        """The record, corrected for a bot that died: starting or running without its lock is failed."""
        rec = await self.record(launch_id)
        if rec is None or rec.get("status") not in ("starting", "running"):
            return rec
        lock = await self.lock(str(rec.get("room")))
        if lock is None or lock.get("launch_id") != launch_id:
            return {**rec, "status": "failed", "reason": "its bot stopped renewing the room lock"}
        return rec

    async def lock(self, room: str) -> dict[str, Any] | None:
        raw = await self.redis.get(self.keys.room_active(room))
        try:
            value = json.loads(raw) if raw else None
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    async def leave(self, launch_id: str, reason: str = LEFT) -> str:
        """`unknown`, `ended` (it had not started, or had already ended), `failed`, or `leaving` (its bot was told)."""
        rec = await self.record(launch_id)
        if rec is None:
            return "unknown"
        k = self.keys
        return str(await self._leave(
            keys=[k.room_active(str(rec.get("room"))), k.launch(launch_id), k.leave(launch_id), k.claims,
                  k.admin_queue(launch_id)],
            args=[launch_id, _ms(2 * self.settings.lock_ttl_s), _ms(self.settings.record_ttl_s), reason]))

    async def push_admin(self, launch_id: str, message: str) -> str:
        """Queue an admin message for a live launch: `queued`, `unknown`, `ended`, `failed` or `full`."""
        k, s = self.keys, self.settings
        return str(await self._admin_push(keys=[k.admin_queue(launch_id), k.launch(launch_id)],
                                          args=[message, s.max_admin_messages, _ms(s.max_session_s)]))

    async def force_end(self, launch_id: str, room: str, reason: str) -> None:
        """Free the room of a bot that did not confirm it left: it fences itself at its next keepalive."""
        k = self.keys
        await self._force_end(keys=[k.room_active(room), k.room_keepalive(room), k.launch(launch_id),
                                    k.admin_queue(launch_id)],
                              args=[launch_id, reason, _ms(self.settings.record_ttl_s)])

    # -- the operator -----------------------------------------------------------------------------

    async def heartbeat(self, operator_id: str = "") -> int:
        """Beat for `operator_id` (none: only count); the number of live operators."""
        return int(await self._heartbeat(keys=[self.keys.operators],
                                         args=[operator_id, _ms(self.settings.operator_ttl_s)]))

    async def take_job(self, operator_id: str) -> str | None:
        raw = await self._take_job(keys=[self.keys.launch_queue, self.keys.processing, self.keys.owners],
                                   args=[operator_id])
        return None if raw is None else str(raw)

    async def adopt(self, raw: str | bytes, operator_id: str) -> bool:
        """Take over a job in the processing list, only if its owner is gone (no heartbeat)."""
        return bool(await self._adopt(keys=[self.keys.owners, self.keys.operators, self.keys.processing],
                                      args=[job_sha(raw), operator_id, _ms(self.settings.operator_ttl_s), raw]))

    async def claim(self, pending: dict[str, Any], operator_id: str, expected_attempt: int | None = None) -> Claim:
        """pending -> starting with a new attempt. `expected_attempt`: give up on that one (it must still hold).

        `NotReplicatedError` when no replica confirmed the new attempt: it must not be dispatched (a failover could
        issue the same attempt number again)."""
        k, launch_id = self.keys, pending["launch_id"]
        (outcome, detail), acked = await self.replicas.call(
            self._claim,
            keys=[k.room_active(pending["room"]), k.launch(launch_id), k.claims, k.leave(launch_id),
                  k.room_keepalive(pending["room"])],
            args=[launch_id, operator_id, _ms(self.settings.lock_ttl_s),
                  "" if expected_attempt is None else str(expected_attempt), json.dumps(pending),
                  _ms(self.settings.record_ttl_s)])
        if outcome == "claimed" and not acked:
            raise NotReplicatedError(f"launch {launch_id}: attempt {detail} claimed, but no replica confirmed it")
        if outcome in ("claimed", "running", "orphan"):
            return Claim(str(outcome), int(detail))
        return Claim(str(outcome), reason=str(detail))

    async def hold(self, pending: dict[str, Any], attempt: int) -> bool:
        """Keep a starting attempt's lock while its bot boots; False once it is no longer starting."""
        return bool(await self._hold(keys=[self.keys.room_active(pending["room"])],
                                     args=[pending["launch_id"], str(attempt), _ms(self.settings.lock_ttl_s)]))

    async def requeue(self, raw: str, pending: dict[str, Any], attempt: int) -> None:
        k, s = self.keys, self.settings
        await self._requeue(
            keys=[k.room_active(pending["room"]), k.processing, k.launch_queue, k.owners, k.claims,
                  k.launch(pending["launch_id"])],
            args=[raw, job_sha(raw), pending["launch_id"], str(attempt), _ms(s.pending_ttl_s), _ms(s.record_ttl_s),
                  json.dumps(pending)])

    async def done(self, raw: str) -> None:
        await self._done(keys=[self.keys.processing, self.keys.owners], args=[raw, job_sha(raw)])

    async def fail(self, pending: dict[str, Any], reason: str) -> None:
        k = self.keys
        await self._fail(keys=[k.room_active(pending["room"]), k.launch(pending["launch_id"]), k.claims,
                               k.admin_queue(pending["launch_id"])],
                         args=[pending["launch_id"], reason, _ms(self.settings.record_ttl_s),
                               json.dumps({**pending, "launchId": pending["launch_id"],
                                           "sessionId": pending["session_id"]})])

    async def dead_letter(self, raw: str | bytes, entry: dict[str, Any]) -> None:
        s = self.settings
        await self._dead(keys=[self.keys.processing, self.keys.owners, self.keys.dead_letter],
                         args=[raw, job_sha(raw), json.dumps(entry), _ms(s.dead_letter_ttl_s), s.dead_letter_max])

    async def cold_slot(self, launch_id: str) -> bool:
        return bool(await self._cold(keys=[self.keys.cold_slots],
                                     args=[launch_id, self.settings.max_cold, _ms(self.settings.lock_ttl_s)]))

    async def cold_slots_used(self) -> int:
        """Cold slots held and not expired, across every operator."""
        return int(await self._cold_used(keys=[self.keys.cold_slots]))

    async def free_cold_slot(self, launch_id: str) -> None:
        await self.redis.zrem(self.keys.cold_slots, launch_id)

    # -- the bot ----------------------------------------------------------------------------------

    async def take(self, launch_id: str, attempt: int, room: str, runner: str, kind: str, keepalive: str,
                   started: float | None = None) -> str:
        """The fencing check: `ok` only for the attempt the operator is waiting for. `started`: when the runner
        began this start (its clock; default now), kept in the record's `times`.

        `unreplicated`: it was ours, but no replica confirmed it; undone (back to starting), so the bot must
        not join and the operator gives the attempt up."""
        k, s = self.keys, self.settings
        outcome, acked = await self.replicas.call(
            self._take,
            keys=[k.room_active(room), k.launch(launch_id), k.room_keepalive(room), k.leave(launch_id)],
            args=[launch_id, str(attempt), runner, kind, _ms(s.lock_ttl_s), keepalive, _ms(3 * s.keepalive_s),
                  _ms(s.record_ttl_s), repr(time.time() if started is None else started)])
        if outcome == "ok" and not acked:
            await self._untake(keys=[k.room_active(room), k.launch(launch_id), k.room_keepalive(room)],
                               args=[launch_id, str(attempt), runner, _ms(s.lock_ttl_s), _ms(s.record_ttl_s)])
            return "unreplicated"
        return str(outcome)

    async def keepalive(self, launch_id: str, attempt: int, room: str, keepalive: str, cold: bool) -> bool:
        """Renew the lock, then write the keepalive value: both or neither, and only while it is ours.

        `NotReplicatedError` when no replica confirmed the renewal: the bot's fence must not count it (after a
        failover the lock lives only as long as the replica's copy says)."""
        k, s = self.keys, self.settings
        ours, acked = await self.replicas.call(
            self._keepalive,
            keys=[k.room_active(room), k.room_keepalive(room), k.cold_slots],
            args=[launch_id, str(attempt), _ms(s.lock_ttl_s), keepalive, _ms(3 * s.keepalive_s),
                  "1" if cold else "0"])
        if ours and not acked:
            raise NotReplicatedError(f"launch {launch_id}: lock renewed, but no replica confirmed it")
        return bool(ours)

    async def release(self, launch_id: str, attempt: int, room: str, status: str, reason: str = "") -> bool:
        k = self.keys
        return bool(await self._release(
            keys=[k.room_active(room), k.room_keepalive(room), k.launch(launch_id), k.admin_queue(launch_id),
                  k.leave(launch_id), k.cold_slots],
            args=[launch_id, str(attempt), status, reason, _ms(self.settings.record_ttl_s)]))
