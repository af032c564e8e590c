"""`python -m bot.demo --collector` (`make demo-collector`): the whole platform through a real Collector, its report
read from the Collector's files."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import httpx
import pytest

from otel_session.log_reader import read_metrics, read_spans
from tests.helpers.bot_platform import demo_env
from tests.helpers.collector import ROOT, logs_json

pytestmark = [pytest.mark.bot, pytest.mark.redis, pytest.mark.latest_only, pytest.mark.manifold]
SERVICES = ("bot-gateway", "bot-operator", "bot-runner", "manifold")


def test_the_demo_through_the_collector_reports_what_the_collectors_files_hold(tmp_path):
    out = subprocess.run([sys.executable, "-m", "bot.demo", "--collector", "--log-dir", str(tmp_path)], cwd=ROOT,
                         env=demo_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    files = tmp_path / "collector"
    endpoint = re.search(r"Every service exports to the Collector at (http://127\.0\.0\.1:\d+) \(OTLP/HTTP\); "
                         rf"it writes {re.escape(str(files))};", text)
    assert endpoint, text
    assert list(tmp_path.glob("*.jsonl")) == []  # no service wrote files of its own: all went through the Collector
    for who in ("ada", "grace", "linus"):
        block = text.split(f"session demo-session-{who} (")[1].split("== ")[0]
        counts = dict(re.findall(r"(bot-gateway|bot-operator|bot-runner|manifold) (\d+)", block.splitlines()[1]))
        assert set(counts) == set(SERVICES) and all(int(n) > 0 for n in counts.values()), block
        assert f"otel-session logs --dir {files} --session demo-session-{who}" in block
    section = text.split("== The Collector")[1].split("\n\n")[0].splitlines()
    assert section[0] == (" (stopped with SIGTERM: it drained into its files) wrote "
                          f"{', '.join(sorted(p.name for p in files.iterdir()))} in {files}")
    assert {"logs.json", "traces.json"} <= {p.name for p in files.iterdir()}
    records = logs_json(files)
    assert {r["service"] for r in records} >= set(SERVICES)
    spans = read_spans(files)
    assert {s.service for s in spans} >= set(SERVICES)
    metrics = read_metrics(files)
    points = sum(len(p) for p in metrics.values())
    assert {"bot.joins", "bot.dispatches", "bot.session.duration", "otel_session.log.exported"} <= set(metrics)
    assert section[1] == (f"   log records {len(records)}, spans {len(spans)}, metrics {len(metrics)} ({points} data "
                          f"points): {', '.join(sorted(metrics))}"), section
    assert section[2] == f"   its own output: {tmp_path / 'collector.out'}"
    assert "Shutdown complete" in (tmp_path / "collector.out").read_text()
    with pytest.raises(httpx.TransportError):
        httpx.post(f"{endpoint.group(1)}/v1/logs", timeout=5)  # the Collector went with the demo
    view = text.split("== The view")[1].splitlines()
    assert view[1:3] == [f"   otel-session view --dir {files}",
                         "   (then open a session's page above; `python -m bot.demo --collector --view` starts it for "
                         "you)"]


def test_the_demo_through_the_collector_without_go_says_so_and_exits_1(tmp_path):
    bin_dir = tmp_path / "bin"  # what scripts/build-collector.sh needs before it looks for Go, and no Go
    bin_dir.mkdir()
    for tool in ("bash", "grep", "sha256sum", "cut", "dirname"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    env = {**demo_env(), "PATH": str(bin_dir)}
    out = subprocess.run([sys.executable, "-m", "bot.demo", "--collector", "--log-dir", str(tmp_path / "demo")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "The Collector did not start: make collector failed (2)" in out.stdout
    assert "Go is not installed" in out.stdout
    assert "Starting the manifold" not in out.stdout  # nothing else was started
