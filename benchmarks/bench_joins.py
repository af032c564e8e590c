"""Join -> running latency of the bot platform, warm and cold, at several concurrencies.

Not a test: it starts the real services on loopback against the real Redis (`bot.demo.harness`), sends N
joins at once, times each from `POST /join` to its launch record saying `running`, ends every session
with `POST /leave`, and prints p50 and p99 per case as a Markdown table (the README's). Cold launches
queue behind `BOT_MAX_COLD` slots, so their latency at high concurrency is mostly waiting for a slot.
Run it with `python benchmarks/bench_joins.py [--concurrency 1 50 200] [--max-cold 4]`.

What the platform's metrics cost: `--metrics none file` runs each case once per `OTEL_METRICS_EXPORTER` value,
`--repeat` times, alternating, with metrics exported every `--metric-interval-ms` (far more often than the
SDK's default minute, so their export is counted too), and adds a table of the services' CPU time per join:
gateway, operator (with its cold bots, once reaped), runners, read from /proc, over each whole round.
"""

from __future__ import annotations

import argparse
import asyncio
import os
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


def cpu_s(pids: list[int]) -> float:
    """User and system CPU time of `pids` and of their children they have waited for (cold bots)."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
        ticks += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def run(kind: str, concurrency: list[int], max_cold: int, **env: str) -> list[tuple[str, int, float, float, float]]:
    """(kind, joins, p50, p99, CPU seconds of the services per join) per concurrency."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-joins-") as tmp:
        dep = Deployment(Path(tmp), BOT_CONSOLE_LEVEL="ERROR", GLOBAL_LOG_LEVEL="WARNING",
                         BOT_MAX_COLD=str(max_cold), BOT_KEEPALIVE_S="1", BOT_LOCK_TTL_S="10", **env)
        try:
            if kind == "warm":
                dep.start_runner(slots=max(concurrency))
            dep.start_operator()
            dep.start_gateway()
            pids = [service.pid for service in dep.services]
            for n in concurrency:
                before = cpu_s(pids)
                took = asyncio.run(_round(dep, n))
                cpu = (cpu_s(pids) - before) / n
                rows.append((kind, n, _percentile(took, 50), _percentile(took, 99), cpu))
                print(f"  {kind} x{n} {' '.join(f'{k}={v}' for k, v in env.items())}: p50 {_fmt(rows[-1][2])}, "
                      f"p99 {_fmt(rows[-1][3])}, CPU {cpu * 1000:.1f} ms/join", file=sys.stderr, flush=True)
        finally:
            dep.cleanup()
    return rows


def recording_s(joins: int = 20_000) -> float:
    """CPU seconds of the metric calls one join makes across the services (the gateway's `JoinOutcomes` layer and
    `bot.joins`, the operator's dispatch and join figures, the runner's session start and end), on the SDK with
    a reader attached, in this process: a figure the services' noisy CPU cannot hide."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from bot.metrics import GatewayMetrics, JoinOutcomes, OperatorMetrics, RunnerMetrics

    meter = MeterProvider(metric_readers=[InMemoryMetricReader()]).get_meter("bench")
    gateway, operator, runner = GatewayMetrics(meter), OperatorMetrics(meter), RunnerMetrics(meter)

    async def route(scope: dict, receive: object, send: object) -> None:
        scope.setdefault("state", {})["bot.join_outcome"] = "queued"
        await send({"type": "http.response.start", "status": 202})  # type: ignore[operator]

    async def sent(message: object) -> None:
        pass

    async def joining() -> float:
        layer = JoinOutcomes(route, gateway)  # type: ignore[arg-type]
        began = time.process_time()
        for _ in range(joins):
            await layer({"type": "http", "path": "/join", "method": "POST"}, sent, sent)
            operator.dispatched("warm", 0.2)
            operator.running("warm", 0.5)
            runner.started("warm")
            runner.ended("warm", "ended", 30.0)
        return (time.process_time() - began) / joins

    async def bare() -> float:  # the same loop without the layer and the calls
        began = time.process_time()
        for _ in range(joins):
            await route({"type": "http", "path": "/join", "method": "POST"}, sent, sent)
        return (time.process_time() - began) / joins

    return asyncio.run(joining()) - asyncio.run(bare())


def metrics_cost(kinds: list[str], concurrency: list[int], max_cold: int, exporters: list[str], repeat: int,
                 interval_ms: int) -> None:
    """The services' CPU per join for each `OTEL_METRICS_EXPORTER`, alternating, medians of `repeat` rounds."""
    cpu: dict[tuple[str, int, str], list[float]] = {}
    for _ in range(repeat):
        for kind in kinds:
            for exporter in exporters:
                env = {"OTEL_METRICS_EXPORTER": exporter, "OTEL_METRIC_EXPORT_INTERVAL": str(interval_ms)}
                for row in run(kind, concurrency, max_cold, **env):
                    cpu.setdefault((kind, row[1], exporter), []).append(row[4])
    base = exporters[0]
    recording = recording_s()
    print(f"\nServices' CPU per join (median of {repeat}), metrics exported every {interval_ms} ms; the metric calls "
          f"of one join, in process: {recording * 1e6:.0f} µs\n")
    print("| start | concurrent joins | " + " | ".join(f"metrics {e}" for e in exporters) + " | vs " + base +
          " | metric calls / CPU |")
    print("| --- | ---: | " + " | ".join("---:" for _ in exporters) + " | ---: | ---: |")
    for kind in kinds:
        for n in concurrency:
            medians = [statistics.median(cpu[(kind, n, e)]) for e in exporters]
            change = " / ".join(f"{(m / medians[0] - 1) * 100:+.1f} %" for m in medians[1:])
            print(f"| {kind} | {n} | " + " | ".join(f"{m * 1000:.1f} ms" for m in medians) + f" | {change} | "
                  f"{recording / medians[0] * 100:.2f} % |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 50, 200])
    parser.add_argument("--max-cold", type=int, default=4, help="BOT_MAX_COLD for the cold runs")
    parser.add_argument("--kinds", nargs="+", default=["warm", "cold"], choices=["warm", "cold"])
    parser.add_argument("--metrics", nargs="+", metavar="EXPORTER",
                        help="compare the services' CPU per join across these OTEL_METRICS_EXPORTER values "
                             "(the first is the baseline), e.g. none file")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per exporter with --metrics (alternating)")
    parser.add_argument("--metric-interval-ms", type=int, default=1000,
                        help="OTEL_METRIC_EXPORT_INTERVAL with --metrics")
    args = parser.parse_args()
    if args.metrics:
        metrics_cost(args.kinds, args.concurrency, args.max_cold, args.metrics, args.repeat, args.metric_interval_ms)
        return
    rows = [row for kind in args.kinds for row in run(kind, args.concurrency, args.max_cold)]
    print(f"BOT_MAX_COLD={args.max_cold}\n")
    print("| start | concurrent joins | p50 | p99 |")
    print("| --- | ---: | ---: | ---: |")
    for kind, n, p50, p99, _ in rows:
        print(f"| {kind} | {n} | {_fmt(p50)} | {_fmt(p99)} |")


if __name__ == "__main__":
    main()
