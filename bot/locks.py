"""Compare-and-set on a room's lock: only the launch that holds it may change, extend or free it.

Single-key Lua scripts, so they are atomic on one Redis and on a Redis Cluster alike.
"""

from __future__ import annotations

from typing import Any

_HOLDS = """
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local ok, d = pcall(cjson.decode, v)
if not ok or type(d) ~= 'table' or d['launch_id'] ~= ARGV[1] then return 0 end
"""
_SET = _HOLDS + "redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) return 1"
_EXPIRE = _HOLDS + "redis.call('EXPIRE', KEYS[1], ARGV[2]) return 1"
_DELETE = _HOLDS + "redis.call('DEL', KEYS[1]) return 1"


async def set_if_holder(redis: Any, key: str, launch_id: str, value: str, ttl: int) -> bool:
    return bool(await redis.eval(_SET, 1, key, launch_id, value, ttl))


async def extend_if_holder(redis: Any, key: str, launch_id: str, ttl: int) -> bool:
    return bool(await redis.eval(_EXPIRE, 1, key, launch_id, ttl))


async def delete_if_holder(redis: Any, key: str, launch_id: str) -> bool:
    return bool(await redis.eval(_DELETE, 1, key, launch_id))
