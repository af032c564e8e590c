"""Real Redis topologies for tests: `redis-server` processes on loopback, on free ports, each in its own
temporary directory, started and stopped by the test (no persistence: `--save "" --appendonly no`).

`Cluster(masters=3)` is a Redis Cluster with no replicas (`Cluster(replicas=1)`: one for each master; `.url` is
`redis+cluster://...`);
`Sentinel(sentinels=3)` is one master, one replica and its Sentinels (`.url` is `redis+sentinel://...`).
Both are context managers; `stop()` is safe to call twice.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SERVER = shutil.which("redis-server") or "redis-server"
CLI = shutil.which("redis-cli") or "redis-cli"
HOST = "127.0.0.1"


def free_port(bus_offset: int = 0) -> int:
    """A free loopback port (and, with `bus_offset`, port + offset free too: a cluster node's bus)."""
    while True:
        with socket.socket() as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        if not bus_offset or port + bus_offset > 65535:
            if not bus_offset:
                return port
            continue
        with socket.socket() as s:
            try:
                s.bind((HOST, port + bus_offset))
            except OSError:
                continue
        return port


def cli(port: int, *args: str, timeout: float = 10, password: str | None = None) -> str:
    auth = ["-a", password, "--no-auth-warning"] if password else []
    done = subprocess.run([CLI, "-h", HOST, "-p", str(port), *auth, *args], capture_output=True, text=True,
                          timeout=timeout, check=False)
    return done.stdout + done.stderr


def wait(check, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


class Node:
    """One `redis-server` (or `redis-server --sentinel`) with its own directory under `base`."""

    def __init__(self, base: Path, port: int, *args: str, config: str | None = None,
                 password: str | None = None) -> None:
        self.port, self.dir, self.password = port, base / str(port), password
        self.dir.mkdir(parents=True)
        command = [SERVER]
        if config is not None:
            conf = self.dir / "node.conf"
            conf.write_text(config)
            command += [str(conf), "--sentinel"]
        command += ["--port", str(port), "--bind", HOST, "--dir", str(self.dir), "--save", "",
                    "--appendonly", "no", "--logfile", str(self.dir / "log"), *args]
        if password:
            command += ["--requirepass", password, "--masterauth", password]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait(lambda: self.proc.poll() is not None or "PONG" in self.cli("ping"), 10, f"redis-server on {port}")
        if self.proc.poll() is not None:
            raise RuntimeError(f"redis-server on {port} exited: {self.log()[-2000:]}")

    def cli(self, *args: str, timeout: float = 10) -> str:
        return cli(self.port, *args, timeout=timeout, password=self.password)

    def log(self) -> str:
        path = self.dir / "log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class _Topology:
    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="redis-topology-"))
        self.nodes: list[Node] = []

    def stop(self) -> None:
        for node in self.nodes:  # all at once, then wait for each
            if node.proc.poll() is None:
                node.proc.terminate()
        for node in self.nodes:
            node.stop()
        self.nodes = []
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Cluster(_Topology):
    """`masters` cluster nodes and `replicas` replicas of each, every slot covered; `node_timeout_ms` is
    `cluster-node-timeout`; with `password`, every node requires it (and `url` carries it)."""

    def __init__(self, masters: int = 3, node_timeout_ms: int = 2000, password: str | None = None,
                 replicas: int = 0) -> None:
        super().__init__()
        self.password = password
        try:
            for _ in range(masters * (1 + replicas)):
                port = free_port(bus_offset=10000)
                self.nodes.append(Node(self.base, port, "--cluster-enabled", "yes", "--cluster-config-file",
                                       str(self.base / str(port) / "nodes.conf"),
                                       "--cluster-node-timeout", str(node_timeout_ms), password=password))
            out = self.nodes[0].cli("--cluster", "create", *(f"{HOST}:{p}" for p in self.ports),
                                    "--cluster-replicas", str(replicas), "--cluster-yes", timeout=60)
            wait(lambda: all("cluster_state:ok" in n.cli("cluster", "info") for n in self.nodes), 30,
                 f"cluster_state:ok ({out[-500:]})")
            if replicas:
                wait(lambda: all(len(self.replicas_of(port)) == replicas and all(
                    "master_link_status:up" in self.node(r).cli("info", "replication")
                    for r in self.replicas_of(port)) for port in self.masters()), 30, "every replica in sync")
        except BaseException:
            self.stop()
            raise

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis+cluster://{auth}" + ",".join(f"{HOST}:{p}" for p in self.ports) + "/"

    def node(self, port: int) -> Node:
        return next(n for n in self.nodes if n.port == port)

    def _table(self) -> list[list[str]]:
        live = next(n for n in self.nodes if n.proc.poll() is None)
        return [line.split() for line in live.cli("cluster", "nodes").splitlines() if line.strip()]

    @staticmethod
    def _port(fields: list[str]) -> int:
        return int(fields[1].split("@")[0].rsplit(":", 1)[1])

    def masters(self) -> list[int]:
        """The ports of the masters that serve slots, as the cluster sees it now."""
        return [self._port(f) for f in self._table() if "master" in f[2] and "fail" not in f[2] and f[8:]]

    def replicas_of(self, port: int) -> list[int]:
        table = self._table()
        ids = {self._port(f): f[0] for f in table}
        return [self._port(f) for f in table if "slave" in f[2] and f[3] == ids.get(port)]

    def owner(self, key: str) -> int:
        """The port of the master that serves `key`'s slot (as a live node sees it)."""
        port = self.serving(key)
        if port is None:
            raise LookupError(f"no master serves the slot of {key!r}")
        return port

    def serving(self, key: str) -> int | None:
        """Like `owner`, None while no master serves the slot (a failover)."""
        live = next(n for n in self.nodes if n.proc.poll() is None)
        slot = int(live.cli("cluster", "keyslot", key).strip())
        for fields in self._table():
            if "master" not in fields[2] or "fail" in fields[2]:
                continue
            for span in fields[8:]:
                low, _, high = span.partition("-")
                if low.isdigit() and int(low) <= slot <= int(high or low):
                    return self._port(fields)
        return None


class Sentinel(_Topology):
    """One master, `replicas` replicas and `sentinels` Sentinels watching it as `name` (quorum 2 when there are
    at least two Sentinels); `down_after_ms` is `down-after-milliseconds`."""

    def __init__(self, name: str = "mymaster", replicas: int = 1, sentinels: int = 3,
                 down_after_ms: int = 2000) -> None:
        super().__init__()
        self.name = name
        try:
            master = Node(self.base, free_port())
            self.nodes.append(master)
            self.replicas = [Node(self.base, free_port(), "--replicaof", HOST, str(master.port))
                             for _ in range(replicas)]
            self.nodes += self.replicas
            quorum = min(2, sentinels)
            config = (f"sentinel monitor {name} {HOST} {master.port} {quorum}\n"
                      f"sentinel down-after-milliseconds {name} {down_after_ms}\n"
                      f"sentinel failover-timeout {name} {max(down_after_ms * 3, 6000)}\n")
            self.sentinels = [Node(self.base, free_port(), config=config) for _ in range(sentinels)]
            self.nodes += self.sentinels
            wait(lambda: all(str(master.port) in cli(s.port, "sentinel", "get-master-addr-by-name", name)
                             for s in self.sentinels), 15, "the Sentinels to know the master")
        except BaseException:
            self.stop()
            raise

    @property
    def master_port(self) -> int:
        out = cli(self.sentinels[0].port, "sentinel", "get-master-addr-by-name", self.name).split()
        return int(out[1])

    @property
    def url(self) -> str:
        return "redis+sentinel://" + ",".join(f"{HOST}:{s.port}" for s in self.sentinels) + f"/{self.name}"
