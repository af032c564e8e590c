"""A launch's life in Redis: queued -> starting -> running -> ended | failed, one Lua script per step.

Three things make it exactly once:
- the room lock (`room_active:{room}`) names the launch, its status and its attempt; every step
  checks all three (compare-and-set), never the launch id alone;
- the operator claims a launch (pending -> starting, attempt n+1) before it dispatches, and gives
  up on an attempt by claiming again (n+2): a `/start` that arrives late for attempt n is refused;
- only the bot moves starting -> running, by taking the lock for its own attempt (the fencing check).

A queued launch keeps its claim on the room however long it waits: its pending lock lives in
`claims` and is renewed by every gateway and operator (`renew_claims`), and restored if it lapsed.
The launch record (`launch:{id}`) answers `GET /launches/{id}`; it outlives the lock.
Every step is safe to run twice: the Redis client retries a call whose connection broke, and the
first try may have run with only its reply lost.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from bot.keys import Keys
from bot.settings import Settings

STATUSES = ("queued", "starting", "running", "ended", "failed")

_PRELUDE = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function getjson(key)
  local v = redis.call('GET', key)
  if not v then return nil end
  local ok, d = pcall(cjson.decode, v)
  if ok and type(d) == 'table' then return d end
  return nil
end
local function terminal(rec)
  return rec and (rec.status == 'ended' or rec.status == 'failed')
end
local function save_record(key, rec, status, reason, ttl)
  rec.status = status
  if reason and reason ~= '' then rec.reason = reason end
  rec.updated = now_ms() / 1000
  redis.call('SET', key, cjson.encode(rec), 'PX', ttl)
end
local function holds(lock, launch_id, attempt)
  return lock and lock.launch_id == launch_id and (attempt == nil or tostring(lock.attempt) == attempt)
end
"""

# KEYS: lock, queue, claims, record. ARGV: lock, job, pending ttl, launch id, record, record ttl, max queue.
_ENQUEUE = """
if redis.call('LLEN', KEYS[2]) >= tonumber(ARGV[7]) then return -1 end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[3]) then
  local ok, held = pcall(cjson.decode, redis.call('GET', KEYS[1]) or '')
  if ok and type(held) == 'table' and held.launch_id == ARGV[4] then return 1 end  -- a retried call
  return 0
end
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[4], ARGV[1])
redis.call('SET', KEYS[4], ARGV[5], 'PX', ARGV[6])
return 1
"""

# KEYS: claims. ARGV: key tag, pending ttl. Keys are built from the tag: all share its hash slot.
_RENEW_CLAIMS = _PRELUDE + """
local entries = redis.call('HGETALL', KEYS[1])
local renewed = 0
for i = 1, #entries, 2 do
  local launch_id, claim = entries[i], entries[i + 1]
  local ok, want = pcall(cjson.decode, claim)
  if not ok or type(want) ~= 'table' or not want.room then
    redis.call('HDEL', KEYS[1], launch_id)
  else
    local key = ARGV[1] .. 'room_active:' .. want.room
    local lock = getjson(key)
    if not lock then
      local rec = getjson(ARGV[1] .. 'launch:' .. launch_id)
      if rec and rec.status == 'queued' then
        redis.call('SET', key, claim, 'PX', ARGV[2])
        renewed = renewed + 1
      else
        redis.call('HDEL', KEYS[1], launch_id)
      end
    elseif lock.launch_id == launch_id and lock.status == 'pending' then
      redis.call('PEXPIRE', key, ARGV[2])
      renewed = renewed + 1
    elseif lock.launch_id == launch_id then
      redis.call('HDEL', KEYS[1], launch_id)
    end
  end
end
return renewed
"""

# KEYS: queue, processing, owners. ARGV: operator id.
_TAKE_JOB = """
local raw = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
if raw then redis.call('HSET', KEYS[3], redis.sha1hex(raw), ARGV[1]) end
return raw
"""

# KEYS: owners, operators, processing. ARGV: job sha1, operator id, operator ttl ms, job.
_ADOPT = _PRELUDE + """
if not redis.call('LPOS', KEYS[3], ARGV[4]) then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 0
end
local owner = redis.call('HGET', KEYS[1], ARGV[1])
if owner == ARGV[2] then return 1 end
if owner then
  local beat = redis.call('ZSCORE', KEYS[2], owner)
  if beat and tonumber(beat) >= now_ms() - tonumber(ARGV[3]) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

# KEYS: operators. ARGV: operator id ('' to only count), operator ttl ms. Returns live operators.
_HEARTBEAT = _PRELUDE + """
local now = now_ms()
if ARGV[1] ~= '' then redis.call('ZADD', KEYS[1], now, ARGV[1]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 86400000)
return redis.call('ZCOUNT', KEYS[1], now - tonumber(ARGV[2]), '+inf')
"""

# KEYS: lock, record, claims, leave.
# ARGV: launch id, operator id, lock ttl, expected attempt or '', pending lock, record ttl.
_CLAIM = _PRELUDE + """
local rec = getjson(KEYS[2])
if terminal(rec) then return {'ended', rec.reason or rec.status} end
local lock = getjson(KEYS[1])
if lock and lock.launch_id ~= ARGV[1] then return {'taken', ''} end
if redis.call('EXISTS', KEYS[4]) == 1 then
  if lock then redis.call('DEL', KEYS[1]) end
  redis.call('HDEL', KEYS[3], ARGV[1])
  if not rec then
    rec = cjson.decode(ARGV[5])
    rec.launchId, rec.sessionId = ARGV[1], rec.session_id
  end
  save_record(KEYS[2], rec, 'ended', 'left before it started', ARGV[6])
  return {'ended', 'left before it started'}
end
if lock and lock.status == 'running' then return {'running', tostring(lock.attempt)} end
if ARGV[4] ~= '' and not holds(lock, ARGV[1], ARGV[4]) then return {'lost', ''} end
if not lock then lock = cjson.decode(ARGV[5]) end
local attempt = math.max(tonumber(lock.attempt) or 0, tonumber(rec and rec.attempt) or 0) + 1
lock.status, lock.attempt, lock.owner, lock.timestamp = 'starting', attempt, ARGV[2], now_ms() / 1000
redis.call('SET', KEYS[1], cjson.encode(lock), 'PX', ARGV[3])
redis.call('HDEL', KEYS[3], ARGV[1])
rec = rec or {launchId = ARGV[1], sessionId = lock.session_id, room = lock.room, room_url = lock.room_url}
rec.attempt = attempt
save_record(KEYS[2], rec, 'starting', nil, ARGV[6])
return {'claimed', tostring(attempt)}
"""

# KEYS: lock, record, keepalive, leave.
# ARGV: launch id, attempt, runner, type, lock ttl, keepalive value, keepalive ttl, record ttl.
_TAKE = _PRELUDE + """
local lock = getjson(KEYS[1])
if not holds(lock, ARGV[1], nil) then return 'lost' end
if tostring(lock.attempt) ~= ARGV[2] then return 'fenced' end
if lock.status == 'running' and lock.runner == ARGV[3] then return 'ok' end  -- a retried call
if lock.status ~= 'starting' then return lock.status end
if redis.call('EXISTS', KEYS[4]) == 1 then return 'left' end
lock.status, lock.runner, lock.type, lock.owner, lock.timestamp = 'running', ARGV[3], ARGV[4], nil, now_ms() / 1000
redis.call('SET', KEYS[1], cjson.encode(lock), 'PX', ARGV[5])
redis.call('SET', KEYS[3], ARGV[6], 'PX', ARGV[7])
local rec = getjson(KEYS[2]) or {launchId = ARGV[1], sessionId = lock.session_id, room = lock.room}
rec.runner, rec.type = ARGV[3], ARGV[4]
save_record(KEYS[2], rec, 'running', nil, ARGV[8])
return 'ok'
"""

# KEYS: lock. ARGV: launch id, attempt, lock ttl. The operator keeps a starting lock while a cold bot boots.
_HOLD = _PRELUDE + """
local lock = getjson(KEYS[1])
if not holds(lock, ARGV[1], ARGV[2]) or lock.status ~= 'starting' then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

# KEYS: lock, keepalive, cold slots. ARGV: launch id, attempt, lock ttl, keepalive value, keepalive ttl, cold.
_KEEPALIVE = _PRELUDE + """
local lock = getjson(KEYS[1])
if not holds(lock, ARGV[1], ARGV[2]) or lock.status ~= 'running' then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[5])
if ARGV[6] == '1' then redis.call('ZADD', KEYS[3], 'XX', now_ms() + tonumber(ARGV[3]), ARGV[1]) end
return 1
"""

# KEYS: lock, keepalive, record, admin, leave, cold slots. ARGV: launch id, attempt, status, reason, record ttl.
_RELEASE = _PRELUDE + """
local lock = getjson(KEYS[1])
local mine = holds(lock, ARGV[1], ARGV[2])
if mine then redis.call('DEL', KEYS[1], KEYS[2]) end
redis.call('DEL', KEYS[4], KEYS[5])
redis.call('ZREM', KEYS[6], ARGV[1])
local rec = getjson(KEYS[3])
if rec and tostring(rec.attempt) == ARGV[2] and not terminal(rec) then
  save_record(KEYS[3], rec, ARGV[3], ARGV[4], ARGV[5])
end
if mine then return 1 end
return 0
"""

# KEYS: lock, processing, queue, owners, claims, record.
# ARGV: job, sha1, launch id, attempt, pending ttl, record ttl, pending lock (for a lock that lapsed).
_REQUEUE = _PRELUDE + """
local lock = getjson(KEYS[1])
if not lock then
  lock = cjson.decode(ARGV[7])
  lock.attempt, lock.status = tonumber(ARGV[4]), 'starting'
end
if holds(lock, ARGV[3], ARGV[4]) and lock.status == 'starting' then
  lock.status, lock.owner = 'pending', nil
  local claim = cjson.encode(lock)
  redis.call('SET', KEYS[1], claim, 'PX', ARGV[5])
  redis.call('HSET', KEYS[5], ARGV[3], claim)
  local rec = getjson(KEYS[6])
  if rec and not terminal(rec) then save_record(KEYS[6], rec, 'queued', nil, ARGV[6]) end
end
if redis.call('LREM', KEYS[2], 1, ARGV[1]) == 1 then redis.call('LPUSH', KEYS[3], ARGV[1]) end
redis.call('HDEL', KEYS[4], ARGV[2])
return 1
"""

# KEYS: processing, owners. ARGV: job, sha1.
_DONE = """
redis.call('LREM', KEYS[1], 1, ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[2])
return 1
"""

# KEYS: lock, record, claims, admin. ARGV: launch id, reason, record ttl, pending lock.
_FAIL = _PRELUDE + """
local lock = getjson(KEYS[1])
if holds(lock, ARGV[1], nil) and lock.status ~= 'running' then redis.call('DEL', KEYS[1]) end
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('DEL', KEYS[4])
local rec = getjson(KEYS[2]) or cjson.decode(ARGV[4])
if not terminal(rec) then save_record(KEYS[2], rec, 'failed', ARGV[2], ARGV[3]) end
return 1
"""

# KEYS: processing, owners, dead. ARGV: job, sha1, entry, dead-letter ttl ms, dead-letter max.
_DEAD = _PRELUDE + """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then  -- not (or no longer) in the list: a retried call
  redis.call('HDEL', KEYS[2], ARGV[2])
  return 0
end
redis.call('RPUSH', KEYS[3], ARGV[3])
redis.call('LTRIM', KEYS[3], -tonumber(ARGV[5]), -1)
local oldest = now_ms() - tonumber(ARGV[4])
while true do
  local first = redis.call('LINDEX', KEYS[3], 0)
  if not first then break end
  local ok, d = pcall(cjson.decode, first)
  if ok and type(d) == 'table' and tonumber(d.timestamp) and tonumber(d.timestamp) * 1000 < oldest then
    redis.call('LPOP', KEYS[3])
  else
    break
  end
end
redis.call('PEXPIRE', KEYS[3], ARGV[4])
redis.call('HDEL', KEYS[2], ARGV[2])
return 1
"""

# KEYS: cold slots. ARGV: launch id, max, ttl ms.
_COLD_SLOT = _PRELUDE + """
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
  return 1
end
return 0
"""

# KEYS: lock, record, leave, claims, admin. ARGV: launch id, leave ttl, record ttl.
_LEAVE = _PRELUDE + """
local rec = getjson(KEYS[2])
if not rec then return 'unknown' end
if terminal(rec) then return rec.status end
local lock = getjson(KEYS[1])
if rec.status == 'queued' and (not lock or (lock.launch_id == ARGV[1] and lock.status == 'pending')) then
  if lock then redis.call('DEL', KEYS[1]) end
  redis.call('HDEL', KEYS[4], ARGV[1])
  redis.call('DEL', KEYS[5])
  save_record(KEYS[2], rec, 'ended', 'left before it started', ARGV[3])
  return 'ended'
end
redis.call('SET', KEYS[3], '1', 'PX', ARGV[2])
return 'leaving'
"""

# KEYS: lock, keepalive, record, admin. ARGV: launch id, reason, record ttl.
_FORCE_END = _PRELUDE + """
local lock = getjson(KEYS[1])
if holds(lock, ARGV[1], nil) then redis.call('DEL', KEYS[1], KEYS[2]) end
redis.call('DEL', KEYS[4])
local rec = getjson(KEYS[3])
if rec and not terminal(rec) then save_record(KEYS[3], rec, 'ended', ARGV[2], ARGV[3]) end
return 1
"""


def job_sha(raw: str | bytes) -> str:
    """The job's name in `owners`: the same sha1 the scripts compute (`redis.sha1hex`).

    Bytes: a job that is not UTF-8 (pushed by hand) can still be adopted and dead-lettered.
    """
    data = raw.encode() if isinstance(raw, str) else raw
    return hashlib.sha1(data).hexdigest()  # a name, not a secret


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


@dataclass(frozen=True)
class Claim:
    """What the operator got: `claimed` (with the attempt it now owns) or why it may not dispatch."""

    outcome: str  # claimed | running | taken | ended | lost
    attempt: int = 0
    reason: str = ""


class Launches:
    """The launch state machine over one Redis client. Every method is one atomic step."""

    def __init__(self, redis: Any, keys: Keys, settings: Settings) -> None:
        self.redis, self.keys, self.settings = redis, keys, settings
        script = redis.register_script
        self._enqueue, self._renew, self._take_job = script(_ENQUEUE), script(_RENEW_CLAIMS), script(_TAKE_JOB)
        self._adopt, self._heartbeat, self._claim = script(_ADOPT), script(_HEARTBEAT), script(_CLAIM)
        self._take, self._keepalive, self._release = script(_TAKE), script(_KEEPALIVE), script(_RELEASE)
        self._requeue, self._done, self._fail = script(_REQUEUE), script(_DONE), script(_FAIL)
        self._dead, self._cold, self._leave = script(_DEAD), script(_COLD_SLOT), script(_LEAVE)
        self._force_end, self._hold = script(_FORCE_END), script(_HOLD)

    # -- the gateway ------------------------------------------------------------------------------

    @staticmethod
    def pending_lock(*, launch_id: str, session_id: str, room: str, room_url: str) -> dict[str, Any]:
        return {"status": "pending", "launch_id": launch_id, "session_id": session_id, "room": room,
                "room_url": room_url, "attempt": 0, "timestamp": time.time()}

    async def enqueue(self, lock: dict[str, Any], job: str) -> str:
        """`queued`, `taken` (the room has a launch) or `full` (the queue is at `max_queue`)."""
        k, s = self.keys, self.settings
        record = {"launchId": lock["launch_id"], "sessionId": lock["session_id"], "room": lock["room"],
                  "room_url": lock["room_url"], "status": "queued", "attempt": 0, "updated": time.time()}
        done = await self._enqueue(
            keys=[k.room_active(lock["room"]), k.launch_queue, k.claims, k.launch(lock["launch_id"])],
            args=[json.dumps(lock), job, _ms(s.pending_ttl_s), lock["launch_id"], json.dumps(record),
                  _ms(s.record_ttl_s), s.max_queue])
        return {1: "queued", 0: "taken", -1: "full"}[int(done)]

    async def renew_claims(self) -> int:
        return int(await self._renew(keys=[self.keys.claims], args=[self.keys.tag, _ms(self.settings.pending_ttl_s)]))

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

    async def leave(self, launch_id: str) -> str:
        """`unknown`, `ended` (it had not started, or had already ended), `failed`, or `leaving` (its bot was told)."""
        rec = await self.record(launch_id)
        if rec is None:
            return "unknown"
        k = self.keys
        return str(await self._leave(
            keys=[k.room_active(str(rec.get("room"))), k.launch(launch_id), k.leave(launch_id), k.claims,
                  k.admin_queue(launch_id)],
            args=[launch_id, _ms(2 * self.settings.lock_ttl_s), _ms(self.settings.record_ttl_s)]))

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
        """pending -> starting with a new attempt. `expected_attempt`: give up on that one (it must still hold)."""
        k, launch_id = self.keys, pending["launch_id"]
        outcome, detail = await self._claim(
            keys=[k.room_active(pending["room"]), k.launch(launch_id), k.claims, k.leave(launch_id)],
            args=[launch_id, operator_id, _ms(self.settings.lock_ttl_s),
                  "" if expected_attempt is None else str(expected_attempt), json.dumps(pending),
                  _ms(self.settings.record_ttl_s)])
        if outcome in ("claimed", "running"):
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

    async def free_cold_slot(self, launch_id: str) -> None:
        await self.redis.zrem(self.keys.cold_slots, launch_id)

    # -- the bot ----------------------------------------------------------------------------------

    async def take(self, launch_id: str, attempt: int, room: str, runner: str, kind: str, keepalive: str) -> str:
        """The fencing check: `ok` only for the attempt the operator is waiting for."""
        k, s = self.keys, self.settings
        return str(await self._take(
            keys=[k.room_active(room), k.launch(launch_id), k.room_keepalive(room), k.leave(launch_id)],
            args=[launch_id, str(attempt), runner, kind, _ms(s.lock_ttl_s), keepalive, _ms(3 * s.keepalive_s),
                  _ms(s.record_ttl_s)]))

    async def keepalive(self, launch_id: str, attempt: int, room: str, keepalive: str, cold: bool) -> bool:
        """Renew the lock, then write the keepalive value: both or neither, and only while it is ours."""
        k, s = self.keys, self.settings
        return bool(await self._keepalive(
            keys=[k.room_active(room), k.room_keepalive(room), k.cold_slots],
            args=[launch_id, str(attempt), _ms(s.lock_ttl_s), keepalive, _ms(3 * s.keepalive_s),
                  "1" if cold else "0"]))

    async def release(self, launch_id: str, attempt: int, room: str, status: str, reason: str = "") -> bool:
        k = self.keys
        return bool(await self._release(
            keys=[k.room_active(room), k.room_keepalive(room), k.launch(launch_id), k.admin_queue(launch_id),
                  k.leave(launch_id), k.cold_slots],
            args=[launch_id, str(attempt), status, reason, _ms(self.settings.record_ttl_s)]))
