"""One deployment of the platform on this machine, the demo's and the tests': real processes, real Redis.

Each has its own key prefix and log directory, so several share one Redis; it counts bots from the
outside (runners' `GET /sessions` plus cold processes): "exactly one bot per launch" is checked so.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bot import rooms
from bot.keys import Keys
from bot.settings import redis_url as default_redis_url
from otel_session.live import urls

ROOT = Path(__file__).resolve().parents[2]
REDIS_ERRORS = urls.outages()  # a Cluster's RedisClusterException is Redis away too


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05, what: str = "") -> Any:
    """The check's first true value; transient HTTP and Redis errors count as not yet."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.HTTPError, *REDIS_ERRORS, ValueError, KeyError):
            if value := check():
                return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what or check}")
        time.sleep(interval)


class Service:
    """A service in its own process (and process group), stopped with SIGTERM like an orchestrator would."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.log = name, log
        self._out = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen([sys.executable, *args], env=env, cwd=ROOT, stdout=self._out,
                                      stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_http(self, url: str, timeout: float = 30.0) -> None:
        def up() -> bool:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{self.output()[-4000:]}")
            return httpx.get(url, timeout=0.5).status_code == 200

        wait_for(up, timeout, what=f"{self.name} at {url}")

    def signal(self, sig: int) -> None:
        if self.alive():
            self.popen.send_signal(sig)

    def stop(self, timeout: float = 20.0) -> int:
        if self.alive():
            self.popen.send_signal(signal.SIGCONT)  # a frozen service must be able to hear SIGTERM
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._out.close()
        return int(self.popen.returncode)


def process_env(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0]
    except (OSError, IndexError):
        return False
    return state not in "ZX"


def exporter_env(otel_dir: Path, otlp_endpoint: str | None = None) -> dict[str, str]:
    """Where every service (and the cold bots the operator spawns, which inherit it) sends logs, spans and
    metrics: OTLP-JSON files in `otel_dir`, or OTLP/HTTP to a Collector at `otlp_endpoint`."""
    if otlp_endpoint:
        return {"OTEL_LOGS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_endpoint,
                "OTEL_BSP_SCHEDULE_DELAY": "100"}
    return {"OTEL_LOGS_EXPORTER": "file", "OTEL_SESSION_LOG_DIR": str(otel_dir)}


class Deployment:
    """The processes and Redis keys of one run."""

    def __init__(self, log_dir: Path, redis_url: str | None = None, otel_dir: Path | None = None, name: str = "test",
                 otlp_endpoint: str | None = None, **env: str) -> None:
        """`log_dir`: the services' output; `otel_dir` (default `log_dir/otel`): their OTLP-JSON logs, or where
        the Collector at `otlp_endpoint` writes its files when every service exports to one (OTLP/HTTP) instead;
        `name`: what its Redis keys start with."""
        self.log_dir = log_dir
        self.redis_url = redis_url or default_redis_url()
        self.keys = Keys(f"{name}-{uuid.uuid4().hex[:10]}:")
        self.otel_dir = otel_dir or log_dir / "otel"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.otel_dir.mkdir(parents=True, exist_ok=True)
        # any form of otel_session.live.urls; a cluster client's scan_iter walks every master
        self.redis = urls.client(self.redis_url, decode_responses=True, socket_connect_timeout=2)
        self.services: list[Service] = []
        self.gateway_url = self.manifold_url = ""
        self.runner_urls: list[str] = []
        self.base_env = {k: v for k, v in os.environ.items()
                         if not k.startswith(("OTEL_", "BOT_", "TRACEPARENT", "TRACESTATE", "BAGGAGE"))}
        self.base_env.update({
            "REDIS_URL": self.redis_url, "BOT_KEY_PREFIX": self.keys.prefix,
            "OTEL_SESSION_REDIS_URL": self.redis_url, "OTEL_SESSION_REDIS_PREFIX": self.keys.prefix,
            **exporter_env(self.otel_dir, otlp_endpoint), "OTEL_BLRP_SCHEDULE_DELAY": "100",
            "BOT_CONSOLE_LEVEL": "WARNING", "GLOBAL_LOG_LEVEL": "INFO", **env})

    # -- services ---------------------------------------------------------------------------------

    def start(self, name: str, args: list[str], health: str | None = None, **env: str) -> Service:
        service = Service(name, args, {**self.base_env, **env}, self.log_dir / f"{name}-{len(self.services)}.out")
        self.services.append(service)
        if health:
            service.wait_http(health)
        return service

    def start_gateway(self, **env: str) -> Service:
        port = free_port()
        self.gateway_url = f"http://127.0.0.1:{port}"
        return self.start("gateway", ["-m", "bot.gateway", "--port", str(port)], f"{self.gateway_url}/health", **env)

    def start_manifold(self, **env: str) -> Service:
        port = free_port()
        self.manifold_url = f"http://127.0.0.1:{port}"
        return self.start("manifold", ["-m", "manifold.serve", "--port", str(port)], f"{self.manifold_url}/health",
                          **{"OPENAI_API_KEY": os.environ.get("OPENAI_API_KEY", ""), **env})

    def start_runner(self, slots: int = 1, **env: str) -> Service:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        extra = {"MANIFOLD_URL": self.manifold_url} if self.manifold_url else {}
        service = self.start("runner", ["-m", "bot.runner", "--warm", "--port", str(port), "--slots", str(slots)],
                             f"{url}/health", **{**extra, **env})
        self.runner_urls.append(url)
        return service

    def start_operator(self, **env: str) -> Service:
        extra = {"MANIFOLD_URL": self.manifold_url} if self.manifold_url else {}
        try:
            beating: set[Any] | None = set(self.redis.zrange(self.keys.operators, 0, -1))
        except REDIS_ERRORS:
            beating = None  # Redis is down (a test wants that): the operator cannot beat yet
        service = self.start("operator", ["-m", "bot.operator"], **{**extra, **env})
        if beating is None:
            time.sleep(1.0)
        else:
            wait_for(lambda: set(self.redis.zrange(self.keys.operators, 0, -1)) - beating or not service.alive(),
                     what="the operator's first heartbeat")
        if not service.alive():
            raise RuntimeError(f"the operator exited:\n{service.output()[-4000:]}")
        return service

    # -- the platform's state, read from the outside ---------------------------------------------

    def join(self, timeout: float = 10.0, **body: Any) -> httpx.Response:
        return httpx.post(f"{self.gateway_url}/join", json=body, timeout=timeout)

    def _json(self, key: str) -> dict[str, Any] | None:
        raw = self.redis.get(key)
        value = json.loads(raw) if raw else None
        return value if isinstance(value, dict) else None

    def lock(self, room_url: str) -> dict[str, Any] | None:
        return self._json(self.keys.room_active(rooms.room_hash(rooms.canonical(room_url))))

    def record(self, launch_id: str) -> dict[str, Any] | None:
        return self._json(self.keys.launch(launch_id))

    def wait_status(self, launch_id: str, *statuses: str, timeout: float = 30.0) -> dict[str, Any]:
        return dict(wait_for(lambda: (r := self.record(launch_id)) and r["status"] in statuses and r, timeout,
                             what=f"launch {launch_id} to be {'/'.join(statuses)}"))

    def warm_bots(self) -> list[dict[str, Any]]:
        """Every running bot on every warm runner that answers."""
        bots = []
        for url in self.runner_urls:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                bots += [{**b, "runner": url} for b in httpx.get(f"{url}/sessions", timeout=2).json() if b["running"]]
        return bots

    def cold_bots(self) -> list[dict[str, Any]]:
        """Every live cold bot process of this deployment (found by its environment)."""
        bots = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            env = process_env(int(entry.name))
            if env.get("BOT_KEY_PREFIX") == self.keys.prefix and env.get("BOT_LAUNCH_ID") and _running(int(entry.name)):
                bots.append({"launchId": env["BOT_LAUNCH_ID"], "pid": int(entry.name)})
        return bots

    def bots(self) -> dict[str, int]:
        """launch id -> how many bots run for it, warm and cold."""
        counts: dict[str, int] = {}
        for bot in self.warm_bots() + self.cold_bots():
            counts[bot["launchId"]] = counts.get(bot["launchId"], 0) + 1
        return counts

    def records(self) -> list[Any]:
        from otel_session.log_reader import read_records

        return list(read_records(self.otel_dir))

    # -- teardown ---------------------------------------------------------------------------------

    def stop_all(self) -> None:
        for service in reversed(self.services):
            service.stop()
        for bot in self.cold_bots():
            with contextlib.suppress(ProcessLookupError):
                os.kill(bot["pid"], signal.SIGCONT)
                os.kill(bot["pid"], signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            wait_for(lambda: not self.cold_bots(), 15, what="cold bots to stop")
        for bot in self.cold_bots():
            with contextlib.suppress(ProcessLookupError):
                os.kill(bot["pid"], signal.SIGKILL)

    def cleanup(self) -> None:
        self.stop_all()
        with contextlib.suppress(*REDIS_ERRORS):
            for key in self.redis.scan_iter(match=f"{self.keys.prefix}*"):
                self.redis.delete(key)
        self.redis.close()
