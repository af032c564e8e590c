"""A Collector that blinks: what a steadily logging service loses, at the library's default settings.

Not a test: it prints a table. The real Collector (`make collector`) on free ports; a service process that logs
numbered records at `--rate` per second through `configure()` to it over OTLP/HTTP. After `--warm` seconds the
Collector is stopped (SIGTERM: it drains and exits), started again on the same port after the outage, and the
service logs on for `--after` seconds; then it shuts its pipeline down (which drains the queue) and the numbered
records are counted in the Collector's logs.json. Each outage runs twice: through the library's OTLP route
(`otlp`) and through the SDK's own OTLP exporter alone (`sdk`), both on the SDK's batch processor. Run it with
`python benchmarks/bench_blink.py [--outages 5 60] [--rate 200]`; about three minutes at the defaults.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.helpers, run from anywhere

from tests.helpers.blink import BlinkService, received
from tests.helpers.collector import Collector

COLUMNS = ("outage s", "route", "sent", "received", "lost", "duplicated", "counted lost", "queue full",
           "given up", "our warnings", "SDK lines", "slowest call ms")


def blink(directory: Path, outage: float, route: str, rate: float, warm: float, after: float) -> tuple[object, ...]:
    collector = Collector(directory / "collector").start()
    service = BlinkService(collector.endpoint, directory, rate, route=route)
    try:
        time.sleep(warm)
        collector.stop()
        time.sleep(outage)
        collector.start()
        time.sleep(after)
        result = service.stop()
    finally:
        service.kill()
        collector.stop()
    seen = received(collector.file("logs"))
    sent, stats = result["sent"], result["stats"]
    lost = sum(1 for n in range(sent) if n not in seen)
    duplicated = sum(count - 1 for count in seen.values())
    given_up = stats["dropped_export"] if route == "otlp" else "-"  # the SDK's exporter alone counts nothing
    counted = stats["dropped_queue_full"] + stats["dropped_export"] if route == "otlp" else "-"
    sdk_lines = sum(1 for line in service.stderr.read_text().splitlines() if line.startswith("opentelemetry."))
    return (f"{outage:g}", route, sent, len(seen), lost, duplicated, counted, stats["dropped_queue_full"],
            given_up, len(service.diagnostics()), sdk_lines, f"{result['slowest_call_s'] * 1000:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outages", type=float, nargs="+", default=[5.0, 60.0])
    parser.add_argument("--routes", nargs="+", default=["otlp", "sdk"], choices=["otlp", "sdk"])
    parser.add_argument("--rate", type=float, default=200.0, help="records a second")
    parser.add_argument("--warm", type=float, default=3.0)
    parser.add_argument("--after", type=float, default=10.0)
    args = parser.parse_args()
    print(f"opentelemetry-sdk {importlib.metadata.version('opentelemetry-sdk')}, {args.rate:g} records/s, "
          f"{args.warm:g} s before the outage and {args.after:g} s after it, the default OTEL_BLRP_* and "
          f"OTEL_EXPORTER_OTLP_* settings")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-blink-") as tmp:
        for outage in args.outages:
            for route in args.routes:
                directory = Path(tmp) / f"{outage:g}-{route}"
                directory.mkdir()
                rows.append(blink(directory, outage, route, args.rate, args.warm, args.after))
                print("  " + " | ".join(str(cell) for cell in rows[-1]), file=sys.stderr, flush=True)
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + " --- |" * len(COLUMNS))
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")


if __name__ == "__main__":
    main()
