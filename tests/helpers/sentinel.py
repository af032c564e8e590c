"""Real replicated Redis for tests: `redis-server` processes on loopback, each on a free port with its own
data directory, started and stopped by the test.

`Replicated`: a master and a replica (no persistence, as a cache-like deployment runs them), and with
`sentinels=3` three `redis-server --sentinel` watching them (`down-after-milliseconds` small), so a killed
master is replaced within a few seconds. `url` is the topology's `redis+sentinel://` URL.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from bot.demo.harness import free_port, wait_for

MASTER_NAME = "platform"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 4000


def redis_server() -> str:
    found = shutil.which("redis-server")
    assert found, "redis-server is not installed (Debian: apt-get install redis-server)"
    return found


class Server:
    """One `redis-server` process (a data server or a Sentinel) with its config file and log."""

    def __init__(self, base: Path, name: str, lines: list[str], sentinel: bool = False) -> None:
        self.name, self.sentinel = name, sentinel
        self.port = free_port()
        self.dir = base / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "redis.conf"
        self.log = self.dir / "log"
        self.lines = [f"port {self.port}", "bind 127.0.0.1", f"dir {self.dir}", f"logfile {self.log}",
                      "daemonize no", "protected-mode no", *lines]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        self.conf.write_text("\n".join(self.lines) + "\n")  # a Sentinel rewrites it: written afresh each start
        args = [redis_server(), str(self.conf)] + (["--sentinel"] if self.sentinel else [])
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: self.client().ping(), 10, what=f"redis-server {self.name} on port {self.port}")
        return self

    def client(self, **options: Any) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=1, socket_timeout=5, decode_responses=True,
                           **options)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def role(self) -> str:
        with contextlib.closing(self.client()) as c:
            return str(c.info("replication")["role"])


class Replicated:
    """A master and a replica, and optionally Sentinels; `close()` stops them all and removes their files."""

    def __init__(self, sentinels: int = 0) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="redis-replicated-"))
        data = ['save ""', "appendonly no", "repl-diskless-sync yes", "repl-diskless-sync-delay 0"]
        try:
            self.master = Server(self.base, "a", data).start()
            self.replica = Server(self.base, "b", [*data, f"replicaof 127.0.0.1 {self.master.port}"]).start()
            self.wait_linked(self.master, self.replica)
            self.sentinels = [Server(self.base, f"s{i}", [
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master.port} 2",
                f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}",
                f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}",
                f"sentinel parallel-syncs {MASTER_NAME} 1",
            ], sentinel=True).start() for i in range(sentinels)]
            for s in self.sentinels:  # each has found the replica and the other Sentinels
                wait_for(lambda s=s: self._sentinel_sees(s, sentinels - 1), 20, what=f"Sentinel {s.name} ready")
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _sentinel_sees(sentinel: Server, others: int) -> bool:
        with contextlib.closing(sentinel.client()) as c:
            master = c.execute_command("SENTINEL", "MASTER", MASTER_NAME)
            info = dict(zip(master[::2], master[1::2], strict=False))
            return int(info["num-slaves"]) >= 1 and int(info["num-other-sentinels"]) >= others

    @staticmethod
    def wait_linked(master: Server, replica: Server, timeout: float = 20.0) -> None:
        """Until `replica` streams from `master` (link up, and the master counts it)."""
        def linked() -> bool:
            with contextlib.closing(replica.client()) as r, contextlib.closing(master.client()) as m:
                return (r.info("replication").get("master_link_status") == "up"
                        and int(m.info("replication")["connected_slaves"]) >= 1)
        wait_for(linked, timeout, what=f"{replica.name} replicating from {master.name}")

    @property
    def url(self) -> str:
        nodes = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{nodes}/{MASTER_NAME}/0"

    def master_port(self) -> int:
        """The master the Sentinels name now."""
        with contextlib.closing(self.sentinels[0].client()) as c:
            return int(c.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)[1])

    def wait_promoted(self, server: Server, timeout: float = 30.0) -> float:
        """Until every Sentinel names `server` master and it says so itself; the seconds it took."""
        began = time.monotonic()

        def promoted() -> bool:
            for s in self.sentinels:
                with contextlib.closing(s.client()) as c:
                    if int(c.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)[1]) != server.port:
                        return False
            return server.role() == "master"
        wait_for(promoted, timeout, what=f"{server.name} promoted")
        return time.monotonic() - began

    def close(self) -> None:
        for server in [*getattr(self, "sentinels", []), getattr(self, "replica", None), getattr(self, "master", None)]:
            if server is not None:
                with contextlib.suppress(Exception):
                    server.kill()
        shutil.rmtree(self.base, ignore_errors=True)
