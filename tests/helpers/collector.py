"""The real Collector for tests (one definition, in the demo: `bot.demo.collector`, re-exported here), and its
files read back the way a user reads them: `otel-session logs` as a process, `otel-session view` on loopback."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bot.demo.collector import CONFIG, ROOT, Collector, collector_binary, free_port

__all__ = ["CONFIG", "ROOT", "Collector", "collector_binary", "free_port", "get_json", "logs_json", "view_of"]


def logs_json(directory: Path, *args: str) -> list[dict[str, Any]]:
    """`otel-session logs --dir DIRECTORY --json ARGS` as a process: its records; it must say nothing on stderr
    (no skipped lines, no unreadable files)."""
    done = subprocess.run([sys.executable, "-m", "otel_session", "logs", "--dir", str(directory), "--json", *args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


@contextmanager
def view_of(directory: Path) -> Iterator[str]:
    """`otel-session view --dir DIRECTORY --port 0` as a process: its URL; stopped with SIGTERM after, exit 0."""
    proc = subprocess.Popen([sys.executable, "-m", "otel_session", "view", "--dir", str(directory), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        match = re.search(r"(http://\S+/)", first)
        assert match, (first, proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        yield match.group(1)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err


def get_json(url: str) -> Any:
    import urllib.request

    with urllib.request.urlopen(url, timeout=30) as reply:
        return json.load(reply)
