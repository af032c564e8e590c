"""1,000 joins in flight at once against one gateway process: no 503 while Redis answers, no 202 lost."""

from __future__ import annotations

import asyncio
import json

import httpx

JOINS = 1000


async def _flood(url: str) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=JOINS, max_keepalive_connections=JOINS)  # httpx's default is 100
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(60.0, pool=None)) as client:
        start = asyncio.Event()

        async def one(i: int) -> httpx.Response:
            await start.wait()
            return await client.post(f"{url}/join", json={"room_url": f"https://load.test/room-{i}",
                                                          "sessionId": f"load-{i}"})

        tasks = [asyncio.create_task(one(i)) for i in range(JOINS)]
        await asyncio.sleep(0.1)
        start.set()
        return list(await asyncio.gather(*tasks))


def test_a_thousand_concurrent_joins_get_no_503_and_every_202_is_queued(platform):
    platform.start_gateway(GLOBAL_LOG_LEVEL="WARNING")
    replies = asyncio.run(_flood(platform.gateway_url))
    codes = [r.status_code for r in replies]
    assert 503 not in codes
    assert set(codes) <= {202, 429}, sorted(set(codes))
    for refused in (r for r in replies if r.status_code == 429):
        assert int(refused.headers["Retry-After"]) >= 1
    accepted = {r.json()["launchId"] for r in replies if r.status_code == 202}
    assert len(accepted) >= JOINS * 0.9, f"only {len(accepted)} of {JOINS} accepted"
    queued = {json.loads(job)["launchId"] for job in platform.redis.lrange(platform.keys.launch_queue, 0, -1)}
    assert queued == accepted  # every 202 is in the queue, and nothing else is
