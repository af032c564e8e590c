"""The operator's dispatch, in process, against the real Redis."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping

import httpx
import pytest
import redis.asyncio as aioredis

from bot.keys import Keys
from bot.models import Job, LockValue
from bot.operator import Operator, cold_env
from otel_session import inject_payload, session
from tests.bot_platform import REDIS_URL

ROOM = "https://rooms.example.test/op"


class BrokenLauncher:
    """A launcher whose platform refuses every start (say, the cluster is out of quota)."""

    def launch(self, launch_id: str, env: Mapping[str, str]) -> int:
        raise RuntimeError("no capacity for cold bots")

    def reap(self) -> None:
        pass


@pytest.fixture
def keys():
    return Keys(f"test-{uuid.uuid4().hex[:10]}:")


async def _cleanup(r, keys):
    async for key in r.scan_iter(match=f"{keys.prefix}*"):
        await r.delete(key)
    await r.aclose()


def test_a_failed_launch_is_dead_lettered_and_frees_the_room(keys, otel_logs):
    async def main():
        r = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
        try:
            with session(session_id="s-fail", extra={"bot.launch_id": "L-fail"}):
                raw = json.dumps(inject_payload({"room_url": ROOM, "sessionId": "s-fail", "launchId": "L-fail"}))
            await r.set(keys.room_active(ROOM), LockValue(status="pending", session_id="s-fail",
                                                          launch_id="L-fail").dump())
            await r.rpush(keys.processing, raw)
            async with httpx.AsyncClient() as http:
                await Operator(r, keys, BrokenLauncher(), http).handle(raw)
            assert await r.get(keys.room_active(ROOM)) is None
            assert await r.llen(keys.processing) == 0
            (dead,) = await r.lrange(keys.dead_letter, 0, -1)
            assert json.loads(dead)["job"] == raw and "no capacity" in json.loads(dead)["error"]
        finally:
            await _cleanup(r, keys)

    asyncio.run(main())
    (failure,) = [rec for rec in otel_logs.records if rec.message.startswith("Launch L-fail failed")]
    assert failure.session_id == "s-fail" and "no capacity for cold bots" in (failure.exception or "")


def test_cold_env_never_holds_empty_or_stale_values():
    job = Job(room_url=ROOM, sessionId="s", launchId="L")
    env = cold_env(job, base={"PATH": "/bin", "EMPTY": "", "BOT_ROOM_TOKEN": "stale", "BAGGAGE": "session.id=old"})
    assert env["BOT_SESSION_ID"] == "s" and env["BOT_LAUNCH_ID"] == "L" and env["BOT_ROOM_URL"] == ROOM
    assert "EMPTY" not in env and "BOT_ROOM_TOKEN" not in env and "BAGGAGE" not in env
    assert all(env.values())
