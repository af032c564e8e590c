"""Writes a failover cannot undo: a launch step and a `WAIT` on one connection.

Replication is asynchronous, so a Sentinel or Cluster failover can roll back a step the platform already
acted on: a join answered 202, an attempt number (the fencing token) handed to a dispatch, a bot's `take`
or the keepalive its fence is timed from. Such a step is only acted on once a replica has it too: the
script and `WAIT 1 <BOT_REPLICA_WAIT_MS>` go out in one non-transactional pipeline, which keeps them on
one connection (`WAIT` counts the writes of its own connection, and does not block inside a script). On a
Redis Cluster the pipeline sends both to the master that serves the step's keys (`WAIT` is keyless: it is
addressed to that node, which a cluster pipeline sends on the same connection as the script).

A master without replicas (one Redis, or its replica died) has nothing to wait for: the step counts as
today. But a replica that just went away (a cut link, a freeze the master noticed) still counts for
`BOT_REPLICA_GONE_S`: until a Sentinel would no longer promote it (10 x `down-after-milliseconds`), a failover
could still make it the master and drop what it never got. A new master (a promoted replica: a new
replication id) starts with none. The count is read from `INFO replication` (of the master that serves the
keys, on a Cluster) at most once a `REFRESH_S` per process, and again whenever a `WAIT` falls short.
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


class _Master:
    """What one master's `INFO replication` said, and when."""

    def __init__(self, gone_s: float) -> None:
        self.count, self.read_at = 0, -REFRESH_S
        self.reading: asyncio.Task[int] | None = None
        self.replid, self.had_at = "", -gone_s  # the master that last had a replica, and when


class Replicas:
    """How many replicas the master has (cached), and the acknowledged form of a script call."""

    def __init__(self, redis: Any, wait_ms: float, gone_s: float) -> None:
        self.redis, self.wait_ms, self.gone_s = redis, max(1, int(wait_ms)), gone_s
        self.cluster = urls.is_cluster(redis)
        self._masters: dict[str, _Master] = {}  # by node name on a Cluster; "" for the one master otherwise

    async def _node(self, key: str | None) -> Any:
        """The Cluster node that serves `key` (None on one Redis or Sentinel, where the client has one master)."""
        if not self.cluster:
            return None
        if key is None:
            raise ValueError("on a Redis Cluster, the replicas are counted for the master of a key")
        await self.redis.initialize()  # a no-op once the slots are known
        return self.redis.get_node_from_key(key)

    async def expected(self, fresh: bool = False, key: str | None = None) -> int:
        """The replicas to wait for (connected, or gone less than `gone_s` ago), as of at most `REFRESH_S` ago
        (`fresh`: now); on a Cluster, those of the master that serves `key`."""
        return await self._expected(await self._node(key), fresh)

    async def _expected(self, node: Any, fresh: bool = False) -> int:
        master = self._masters.setdefault("" if node is None else node.name, _Master(self.gone_s))
        if not fresh and time.monotonic() - master.read_at < REFRESH_S:
            return master.count
        if master.reading is None or master.reading.done():
            master.reading = asyncio.ensure_future(self._read(master, node))
        return await asyncio.shield(master.reading)

    async def _read(self, master: _Master, node: Any) -> int:
        if node is None:
            info = await self.redis.info("replication")
        else:
            info = await self.redis.info("replication", target_nodes=node)
        connected, replid = int(info.get("connected_slaves", 0) or 0), str(info.get("master_replid", ""))
        now = time.monotonic()
        if connected:
            master.replid, master.had_at = replid, now
        recently = replid == master.replid and now - master.had_at < self.gone_s
        master.count = connected or int(recently)
        master.read_at = now
        return master.count

    async def call(self, script: Any, keys: list[str], args: list[Any]) -> tuple[Any, bool]:
        """The script's reply, and whether a replica has its writes (True when the master has none)."""
        node = await self._node(keys[0])
        if not await self._expected(node):
            return await script(keys=keys, args=args), True
        pipe = self.redis.pipeline(transaction=False)
        if node is None:
            await script(keys=keys, args=args, client=pipe)
            pipe.execute_command("WAIT", 1, self.wait_ms)
            reply, acked = await pipe.execute()
        else:
            # EVAL, not EVALSHA: a cluster pipeline does not load a script the node has not seen
            pipe.execute_command("EVAL", script.script, len(keys), *keys, *args)
            pipe.execute_command("WAIT", 1, self.wait_ms, target_nodes=node)
            reply, acked = await pipe.execute(raise_on_error=False)
            if isinstance(reply, Exception):
                raise reply
            now = await self._node(keys[0])
            if isinstance(acked, Exception) or now.name != node.name:  # the slot moved while the step ran (a
                acked, node = 0, now  # failover, a resharding): the WAIT was not on the write's connection
        if int(acked) >= 1:
            return reply, True
        return reply, not await self._expected(node, fresh=True)  # the replica is gone for good: as with none
