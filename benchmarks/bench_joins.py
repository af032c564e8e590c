"""Join -> running latency of the bot platform, warm and cold, at several concurrencies, and joins a second.

Not a test: it starts the real services on loopback against the real Redis (`bot.demo.harness`), sends N
joins at once, follows each with the gateway's long poll (`GET /launches/{id}?wait_s=30&seen=...`: one request
per status change, so the client costs the services little), ends every session with `POST /leave`, and prints
p50 and p99 per case as a Markdown table: join -> running as the client saw it, and each step from the launch
record's server-side `times` (queued, claimed, running: Redis time; started: the runner's clock). Cold launches
queue behind `BOT_MAX_COLD` slots, so their latency at high concurrency is mostly waiting for a slot. With each
case it prints the CPU seconds per join of each service (gateway, operator with its reaped cold bots, runner,
read from /proc) and of this client (`os.times`), and the load average: the machine may be shared.
Run it with `python benchmarks/bench_joins.py [--concurrency 1 50 200] [--max-cold 4]`.

`--sustain 60 --rate 50`: joins arrive at `--rate` a second for `--sustain` seconds (warm, open loop); it
reports the joins that reached `running` a second over the whole run, with the same figures.

What the platform's metrics cost: `--metrics none file` runs each case once per `OTEL_METRICS_EXPORTER` value,
`--repeat` times, alternating, with metrics exported every `--metric-interval-ms` (far more often than the
SDK's default minute, so their export is counted too), and adds a table of the services' CPU time per join:
gateway, operator (with its cold bots, once reaped), runners, read from /proc, over each whole round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import itertools

from bot.demo.harness import Deployment

WAIT_S = 30  # each long poll's bound; the gateway answers as soon as the status changes
STEPS = ("queued", "claimed", "started", "running")


@dataclass
class Case:
    """One round's figures: client-side join -> running, the record's step times, CPU seconds per join."""

    kind: str
    joins: int
    took: list[float] = field(default_factory=list)
    steps: dict[str, list[float]] = field(default_factory=dict)  # "queued→claimed" -> seconds per join
    cpu: dict[str, float] = field(default_factory=dict)  # service -> CPU seconds per join
    rate: float = 0.0  # joins that reached running, a second (sustained runs)
    load: str = ""
    retried: int = 0  # 429/503 answers the client asked again after Retry-After
    failed: list[str] = field(default_factory=list)  # launches that never ran: why

    @property
    def services_cpu(self) -> float:
        return sum(v for k, v in self.cpu.items() if k != "client")


class Http:
    """A minimal HTTP/1.1 keep-alive client on one connection: the bench's own cost stays small beside the
    services' (httpx spent some 30 ms of CPU a join, more than all three services together)."""

    retried = 0  # answers of 429 or 503 asked again, across every connection

    def __init__(self, url: str) -> None:
        self.host, self.port = url.removeprefix("http://").split(":")
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        """The answer; a 429 or 503 is asked again after its Retry-After, as a client should (`retried`)."""
        while True:
            code, reply, retry_after = await self._once(method, path, body)
            if code not in (429, 503):
                return code, reply
            Http.retried += 1
            await asyncio.sleep(retry_after)

    async def _once(self, method: str, path: str, body: dict | None) -> tuple[int, dict, float]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, int(self.port))
        assert self.reader is not None
        data = json.dumps(body).encode() if body is not None else b""
        self.writer.write(f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\ncontent-type: application/json\r\n"
                          f"content-length: {len(data)}\r\n\r\n".encode() + data)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = dict(line.lower().split(":", 1) for line in lines[1:] if ":" in line)
        reply = json.loads(await self.reader.readexactly(int(headers["content-length"])))
        return status, reply, float(headers.get("retry-after", "1"))

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


FAILED: list[str] = []  # why each launch that never ran ended, as its record said


async def _one(dep: Deployment, i: int, start: asyncio.Event) -> tuple[str, float, float, float] | None:
    """(launch id, client seconds join → running, client clock at the join, client clock when it saw running);
    None for a launch that failed or ended first (counted in `FAILED`)."""
    await start.wait()
    http = Http(dep.gateway_url)
    try:
        began, sent = time.perf_counter(), time.time()
        code, reply = await http.request("POST", "/join", {"room_url": f"https://bench.test/r-{i}",
                                                          "sessionId": f"bench-{i}"})
        if code != 202:
            raise RuntimeError(f"join {i}: {code} {reply}")
        launch, status = reply["launchId"], "queued"
        while status != "running":
            code, reply = await http.request("GET", f"/launches/{launch}?wait_s={WAIT_S}&seen={status}")
            status = reply.get("status")
            if code != 200:
                raise RuntimeError(f"launch {launch}: {code} {reply}")
            if status in ("failed", "ended"):
                FAILED.append(f"{status}: {reply.get('reason', '')}")
                return None
        took, seen = time.perf_counter() - began, time.time()
        await http.request("POST", "/leave", {"launchId": launch})  # frees the slot for the next
    finally:
        await http.close()
    return launch, took, sent, seen


async def _round(dep: Deployment, n: int) -> list[tuple[str, float, float, float]]:
    start = asyncio.Event()
    tasks = [asyncio.create_task(_one(dep, i, start)) for i in range(n)]
    await asyncio.sleep(0.05)
    start.set()
    return [r for r in await asyncio.gather(*tasks) if r is not None]


async def _sustained(dep: Deployment, rate: float, seconds: float) -> tuple[list[tuple[str, float, float, float]],
                                                                          float]:
    """Joins at `rate` a second for `seconds`, each followed to running and left; (results, wall seconds from
    the first join to the last one seen running)."""
    start = asyncio.Event()
    start.set()
    began, tasks, i = time.perf_counter(), [], 0
    while (due := began + i / rate) < began + seconds:
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        tasks.append(asyncio.create_task(_one(dep, 10_000 + i, start)))
        i += 1
    results = [r for r in await asyncio.gather(*tasks) if r is not None]
    first = min(sent for _, _, sent, _ in results)
    return results, max(seen for _, _, _, seen in results) - first


def _steps(dep: Deployment, results: list[tuple[str, float, float, float]]) -> dict[str, list[float]]:
    """Each step's seconds per launch, from the records' server-side `times`; and, on the client's clock (the
    same host's), from its join to `queued` and from `running` to its long poll's answer."""
    out: dict[str, list[float]] = {}
    names = [("join", "queued"), *itertools.pairwise(STEPS), ("running", "seen"), ("queued", "running")]
    for i in range(0, len(results), 500):
        chunk = results[i:i + 500]
        for raw, (_, _, sent, seen) in zip(dep.redis.mget([dep.keys.launch(r[0]) for r in chunk]), chunk, strict=True):
            times = {**(json.loads(raw) if raw else {}).get("times", {}), "join": sent, "seen": seen}
            for a, b in names:
                if a in times and b in times:
                    out.setdefault(f"{a}→{b}", []).append(float(times[b]) - float(times[a]))
    return out


def _fmt(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def _percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def cpu_s(pids: list[int]) -> float:
    """User and system CPU time of `pids` and of their children they have waited for (cold bots)."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
        ticks += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def _cpu_now(dep: Deployment) -> dict[str, float]:
    out: dict[str, float] = {}
    for service in dep.services:
        out[service.name] = out.get(service.name, 0.0) + cpu_s([service.pid])
    own = os.times()
    out["client"] = own.user + own.system
    out["retried"] = Http.retried
    out["failed"] = len(FAILED)
    return out


def _load() -> str:
    return "load " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def _report(case: Case) -> None:
    steps = ", ".join(f"{name} p50 {_fmt(_percentile(v, 50))} p99 {_fmt(_percentile(v, 99))}"
                      for name, v in case.steps.items())
    cpu = ", ".join(f"{name} {v * 1000:.1f}" for name, v in case.cpu.items())
    rate = f", {case.rate:.1f} joins/s" if case.rate else ""
    rate += f", {case.retried} answers of 429/503 asked again" if case.retried else ""
    rate += f", {len(case.failed)} never ran ({'; '.join(sorted(set(case.failed)))})" if case.failed else ""
    print(f"  {case.kind} x{case.joins}{rate}: join→running p50 {_fmt(_percentile(case.took, 50))} p99 "
          f"{_fmt(_percentile(case.took, 99))}; {steps}; CPU ms/join: {cpu}; {case.load}", file=sys.stderr, flush=True)


def _deployment(tmp: str, kind: str, slots: int, max_cold: int, env: dict[str, str]) -> Deployment:
    dep = Deployment(Path(tmp), BOT_CONSOLE_LEVEL="ERROR", GLOBAL_LOG_LEVEL="WARNING",
                     BOT_MAX_COLD=str(max_cold), BOT_KEEPALIVE_S="1", BOT_LOCK_TTL_S="10", **env)
    if kind == "warm":
        dep.start_runner(slots=slots)
    dep.start_operator()
    dep.start_gateway()
    return dep


def _case(dep: Deployment, kind: str, results: list[tuple[str, float, float, float]], before: dict[str, float],
          wall: float = 0.0) -> Case:
    after = _cpu_now(dep)
    retried = int(after.pop("retried") - before.pop("retried", 0))
    failed = FAILED[int(before.pop("failed", 0)):int(after.pop("failed"))]
    n = len(results)
    case = Case(kind, n, [r[1] for r in results], _steps(dep, results),
                {name: (after[name] - before.get(name, 0.0)) / n for name in after},
                n / wall if wall else 0.0, _load(), retried, failed)
    _report(case)
    return case


def run(kind: str, concurrency: list[int], max_cold: int, **env: str) -> list[Case]:
    """One case per concurrency, on one deployment."""
    cases = []
    with tempfile.TemporaryDirectory(prefix="bench-joins-") as tmp:
        dep = _deployment(tmp, kind, max(concurrency), max_cold, env)
        try:
            for n in concurrency:
                before = _cpu_now(dep)
                cases.append(_case(dep, kind, asyncio.run(_round(dep, n)), before))
        finally:
            dep.cleanup()
    return cases


def sustain(rate: float, seconds: float, slots: int, **env: str) -> Case:
    with tempfile.TemporaryDirectory(prefix="bench-joins-") as tmp:
        dep = _deployment(tmp, "warm", slots, 4, env)
        try:
            asyncio.run(_round(dep, 10))  # warm the services up
            before = _cpu_now(dep)
            results, wall = asyncio.run(_sustained(dep, rate, seconds))
            return _case(dep, "warm sustained", results, before, wall)
        finally:
            dep.cleanup()


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
                for case in run(kind, concurrency, max_cold, **env):
                    cpu.setdefault((kind, case.joins, exporter), []).append(case.services_cpu)
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


def _table(cases: list[Case]) -> None:
    steps = ["join→queued", *(f"{a}→{b}" for a, b in itertools.pairwise(STEPS)), "running→seen"]
    services = sorted({name for case in cases for name in case.cpu if name != "client"})
    print("| start | joins | joins/s | join→running p50 / p99 | " + " | ".join(f"{s} p50 / p99" for s in steps) +
          " | " + " | ".join(f"CPU {s}" for s in services) + " | CPU client | 429/503 retried | never ran | load |")
    print("| --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in steps) + " | " +
          " | ".join("---:" for _ in services) + " | ---: | ---: | ---: | --- |")
    for c in cases:
        pct = [f"{_fmt(_percentile(v, 50))} / {_fmt(_percentile(v, 99))}" if (v := c.steps.get(s)) else "–"
               for s in steps]
        cpu = [f"{c.cpu.get(s, 0.0) * 1000:.1f} ms" for s in services]
        print(f"| {c.kind} | {c.joins} | {f'{c.rate:.1f}' if c.rate else '–'} | {_fmt(_percentile(c.took, 50))} / "
              f"{_fmt(_percentile(c.took, 99))} | " + " | ".join(pct) + " | " + " | ".join(cpu) +
              f" | {c.cpu.get('client', 0.0) * 1000:.1f} ms | {c.retried} | {len(c.failed)} | "
              f"{c.load.removeprefix('load ')} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 50, 200])
    parser.add_argument("--max-cold", type=int, default=4, help="BOT_MAX_COLD for the cold runs")
    parser.add_argument("--kinds", nargs="+", default=["warm", "cold"], choices=["warm", "cold"])
    parser.add_argument("--sustain", type=float, metavar="SECONDS", help="joins at --rate a second for this long")
    parser.add_argument("--rate", type=float, default=50.0, help="joins a second with --sustain")
    parser.add_argument("--slots", type=int, default=200, help="the warm runner's slots with --sustain")
    parser.add_argument("--env", nargs="+", default=[], metavar="KNOB=VALUE",
                        help="settings for every service, e.g. BOT_MAX_JOBS=32 (the harness drops the caller's BOT_*)")
    parser.add_argument("--metrics", nargs="+", metavar="EXPORTER",
                        help="compare the services' CPU per join across these OTEL_METRICS_EXPORTER values "
                             "(the first is the baseline), e.g. none file")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per exporter with --metrics (alternating)")
    parser.add_argument("--metric-interval-ms", type=int, default=1000,
                        help="OTEL_METRIC_EXPORT_INTERVAL with --metrics")
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    if args.metrics:
        metrics_cost(args.kinds, args.concurrency, args.max_cold, args.metrics, args.repeat, args.metric_interval_ms)
        return
    if args.sustain:
        _table([sustain(args.rate, args.sustain, args.slots, **env)])
        return
    cases = [case for kind in args.kinds for case in run(kind, args.concurrency, args.max_cold, **env)]
    print(f"BOT_MAX_COLD={args.max_cold}; CPU per join, per service; step times from the launch records\n")
    _table(cases)


if __name__ == "__main__":
    main()
