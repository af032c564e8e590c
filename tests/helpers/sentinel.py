"""Failovers on a real Sentinel topology (`tests.helpers.redis_topologies.Sentinel`): freeze a replica to stall
replication, kill the master, wait for the Sentinels to promote, restart the old master empty on its port.

`Failover(sentinels=0)` is only a master and its replica (no promotion), for steps that wait on a replica.
"""

from __future__ import annotations

import contextlib
import signal
import time
from typing import Any

import redis

from bot.demo.harness import wait_for
from tests.helpers.redis_topologies import HOST, Node, Sentinel, cli

DOWN_AFTER_MS = 1000


class Failover(Sentinel):
    """One master, one replica, `sentinels` Sentinels (`down-after-milliseconds` 1000), syncing at once."""

    def __init__(self, sentinels: int = 3) -> None:
        super().__init__(name="platform", replicas=1, sentinels=sentinels, down_after_ms=DOWN_AFTER_MS)
        self.master, self.replica = self.nodes[0], self.replicas[0]
        try:
            for node in (self.master, self.replica):
                fast_sync(node)
            self.wait_linked(self.master, self.replica)
            for s in self.sentinels:  # each has found the replica and the other Sentinels
                wait_for(lambda s=s: self._sees(s, sentinels - 1), 20, what=f"Sentinel {s.port} ready")
        except BaseException:
            self.stop()
            raise

    def _sees(self, sentinel: Node, others: int) -> bool:
        with contextlib.closing(client(sentinel)) as c:
            info = c.sentinel_master(self.name)
            return int(info["num-slaves"]) >= 1 and int(info["num-other-sentinels"]) >= others

    @staticmethod
    def wait_linked(master: Node, replica: Node, timeout: float = 30.0) -> None:
        """Until `replica` streams from `master` (its link up, and the master counts it)."""
        def linked() -> bool:
            with contextlib.closing(client(replica)) as r, contextlib.closing(client(master)) as m:
                return (r.info("replication").get("master_link_status") == "up"
                        and int(m.info("replication")["connected_slaves"]) >= 1)
        wait_for(linked, timeout, what=f"{replica.port} replicating from {master.port}")

    def wait_promoted(self, node: Node, timeout: float = 30.0) -> float:
        """Until every Sentinel names `node` master and it says so itself; the seconds it took."""
        began = time.monotonic()

        def promoted() -> bool:
            named = {int(cli(s.port, "sentinel", "get-master-addr-by-name", self.name).split()[1])
                     for s in self.sentinels}
            return named == {node.port} and role(node) == "master"
        wait_for(promoted, timeout, what=f"{node.port} promoted")
        return time.monotonic() - began

    def restart_empty(self, node: Node) -> Node:
        """`node` started again on its port with nothing in it (no persistence), as a crashed cache server is."""
        again = Node(self.base / f"restart-{time.monotonic_ns()}", node.port)
        fast_sync(again)
        self.nodes.append(again)
        return again


def fast_sync(node: Node) -> None:
    """A replica's full sync starts at once (not after the default 5 s wait for more replicas)."""
    node.cli("config", "set", "repl-diskless-sync-delay", "0")


def freeze(node: Node) -> None:
    node.proc.send_signal(signal.SIGSTOP)


def thaw(node: Node) -> None:
    node.proc.send_signal(signal.SIGCONT)


def crash(node: Node) -> None:
    """SIGKILL: nothing it held in memory survives."""
    node.proc.send_signal(signal.SIGCONT)
    node.proc.kill()
    node.proc.wait(10)


def client(node: Node, **options: Any) -> redis.Redis:
    return redis.Redis(host=HOST, port=node.port, socket_connect_timeout=1, socket_timeout=5, decode_responses=True,
                       **options)


def url(node: Node) -> str:
    return f"redis://{HOST}:{node.port}/0"


def role(node: Node) -> str:
    with contextlib.closing(client(node)) as c:
        return str(c.info("replication")["role"])
