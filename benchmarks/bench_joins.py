"""Join -> running latency of the bot platform, warm and cold, at several concurrencies.

Not a test: it starts the real services on loopback against the real Redis (`bot.demo.harness`), sends N
joins at once, times each from `POST /join` to its launch record saying `running`, ends every session
with `POST /leave`, and prints p50 and p99 per case as a Markdown table (the README's). Cold launches
queue behind `BOT_MAX_COLD` slots, so their latency at high concurrency is mostly waiting for a slot.
Run it with `python benchmarks/bench_joins.py [--concurrency 1 50 200] [--max-cold 4]`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.demo.harness import Deployment

POLL_S = 0.02


async def _one(client: httpx.AsyncClient, dep: Deployment, i: int, start: asyncio.Event) -> float:
    await start.wait()
    began = time.perf_counter()
    reply = await client.post(f"{dep.gateway_url}/join", json={"room_url": f"https://bench.test/r-{i}",
                                                               "sessionId": f"bench-{i}"})
    reply.raise_for_status()
    launch = reply.json()["launchId"]
    while True:
        status = (await client.get(f"{dep.gateway_url}/launches/{launch}")).json()["status"]
        if status == "running":
            took = time.perf_counter() - began
            break
        if status in ("failed", "ended"):
            raise RuntimeError(f"launch {launch} {status}")
        await asyncio.sleep(POLL_S)
    await client.post(f"{dep.gateway_url}/leave", json={"launchId": launch})  # frees the slot for the next
    return took


async def _round(dep: Deployment, n: int) -> list[float]:
    limits = httpx.Limits(max_connections=n + 10)
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(300.0, pool=None)) as client:
        start = asyncio.Event()
        tasks = [asyncio.create_task(_one(client, dep, i, start)) for i in range(n)]
        await asyncio.sleep(0.05)
        start.set()
        return list(await asyncio.gather(*tasks))


def _fmt(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def _percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def run(kind: str, concurrency: list[int], max_cold: int) -> list[tuple[str, int, float, float]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-joins-") as tmp:
        dep = Deployment(Path(tmp), BOT_CONSOLE_LEVEL="ERROR", GLOBAL_LOG_LEVEL="WARNING",
                         BOT_MAX_COLD=str(max_cold), BOT_KEEPALIVE_S="1", BOT_LOCK_TTL_S="10")
        try:
            if kind == "warm":
                dep.start_runner(slots=max(concurrency))
            dep.start_operator()
            dep.start_gateway()
            for n in concurrency:
                took = asyncio.run(_round(dep, n))
                rows.append((kind, n, _percentile(took, 50), _percentile(took, 99)))
                print(f"  {kind} x{n}: p50 {_fmt(rows[-1][2])}, p99 {_fmt(rows[-1][3])}", file=sys.stderr, flush=True)
        finally:
            dep.cleanup()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 50, 200])
    parser.add_argument("--max-cold", type=int, default=4, help="BOT_MAX_COLD for the cold runs")
    parser.add_argument("--kinds", nargs="+", default=["warm", "cold"], choices=["warm", "cold"])
    args = parser.parse_args()
    rows = [row for kind in args.kinds for row in run(kind, args.concurrency, args.max_cold)]
    print(f"BOT_MAX_COLD={args.max_cold}\n")
    print("| start | concurrent joins | p50 | p99 |")
    print("| --- | ---: | ---: | ---: |")
    for kind, n, p50, p99 in rows:
        print(f"| {kind} | {n} | {_fmt(p50)} | {_fmt(p99)} |")


if __name__ == "__main__":
    main()
