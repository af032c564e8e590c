"""The real OpenTelemetry Collector (`make collector`) started from the repository's collector-config.yaml on
free loopback ports, for the demo (`--collector`) and the tests: readiness from its `health_check`, SIGTERM to
stop (it drains and closes its files), the same ports again to start it after an outage.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from bot.demo.harness import ROOT, free_port

CONFIG = ROOT / "collector-config.yaml"
_binary: Path | None = None


def collector_binary() -> Path:
    """The cached build's path (`scripts/build-collector.sh` builds it first when it is not cached)."""
    global _binary
    if _binary is None:
        done = subprocess.run(["bash", str(ROOT / "scripts" / "build-collector.sh")], capture_output=True,
                              text=True, timeout=1200)
        if done.returncode != 0:
            raise RuntimeError(f"make collector failed ({done.returncode}):\n{done.stderr[-4000:]}")
        _binary = Path(done.stdout.strip().splitlines()[-1])
    return _binary


class Collector:
    """One Collector process writing its files into `directory` (logs.json, traces.json, metrics.json)."""

    def __init__(self, directory: Path, *, log: Path | None = None, settings: Sequence[str] = ()) -> None:
        """`settings`: `--set` values over the config (`exporters::file/logs::rotation::max_megabytes=1`)."""
        self.directory = Path(directory)
        self.settings = tuple(settings)
        self.log = log or self.directory.parent / f"{self.directory.name}.collector.log"
        self.http_port, self.grpc_port, self.health_port = free_port(), free_port(), free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """For OTEL_EXPORTER_OTLP_ENDPOINT (OTLP/HTTP; the exporters add /v1/logs, /v1/traces, /v1/metrics)."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def env(self) -> dict[str, str]:
        return {
            "OTEL_SESSION_COLLECTOR_HTTP": f"127.0.0.1:{self.http_port}",
            "OTEL_SESSION_COLLECTOR_GRPC": f"127.0.0.1:{self.grpc_port}",
            "OTEL_SESSION_COLLECTOR_HEALTH": f"127.0.0.1:{self.health_port}",
            "OTEL_SESSION_COLLECTOR_DIR": str(self.directory),
        }

    def file(self, signal_name: str) -> Path:
        return self.directory / f"{signal_name}.json"

    def start(self, timeout: float = 30.0) -> Collector:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        env = {**os.environ, **self.env}
        with open(self.log, "ab") as out:  # a file, not a pipe: the debug exporter writes a line per batch
            self.proc = subprocess.Popen([str(collector_binary()), f"--config={CONFIG}",
                                          *(f"--set={s}" for s in self.settings)], env=env, stdout=out,
                                         stderr=subprocess.STDOUT, cwd=self.directory.parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the Collector exited with {self.proc.returncode}:\n{self.log_text()[-4000:]}")
            if self.healthy():
                return self
            time.sleep(0.05)
        raise RuntimeError(f"the Collector was not ready in {timeout} s:\n{self.log_text()[-4000:]}")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/", timeout=1) as reply:
                return bool(reply.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM: the Collector drains its pipelines and closes its files, then exits 0."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc is not None else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"the Collector did not stop in {timeout} s:\n{self.log_text()[-4000:]}") from None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def __enter__(self) -> Collector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
