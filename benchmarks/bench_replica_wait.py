"""What a join pays for its replica: join latency against one master, with its replica and after it died.

Not a test. It starts a real `redis-server` master and replica on loopback (`tests.helpers.sentinel`), the real
services against the master (`bot.demo.harness`; one warm runner), and times
- `POST /join` to its 202 (the enqueue and its `WAIT`), `--joins` one after another and `--burst` at once;
- `POST /join` to the launch running (also the claim's and the take's `WAIT`s), `--runs` one after another;
first with the replica streaming, then with it killed (the master then has none, and waits for none).
`--cluster`: the same on a Redis Cluster of three masters with a replica each (`redis+cluster://`), the replica
of the `{bot}` master killed for the second half. Prints p50 and p99 per case as a Markdown table.
`python benchmarks/bench_replica_wait.py [--joins 300] [--cluster]`.
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
from tests.helpers.redis_topologies import Cluster
from tests.helpers.sentinel import Failover, crash, url

POLL_S = 0.005


def _ms(values: list[float], q: float) -> str:
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000:.1f}"


async def _accepted(client: httpx.AsyncClient, url: str, room: str) -> float:
    began = time.perf_counter()
    reply = await client.post(f"{url}/join", json={"room_url": room})
    took = time.perf_counter() - began
    assert reply.status_code == 202, reply.text
    await client.post(f"{url}/leave", json={"launchId": reply.json()["launchId"]})
    return took


async def _running(client: httpx.AsyncClient, url: str, room: str) -> float:
    began = time.perf_counter()
    reply = await client.post(f"{url}/join", json={"room_url": room})
    assert reply.status_code == 202, reply.text
    launch = reply.json()["launchId"]
    while (await client.get(f"{url}/launches/{launch}")).json()["status"] != "running":
        await asyncio.sleep(POLL_S)
    took = time.perf_counter() - began
    await client.post(f"{url}/leave", json={"launchId": launch})
    return took


async def _cases(url: str, tag: str, args: argparse.Namespace) -> dict[str, list[float]]:
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=args.burst + 10)) as client:
        for i in range(20):  # warm the connections
            await _accepted(client, url, f"https://bench.test/{tag}-warm-{i}")
        one = [await _accepted(client, url, f"https://bench.test/{tag}-seq-{i}") for i in range(args.joins)]
        burst = await asyncio.gather(*(_accepted(client, url, f"https://bench.test/{tag}-burst-{i}")
                                       for i in range(args.burst)))
        running = [await _running(client, url, f"https://bench.test/{tag}-run-{i}") for i in range(args.runs)]
    return {"202, one at a time": one, f"202, {args.burst} at once": list(burst), "running, one at a time": running}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--joins", type=int, default=300)
    parser.add_argument("--burst", type=int, default=50)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--cluster", action="store_true", help="a Redis Cluster (3 masters, a replica each)")
    args = parser.parse_args()
    topology: Cluster | Failover
    if args.cluster:
        topology = Cluster(masters=3, replicas=1)
        redis_url = topology.url
        replica = topology.node(topology.replicas_of(topology.owner("{bot}"))[0])
    else:
        topology = Failover(sentinels=0)
        redis_url, replica = url(topology.master), topology.replica
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        dep = Deployment(Path(tmp), redis_url, name="bench", BOT_REPLICA_GONE_S="1")
        try:
            dep.start_runner()
            dep.start_operator(BOT_CONSOLE_LEVEL="ERROR")
            dep.start_gateway(BOT_CONSOLE_LEVEL="ERROR")
            results["with its replica (WAIT 1)"] = asyncio.run(_cases(dep.gateway_url, "a", args))
            crash(replica)
            time.sleep(2.5)  # past BOT_REPLICA_GONE_S (1 s here): the master is alone for good
            results["replica dead (no WAIT)"] = asyncio.run(_cases(dep.gateway_url, "b", args))
        finally:
            dep.cleanup()
            topology.stop()
    print("| master | case | n | p50 ms | p99 ms | mean ms |\n| --- | --- | ---: | ---: | ---: | ---: |")
    for master, cases in results.items():
        for case, values in cases.items():
            print(f"| {master} | {case} | {len(values)} | {_ms(values, 0.5)} | {_ms(values, 0.99)} | "
                  f"{statistics.fmean(values) * 1000:.1f} |")


if __name__ == "__main__":
    main()
