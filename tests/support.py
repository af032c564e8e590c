"""Helpers for tests that run real processes and read what they exported."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


class Proc:
    """A service in its own process, stopped with SIGTERM like an orchestrator would."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen([sys.executable, *args], env=env, cwd=ROOT, stdout=self._out,
                                      stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_http(self, url: str, timeout: float = 20.0) -> None:
        def up() -> bool:
            if self.popen.poll() is not None:
                raise AssertionError(f"process exited with {self.popen.returncode}:\n{self.output()}")
            try:
                return httpx.get(url, timeout=0.5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout, what=url)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self, timeout: float = 15.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._out.close()
        return self.popen.returncode


def otlp_records(directory: Path) -> list[dict[str, Any]]:
    """Every log record in the OTLP-JSON files under `directory`, flattened for assertions."""
    out = []
    for path in sorted(directory.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            request = json.loads(line)
            for resource_logs in request["resourceLogs"]:
                resource = {a["key"]: a["value"]["stringValue"] for a in resource_logs["resource"]["attributes"]
                            if "stringValue" in a["value"]}
                for scope_logs in resource_logs["scopeLogs"]:
                    for record in scope_logs["logRecords"]:
                        attrs = {a["key"]: next(iter(a["value"].values()), None)
                                 for a in record.get("attributes", [])}
                        out.append({
                            "service": resource.get("service.name"), "scope": scope_logs["scope"].get("name", ""),
                            "file": path.name, "attrs": attrs, "message": record.get("body", {}).get("stringValue"),
                            "level": record.get("severityText"), "trace_id": record.get("traceId", ""),
                            "time": int(record.get("timeUnixNano", 0)), "resource": resource, "raw": record,
                        })
    return sorted(out, key=lambda r: r["time"])


def iter_files_text(directory: Path) -> Iterator[str]:
    for path in sorted(directory.glob("*.jsonl")):
        yield path.read_text()
