"""A service logging numbered records steadily to a Collector that the caller stops and starts (the blink tests
and benchmarks/bench_blink.py): driven over its stdin, it answers each command with one JSON line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

# Commands: `mark` (how many sent so far), `pause` (stop logging; how many sent), `stop` (shut the pipeline down,
# which drains it; what was sent, the export counts, the slowest logging call).
SERVICE = textwrap.dedent(
    """
    import dataclasses, json, logging, sys, threading, time
    import otel_session

    rate, route = float(sys.argv[1]), sys.argv[2]
    if route == "sdk":  # the SDK's OTLP exporter alone, for comparison (its queue's drops are still counted)
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

        telemetry = otel_session.configure("blink", exporter=OTLPLogExporter())
    else:
        telemetry = otel_session.configure("blink")
    log = logging.getLogger("app.blink")
    pause, paused, stop = threading.Event(), threading.Event(), threading.Event()
    sent, slowest = 0, 0.0

    def commands():
        for line in sys.stdin:
            command = line.strip()
            if command == "pause":
                pause.set()
                paused.wait()
            if command == "stop":
                stop.set()
                pause.set()
                return
            print(json.dumps({"sent": sent}), flush=True)

    threading.Thread(target=commands, daemon=True).start()
    print(json.dumps({"sent": 0}), flush=True)
    start = time.monotonic()
    while not pause.is_set():
        began = time.perf_counter()
        log.info("blink %d", sent)
        slowest = max(slowest, time.perf_counter() - began)
        sent += 1
        delay = start + sent / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    paused.set()
    stop.wait()
    telemetry.shutdown()
    print(json.dumps({"sent": sent, "slowest_call_s": slowest,
                      "stats": dataclasses.asdict(telemetry.export_stats())}), flush=True)
    """
)


class BlinkService:
    """The service as a process, pointed at `endpoint` (OTLP/HTTP), with `env` on top of a clean environment;
    `route="sdk"` gives configure() the SDK's own OTLP exporter instead of building its route."""

    def __init__(self, endpoint: str, cwd: Path, rate: float, env: dict[str, str] | None = None,
                 route: str = "otlp") -> None:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        clean.update(OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, **(env or {}))
        self.stderr = Path(cwd) / "service.err"
        with open(self.stderr, "w") as err:
            self.proc = subprocess.Popen([sys.executable, "-c", SERVICE, str(rate), route], env=clean, cwd=cwd,
                                         text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
        self._answer()

    def _answer(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(10)
            raise RuntimeError(f"the service exited ({self.proc.returncode}):\n{self.stderr.read_text()[-4000:]}")
        return json.loads(line)  # type: ignore[no-any-return]

    def command(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._answer()

    def mark(self) -> int:
        return int(self.command("mark")["sent"])

    def pause(self) -> int:
        return int(self.command("pause")["sent"])

    def stop(self, timeout: float = 120.0) -> dict[str, Any]:
        result = self.command("stop")
        self.proc.wait(timeout)
        return result

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def diagnostics(self, level: str = "WARNING") -> list[str]:
        """The library's own lines at `level` on the service's stderr (the SDK's are its own)."""
        return [line for line in self.stderr.read_text().splitlines()
                if line.startswith("otel_session.") and f": {level}: " in line]


def received(logs_json: Path) -> Counter[int]:
    """How many times each numbered record (`blink <n>`) is in the Collector's logs file."""
    seen: Counter[int] = Counter()
    if not logs_json.exists():
        return seen
    for line in logs_json.read_text().splitlines():
        for resource_logs in json.loads(line).get("resourceLogs", ()):
            for scope_logs in resource_logs["scopeLogs"]:
                for record in scope_logs["logRecords"]:
                    body = record.get("body", {}).get("stringValue", "")
                    if body.startswith("blink "):
                        seen[int(body[6:])] += 1
    return seen
