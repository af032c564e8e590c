"""The Lua scripts of a launch's life in Redis, one per step; `bot.launches.Launches` runs them.

Each names its KEYS and ARGV. Every key a script touches shares the `{bot}` hash tag (`bot.keys`), and
every script is safe to run twice (a retried call whose first reply was lost).
"""

from __future__ import annotations

PRELUDE = """
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
local function stamp(rec, step, at)
  if type(rec.times) ~= 'table' then rec.times = {} end
  rec.times[step] = at or now_ms() / 1000
end
local function save_record(key, rec, status, reason, ttl)
  rec.status = status
  if reason and reason ~= '' then rec.reason = reason end
  rec.updated = now_ms() / 1000
  redis.call('SET', key, cjson.encode(rec), 'PX', ttl)
  redis.call('PUBLISH', key, status)  -- wakes the gateways' long polls on this launch (`bot.status_watch`)
end
local function holds(lock, launch_id, attempt)
  return lock and lock.launch_id == launch_id and (attempt == nil or tostring(lock.attempt) == attempt)
end
"""

# KEYS: lock, queue, claims, record.
# ARGV: lock, job, pending ttl, launch id, record, record ttl, max queue, channel (wakes idle operators).
# The record's `times.queued` is Redis time, as every later step's (but `started`: the runner's clock).
ENQUEUE = PRELUDE + """
if redis.call('LLEN', KEYS[2]) >= tonumber(ARGV[7]) then return -1 end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[3]) then
  local ok, held = pcall(cjson.decode, redis.call('GET', KEYS[1]) or '')
  if ok and type(held) == 'table' and held.launch_id == ARGV[4] then return 1 end  -- a retried call
  return 0
end
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[4], ARGV[1])
local rec = cjson.decode(ARGV[5])
stamp(rec, 'queued')
rec.updated = rec.times.queued
redis.call('SET', KEYS[4], cjson.encode(rec), 'PX', ARGV[6])
if ARGV[8] then redis.call('PUBLISH', ARGV[8], '1') end
return 1
"""

# KEYS: claims, then per claim its room lock and its launch record. ARGV: pending ttl, then per claim its
# launch id. Every key is declared (the caller read the claims first): a Cluster, or a proxy in front of one,
# may refuse a script that touches a key it was not given. A claim gone since is skipped; one that is not
# JSON with a room is dropped; a claim's room never changes, so its declared lock key is still its own.
RENEW_CLAIMS = PRELUDE + """
local renewed = 0
for i = 2, #ARGV do
  local launch_id = ARGV[i]
  local lock_key, record_key = KEYS[2 * i - 2], KEYS[2 * i - 1]
  local claim = redis.call('HGET', KEYS[1], launch_id)
  if claim then
    local ok, want = pcall(cjson.decode, claim)
    if not ok or type(want) ~= 'table' or not want.room then
      redis.call('HDEL', KEYS[1], launch_id)
    else
      local lock = getjson(lock_key)
      if not lock then
        local rec = getjson(record_key)
        if rec and rec.status == 'queued' then
          redis.call('SET', lock_key, claim, 'PX', ARGV[1])
          renewed = renewed + 1
        else
          redis.call('HDEL', KEYS[1], launch_id)
        end
      elseif lock.launch_id == launch_id and lock.status == 'pending' then
        redis.call('PEXPIRE', lock_key, ARGV[1])
        renewed = renewed + 1
      elseif lock.launch_id == launch_id then
        redis.call('HDEL', KEYS[1], launch_id)
      end
    end
  end
end
return renewed
"""

# KEYS: queue, processing, owners. ARGV: operator id.
TAKE_JOB = """
local raw = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
if raw then redis.call('HSET', KEYS[3], redis.sha1hex(raw), ARGV[1]) end
return raw
"""

# KEYS: owners, operators, processing. ARGV: job sha1, operator id, operator ttl ms, job.
ADOPT = PRELUDE + """
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
HEARTBEAT = PRELUDE + """
local now = now_ms()
if ARGV[1] ~= '' then redis.call('ZADD', KEYS[1], now, ARGV[1]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 86400000)
return redis.call('ZCOUNT', KEYS[1], now - tonumber(ARGV[2]), '+inf')
"""

# KEYS: lock, record, claims, leave, keepalive.
# ARGV: launch id, operator id, lock ttl, expected attempt or '', pending lock, record ttl.
# `orphan`: running, but its bot renews nothing (its take outlived a failover, the bot did not): once the lock
# lapses (a live bot fences itself before that), the launch is claimed again.
CLAIM = PRELUDE + """
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
if lock and lock.status == 'running' then
  if redis.call('EXISTS', KEYS[5]) == 0 then return {'orphan', tostring(lock.attempt)} end
  return {'running', tostring(lock.attempt)}
end
if ARGV[4] ~= '' and not holds(lock, ARGV[1], ARGV[4]) then return {'lost', ''} end
if not lock then lock = cjson.decode(ARGV[5]) end
local attempt = math.max(tonumber(lock.attempt) or 0, tonumber(rec and rec.attempt) or 0) + 1
lock.status, lock.attempt, lock.owner, lock.timestamp = 'starting', attempt, ARGV[2], now_ms() / 1000
redis.call('SET', KEYS[1], cjson.encode(lock), 'PX', ARGV[3])
redis.call('HDEL', KEYS[3], ARGV[1])
rec = rec or {launchId = ARGV[1], sessionId = lock.session_id, room = lock.room, room_url = lock.room_url}
rec.attempt = attempt
stamp(rec, 'claimed', lock.timestamp)
save_record(KEYS[2], rec, 'starting', nil, ARGV[6])
return {'claimed', tostring(attempt)}
"""

# KEYS: lock, record, keepalive, leave.
# ARGV: launch id, attempt, runner, type, lock ttl, keepalive value, keepalive ttl, record ttl, started.
# `started` (when the runner began the start, its own clock) is kept within [claimed, running]: a skewed
# clock never puts the steps out of order.
TAKE = PRELUDE + """
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
stamp(rec, 'running', lock.timestamp)
local claimed = tonumber(rec.times.claimed) or lock.timestamp
rec.times.started = math.min(math.max(tonumber(ARGV[9]) or lock.timestamp, claimed), lock.timestamp)
save_record(KEYS[2], rec, 'running', nil, ARGV[8])
return 'ok'
"""

# KEYS: lock, record, keepalive. ARGV: launch id, attempt, runner, lock ttl, record ttl.
# Undo this runner's `take` that no replica confirmed: back to starting, so the operator gives the attempt up.
UNTAKE = PRELUDE + """
local lock = getjson(KEYS[1])
if not holds(lock, ARGV[1], ARGV[2]) or lock.status ~= 'running' or lock.runner ~= ARGV[3] then return 0 end
lock.status, lock.runner, lock.type, lock.timestamp = 'starting', nil, nil, now_ms() / 1000
redis.call('SET', KEYS[1], cjson.encode(lock), 'PX', ARGV[4])
redis.call('DEL', KEYS[3])
local rec = getjson(KEYS[2])
if rec and not terminal(rec) then
  rec.runner, rec.type = nil, nil
  save_record(KEYS[2], rec, 'starting', nil, ARGV[5])
end
return 1
"""

# KEYS: lock. ARGV: launch id, attempt, lock ttl. The operator keeps a starting lock while a cold bot boots.
HOLD = PRELUDE + """
local lock = getjson(KEYS[1])
if not holds(lock, ARGV[1], ARGV[2]) or lock.status ~= 'starting' then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

# KEYS: lock, keepalive, cold slots. ARGV: launch id, attempt, lock ttl, keepalive value, keepalive ttl, cold.
KEEPALIVE = PRELUDE + """
local lock = getjson(KEYS[1])
if not holds(lock, ARGV[1], ARGV[2]) or lock.status ~= 'running' then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[5])
if ARGV[6] == '1' then redis.call('ZADD', KEYS[3], 'XX', now_ms() + tonumber(ARGV[3]), ARGV[1]) end
return 1
"""

# KEYS: lock, keepalive, record, admin, leave, cold slots. ARGV: launch id, attempt, status, reason, record ttl.
RELEASE = PRELUDE + """
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
REQUEUE = PRELUDE + """
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
DONE = """
redis.call('LREM', KEYS[1], 1, ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[2])
return 1
"""

# KEYS: lock, record, claims, admin. ARGV: launch id, reason, record ttl, pending lock.
FAIL = PRELUDE + """
local lock = getjson(KEYS[1])
if holds(lock, ARGV[1], nil) and lock.status ~= 'running' then redis.call('DEL', KEYS[1]) end
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('DEL', KEYS[4])
local rec = getjson(KEYS[2]) or cjson.decode(ARGV[4])
if not terminal(rec) then save_record(KEYS[2], rec, 'failed', ARGV[2], ARGV[3]) end
return 1
"""

# KEYS: processing, owners, dead. ARGV: job, sha1, entry, dead-letter ttl ms, dead-letter max.
DEAD = PRELUDE + """
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
COLD_SLOT = PRELUDE + """
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
  return 1
end
return 0
"""

# KEYS: cold slots. The slots not expired (an expired one is only removed when a slot is next taken).
COLD_SLOTS_USED = PRELUDE + """
return redis.call('ZCOUNT', KEYS[1], now_ms(), '+inf')
"""

# KEYS: lock, record, leave, claims, admin. ARGV: launch id, leave ttl, record ttl, reason.
LEAVE = PRELUDE + """
local rec = getjson(KEYS[2])
if not rec then return 'unknown' end
if terminal(rec) then return rec.status end
local lock = getjson(KEYS[1])
if rec.status == 'queued' and (not lock or (lock.launch_id == ARGV[1] and lock.status == 'pending')) then
  if lock then redis.call('DEL', KEYS[1]) end
  redis.call('HDEL', KEYS[4], ARGV[1])
  redis.call('DEL', KEYS[5])
  save_record(KEYS[2], rec, 'ended', ARGV[4], ARGV[3])
  return 'ended'
end
redis.call('SET', KEYS[3], '1', 'PX', ARGV[2])
return 'leaving'
"""

# KEYS: lock, keepalive, record, admin. ARGV: launch id, reason, record ttl.
FORCE_END = PRELUDE + """
local lock = getjson(KEYS[1])
if holds(lock, ARGV[1], nil) then redis.call('DEL', KEYS[1], KEYS[2]) end
redis.call('DEL', KEYS[4])
local rec = getjson(KEYS[3])
if rec and not terminal(rec) then save_record(KEYS[3], rec, 'ended', ARGV[2], ARGV[3]) end
return 1
"""

# KEYS: admin queue, launch record. ARGV: message, max messages, ttl ms.
# One step, so a message can never land in the queue of a launch that release() already cleared.
ADMIN_PUSH = """
local raw = redis.call('GET', KEYS[2])
if not raw then return 'unknown' end
local ok, rec = pcall(cjson.decode, raw)
if ok and type(rec) == 'table' and (rec.status == 'ended' or rec.status == 'failed') then return rec.status end
if redis.call('LLEN', KEYS[1]) >= tonumber(ARGV[2]) then return 'full' end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 'queued'
"""
