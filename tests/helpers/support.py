"""Helpers for tests that run real processes and read what they exported."""

from __future__ import annotations

import asyncio
import contextlib
import json
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bot.demo.harness import free_port

ROOT = Path(__file__).resolve().parents[2]


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


def otlp_records(directory: Path, by_time: bool = True) -> list[dict[str, Any]]:
    """Every log record in the OTLP-JSON files under `directory` (the services' `*.jsonl`, or a Collector's
    `*.json`), flattened for assertions: by time, or (`by_time=False`) file by file in the order they were
    exported. Span and metrics lines hold none."""
    out = []
    for path in sorted(p for p in directory.glob("*.json*") if p.suffix in (".json", ".jsonl")):
        complete = path.read_text().split("\n")[:-1]  # a line still being written by a live service waits
        for line in filter(None, complete):
            request = json.loads(line)
            for resource_logs in request.get("resourceLogs", ()):
                resource = {a["key"]: a["value"]["stringValue"] for a in resource_logs["resource"]["attributes"]
                            if "stringValue" in a["value"]}
                for scope_logs in resource_logs["scopeLogs"]:
                    for record in scope_logs["logRecords"]:
                        attrs = {a["key"]: next(iter(a["value"].values()), None)
                                 for a in record.get("attributes", [])}
                        out.append({
                            "service": resource.get("service.name"), "scope": scope_logs["scope"].get("name", ""),
                            "file": path.name, "attrs": attrs, "message": record.get("body", {}).get("stringValue"),
                            "level": record.get("severityText"), "trace_id": record.get("traceId", ""),
                            "time": int(record.get("timeUnixNano", 0)), "resource": resource, "raw": record,
                        })
    return sorted(out, key=lambda r: r["time"]) if by_time else out


def iter_files_text(directory: Path) -> Iterator[str]:
    for path in sorted(directory.glob("*.jsonl")):
        yield path.read_text()


class LoopbackHTTP:
    """A stdlib HTTP server on a free loopback port, served from a daemon thread: `url`, `port`, `close()`.
    A subclass hands in its request handler; the handler's access log lines are dropped."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        quiet = type(handler.__name__, (handler,), {"log_message": lambda self, *args: None})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), quiet)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class TcpProxy:
    """A loopback TCP proxy in front of `target` (say Redis) that a test can cut off and restore.

    `cut()` drops every connection and refuses new ones (closed at once: the client sees a reset);
    `cut(blackhole=True)` keeps connections open but forwards nothing either way, like a network
    that silently loses packets, so only the client's own timeouts notice. `restore()` forwards
    again; connections that were black-holed are closed then (their streams lost bytes).
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.mode = "up"  # up | down | blackhole
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []

    def url(self, scheme: str = "redis", path: str = "/0") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def start(self) -> TcpProxy:
        self._listener.listen(128)
        self._listener.settimeout(0.1)
        self._spawn(self._accept)
        return self

    def cut(self, blackhole: bool = False) -> None:
        self.mode = "blackhole" if blackhole else "down"

    def restore(self) -> None:
        self.mode = "up"

    def stop(self) -> None:
        self._stopped.set()
        for thread in self._threads:
            thread.join(2)
        self._listener.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            if self.mode == "down":
                client.close()
                continue
            self._spawn(self._pump, client)

    def _pump(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        blackholed = self.mode == "blackhole"
        try:
            if not blackholed:
                upstream = socket.create_connection(self.target, timeout=2)
            while not self._stopped.is_set():
                if self.mode == "down" or (blackholed and self.mode == "up"):
                    return
                if self.mode == "blackhole":
                    blackholed = True
                readable, _, _ = select.select([s for s in (client, upstream) if s is not None], [], [], 0.05)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if self.mode == "up" and upstream is not None:
                        (upstream if sock is client else client).sendall(data)
        except OSError:
            return
        finally:
            client.close()
            if upstream is not None:
                upstream.close()


@contextlib.contextmanager
def served_in_thread(app: Any) -> Iterator[tuple[Any, asyncio.AbstractEventLoop, str]]:
    """An ASGI app served by uvicorn on a loopback port in a thread of this process: a test can reach into the
    app's own state (its Redis pool, its metrics) while it answers real HTTP."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(server.serve(),), daemon=True)
    thread.start()
    wait_for(lambda: server.started, what="the app in a thread")
    try:
        yield app, loop, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        loop.close()
