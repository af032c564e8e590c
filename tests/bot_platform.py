"""The bot platform for tests: real services in real processes against a real Redis."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import httpx
import redis

from tests.support import Proc, free_port, otlp_records, wait_for

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


class Platform:
    """One test's deployment: its own key prefix, log directory and processes."""

    def __init__(self, tmp: Path, redis_url: str = REDIS_URL) -> None:
        self.tmp = tmp
        self.redis_url = redis_url
        self.prefix = f"test-{uuid.uuid4().hex[:10]}:"
        self.logs = tmp / "otel"
        self.logs.mkdir()
        self.redis = redis.Redis.from_url(redis_url, decode_responses=True)
        self.procs: list[Proc] = []
        self.gateway_url = ""
        self.manifold_url = ""
        self.runner_urls: list[str] = []

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "BOT_", "TRACE", "BAGGAGE"))}
        env.update(
            REDIS_URL=self.redis_url, BOT_KEY_PREFIX=self.prefix, OTEL_LOGS_EXPORTER="file",
            OTEL_SESSION_LOG_DIR=str(self.logs), OTEL_BLRP_SCHEDULE_DELAY="100", BOT_KEEPALIVE_S="0.3",
            BOT_CONSOLE_LEVEL="WARNING", GLOBAL_LOG_LEVEL="INFO",
        )
        env.update(extra)
        return env

    def _start(self, name: str, args: list[str], **env: str) -> Proc:
        proc = Proc(args, self.env(**env), self.tmp / f"{name}-{len(self.procs)}.out")
        self.procs.append(proc)
        return proc

    def start_gateway(self) -> str:
        port = free_port()
        self._start("gateway", ["-m", "bot.gateway", "--port", str(port)]).wait_http(
            f"http://127.0.0.1:{port}/health")
        self.gateway_url = f"http://127.0.0.1:{port}"
        return self.gateway_url

    def start_manifold(self) -> str:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {"OPENAI_API_KEY": "", "GLOBAL_LOG_LEVEL": "INFO"}
        self._start("manifold", ["-m", "manifold.serve", "--port", str(port)], **env).wait_http(f"{url}/health")
        self.manifold_url = url
        return url

    def start_runner(self, slots: int = 1, level: str = "DEBUG") -> str:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        extra = {"MANIFOLD_URL": self.manifold_url} if self.manifold_url else {}
        self._start("runner", ["-m", "bot.runner", "--warm", "--port", str(port), "--slots", str(slots)],
                    GLOBAL_LOG_LEVEL=level, **extra).wait_http(f"{url}/health")
        self.runner_urls.append(url)
        return url

    def start_operator(self, **env: str) -> Proc:
        settings = {"GLOBAL_LOG_LEVEL": "DEBUG", "BOT_CONSOLE_LEVEL": "INFO", **env}
        if self.manifold_url:
            settings.setdefault("MANIFOLD_URL", self.manifold_url)  # a cold bot inherits it
        proc = self._start("operator", ["-m", "bot.operator"], **settings)
        wait_for(lambda: "Operator started" in self.text_of(proc) or proc.popen.poll() is not None, what="operator")
        return proc

    def text_of(self, proc: Proc) -> str:
        return proc.log.read_text(errors="replace") if proc.log.exists() else ""

    def join(self, headers: dict[str, str] | None = None, **body: Any) -> httpx.Response:
        return httpx.post(f"{self.gateway_url}/join", json=body, headers=headers or {}, timeout=10)

    def key(self, name: str) -> str:
        return self.prefix + name

    def lock(self, room: str) -> dict[str, Any] | None:
        raw = self.redis.get(self.key(f"room_active:{room}"))
        return json.loads(raw) if raw else None

    def keepalive(self, room: str) -> dict[str, Any] | None:
        raw = self.redis.get(self.key(f"room_keepalive:{room}"))
        return json.loads(raw) if raw else None

    def sessions(self, runner_url: str) -> list[dict[str, Any]]:
        return list(httpx.get(f"{runner_url}/sessions", timeout=5).json())

    def wait_running(self, room: str, timeout: float = 20.0) -> dict[str, Any]:
        return dict(wait_for(lambda: (v := self.lock(room)) and v["status"] == "running" and v,
                             timeout, what=f"running lock for {room}"))

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()

    def records(self) -> list[dict[str, Any]]:
        return otlp_records(self.logs)

    def cleanup(self) -> None:
        self.stop_all()
        for key in self.redis.scan_iter(match=f"{self.prefix}*"):
            self.redis.delete(key)
        self.redis.close()
