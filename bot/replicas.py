"""Writes a failover cannot undo: a launch step and a `WAIT` on one connection.

Replication is asynchronous, so a Sentinel (or any) failover can roll back a step the platform already
acted on: a join answered 202, an attempt number (the fencing token) handed to a dispatch, a bot's `take`
or the keepalive its fence is timed from. Such a step is only acted on once a replica has it too: the
script and `WAIT 1 <BOT_REPLICA_WAIT_MS>` go out in one non-transactional pipeline, which keeps them on
one connection (`WAIT` counts the writes of its own connection, and does not block inside a script).

A master without replicas (one Redis, or its replica died) has nothing to wait for: the step counts as
today. But a replica that just went away (a cut link, a freeze the master noticed) still counts for
`BOT_REPLICA_GONE_S`: until a Sentinel would no longer promote it (10 x `down-after-milliseconds`), a failover
could still make it the master and drop what it never got. A new master (a promoted replica: a new
replication id) starts with none. The count is read from `INFO replication` at most once a `REFRESH_S`
per process, and again whenever a `WAIT` falls short. A Redis Cluster client gets no `WAIT`:
redis-py sends a keyless command to a node of its own choosing, not the write's connection.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from redis.exceptions import RedisError

from otel_session.live import urls

REFRESH_S = 1.0


class NotReplicatedError(RedisError):
    """The step is on the master, but no replica confirmed it in time: it must not be acted on."""


class Replicas:
    """How many replicas the master has (cached), and the acknowledged form of a script call."""

    def __init__(self, redis: Any, wait_ms: float, gone_s: float) -> None:
        self.redis, self.wait_ms, self.gone_s = redis, max(1, int(wait_ms)), gone_s
        self.pipelined = not urls.is_cluster(redis)
        self._count = 0
        self._read_at = -REFRESH_S
        self._reading: asyncio.Task[int] | None = None
        self._replid, self._had_at = "", -gone_s  # the master that last had a replica, and when

    async def expected(self, fresh: bool = False) -> int:
        """The replicas to wait for (connected, or gone less than `gone_s` ago), as of at most `REFRESH_S` ago
        (`fresh`: now)."""
        if not self.pipelined:
            return 0
        if not fresh and time.monotonic() - self._read_at < REFRESH_S:
            return self._count
        if self._reading is None or self._reading.done():
            self._reading = asyncio.ensure_future(self._read())
        return await asyncio.shield(self._reading)

    async def _read(self) -> int:
        info = await self.redis.info("replication")
        connected, replid = int(info.get("connected_slaves", 0) or 0), str(info.get("master_replid", ""))
        now = time.monotonic()
        if connected:
            self._replid, self._had_at = replid, now
        recently = replid == self._replid and now - self._had_at < self.gone_s
        self._count = connected or int(recently)
        self._read_at = now
        return self._count

    async def call(self, script: Any, keys: list[str], args: list[Any]) -> tuple[Any, bool]:
        """The script's reply, and whether a replica has its writes (True when the master has none)."""
        if not await self.expected():
            return await script(keys=keys, args=args), True
        pipe = self.redis.pipeline(transaction=False)
        await script(keys=keys, args=args, client=pipe)
        pipe.execute_command("WAIT", 1, self.wait_ms)
        reply, acked = await pipe.execute()
        if int(acked) >= 1:
            return reply, True
        return reply, not await self.expected(fresh=True)  # the replica is gone for good: as with none
