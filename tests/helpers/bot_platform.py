"""The bot platform for tests: the demo's deployment (`bot.demo.harness`) with fast knobs and test helpers."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from bot import rooms
from bot.demo.harness import Deployment, Service, wait_for
from bot.keys import Keys
from bot.launches import Launches
from bot.settings import redis_url
from otel_session.live import urls
from tests.helpers.collector import Collector
from tests.helpers.support import otlp_records

REDIS_URL = redis_url()

# Faults show within seconds: a bot renews every 0.3 s and stops itself after ~1.5 s without Redis;
# a stopped service drains for 1 s.
FAST = {"BOT_KEEPALIVE_S": "0.3", "BOT_LOCK_TTL_S": "3", "BOT_HEARTBEAT_S": "0.3", "BOT_PENDING_TTL_S": "3",
        "BOT_DRAIN_S": "1"}


class Platform(Deployment):
    """One test's deployment: its own key prefix, log directory and processes; with `collector` (a started
    `tests.helpers.collector.Collector`) every service exports to it, and `logs` is its directory."""

    def __init__(self, tmp: Path, redis_url: str = REDIS_URL, collector: Collector | None = None, **env: str) -> None:
        if collector is None:
            super().__init__(tmp, redis_url, **{**FAST, **env})
        else:
            super().__init__(tmp, redis_url, otel_dir=collector.directory, otlp_endpoint=collector.endpoint,
                             **{**FAST, **env})

    @property
    def prefix(self) -> str:
        return self.keys.prefix

    @property
    def logs(self) -> Path:
        return self.otel_dir

    def start_runner(self, slots: int = 1, level: str = "DEBUG", **env: str) -> str:  # type: ignore[override]
        """The runner's URL (its Service is `services[-1]`)."""
        super().start_runner(slots, **{"GLOBAL_LOG_LEVEL": level, **env})
        return self.runner_urls[-1]

    def start_manifold(self, **env: str) -> str:  # type: ignore[override]
        super().start_manifold(**{"OPENAI_API_KEY": "", **env})
        return self.manifold_url

    @property
    def procs(self) -> list[Service]:
        return self.services

    def start_operator(self, **env: str) -> Service:
        return super().start_operator(**{"GLOBAL_LOG_LEVEL": "DEBUG", "BOT_CONSOLE_LEVEL": "INFO", **env})

    def key(self, name: str) -> str:
        return self.keys.prefix + name

    def keepalive(self, room_url: str) -> dict[str, Any] | None:
        return self._json(self.keys.room_keepalive(rooms.room_hash(rooms.canonical(room_url))))

    def wait_running(self, room_url: str, timeout: float = 30.0) -> dict[str, Any]:
        return dict(wait_for(lambda: (v := self.lock(room_url)) and v["status"] == "running" and v, timeout,
                             what=f"a running lock for {room_url}"))

    def text_of(self, service: Service) -> str:
        return service.output()

    def join(self, timeout: float = 10.0, headers: dict[str, str] | None = None, **body: Any) -> httpx.Response:
        return httpx.post(f"{self.gateway_url}/join", json=body, headers=headers or {}, timeout=timeout)

    def sessions(self, runner_url: str) -> list[dict[str, Any]]:
        return list(httpx.get(f"{runner_url}/sessions", timeout=5).json())

    def records(self) -> list[dict[str, Any]]:  # type: ignore[override] - the tests read the wire form
        return otlp_records(self.otel_dir)


def demo_env() -> dict[str, str]:
    """`python -m bot.demo`'s environment in the tests: this Redis, offline (no OpenAI key), no OTEL_/BOT_ knobs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "BOT_"))}
    env.pop("OPENAI_API_KEY", None)
    env["REDIS_URL"] = REDIS_URL
    return env


def clear_keys(keys: Keys) -> None:
    """Delete every key under a test's own prefix (any URL form: a Cluster's scan walks every master)."""
    r = urls.client(REDIS_URL)
    try:
        for key in r.scan_iter(match=f"{keys.prefix}*"):
            r.delete(key)
    finally:
        r.close()


def run_with_redis(test: Callable[[Any, Keys], Awaitable[None]]) -> None:
    """Run an async test against the real Redis under its own key prefix, cleaned up after."""
    async def main() -> None:
        keys = Keys(f"test-{uuid.uuid4().hex[:10]}:")
        r = urls.async_client(REDIS_URL, decode_responses=True)  # any URL form: a Cluster's scan walks every master
        try:
            await test(r, keys)
        finally:
            async for key in r.scan_iter(match=f"{keys.prefix}*"):
                await r.delete(key)
            await r.aclose()

    asyncio.run(main())


# -- the fault drill (BOT_FAULT_MESSAGE), shared by the runner's and the debug buffer's platform tests --

DRILL = "fault drill: fail this session"
DRILL_TOKEN = "drill-admin-token"


def admin(platform: Platform, launch_id: str, message: str) -> None:
    """An admin message to `launch_id` through the gateway, with the drill's token."""
    reply = httpx.post(f"{platform.gateway_url}/admin", json={"launchId": launch_id, "message": message},
                       headers={"authorization": f"Bearer {DRILL_TOKEN}"}, timeout=10)
    assert reply.status_code == 202, reply.text


async def claim_as_operator(launches: Launches, launch_id: str) -> tuple[int, dict[str, Any]]:
    """What an operator does first for a queued launch: claim its next attempt. (attempt, launch record)"""
    rec = await launches.record(launch_id)
    assert rec is not None
    pending = Launches.pending_lock(launch_id=launch_id, session_id=rec["sessionId"], room=rec["room"],
                                    room_url=rec["room_url"])
    claim = await launches.claim(pending, "op-test")
    assert claim.outcome == "claimed"
    return claim.attempt, rec
