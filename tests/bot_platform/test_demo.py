"""`python -m bot.demo` (`make demo`), the project's main job, run as a user runs it."""

from __future__ import annotations

import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis

from tests.helpers.bot_platform import REDIS_URL, demo_env

pytestmark = [pytest.mark.redis, pytest.mark.processes, pytest.mark.manifold]  # and the folder's (tests/conftest.py)
ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_runs_the_whole_platform_and_reports_each_session(tmp_path):
    out = subprocess.run([sys.executable, "-m", "bot.demo", "--log-dir", str(tmp_path)], cwd=ROOT,
                         env=demo_env(), capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert text.count("-> warm runner") == 2 and text.count("-> cold bot, pid") == 1
    assert "Grace's launch failed: its ERROR flushed" in text
    for who in ("ada", "grace", "linus"):
        block = text.split(f"session demo-session-{who} (")[1].split("== ")[0]
        counts = dict(re.findall(r"(bot-gateway|bot-operator|bot-runner|manifold) (\d+)", block))
        assert set(counts) == {"bot-gateway", "bot-operator", "bot-runner", "manifold"}
        assert all(int(n) > 0 for n in counts.values()), block
        assert "Calling gpt-4.1-mini" in block  # the citation the manifold produced
        assert f"otel-session logs --dir {tmp_path} --session demo-session-{who}" in block
        assert f"   on one page: http://127.0.0.1:8321/sessions/demo-session-{who}\n" in block
        debug = block.split("DEBUG records after the grant: ")[1].splitlines()[0]
        if who == "ada":  # the session the demo turned DEBUG on for, midway
            after = dict(re.findall(r"(bot-gateway|bot-operator|bot-runner|manifold) (\d+)", debug))
            assert set(after) == {"bot-gateway", "bot-operator", "bot-runner", "manifold"}, debug
            assert all(int(n) > 0 for n in after.values()), debug
        else:
            assert debug == "none"
        flushed = block.split("DEBUG records flushed by a failure: ")[1].splitlines()[0]
        if who == "grace":  # the session whose bot the demo made fail: its buffered DEBUG records, from every service
            counts = dict(re.findall(r"(bot-gateway|bot-operator|bot-runner|manifold) (\d+)", flushed))
            assert set(counts) == {"bot-gateway", "bot-operator", "bot-runner", "manifold"}, flushed
            assert all(int(n) > 0 for n in counts.values()), flushed
        else:
            assert flushed == "none (buffered, never exported)"
    view = text.split("== The view")[1].splitlines()
    assert view[1:3] == [f"   otel-session view --dir {tmp_path}",
                         "   (then open a session's page above; `python -m bot.demo --view` starts it for you)"]
    assert "The view is running" not in text  # by default the demo only says how: it ended (returncode above)
    audit = text.split("== The audit")[1]
    assert "created  grant" in audit and "used     grant" in audit and "revoked  grant" in audit
    prefix = re.search(r"Redis keys under (demo-[0-9a-f]+:)", text).group(1)
    client = redis.Redis.from_url(REDIS_URL)
    assert list(client.scan_iter(match=f"{prefix}*")) == []  # cleaned up
    logs = subprocess.run([sys.executable, "-m", "otel_session", "logs", "--dir", str(tmp_path), "--session",
                           "demo-session-linus", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert logs.returncode == 0 and '"service": "manifold"' in logs.stdout.replace('":"', '": "')


@pytest.mark.parametrize("how", ["env", "flag"])
def test_the_demo_says_how_to_start_redis_when_it_is_unreachable(tmp_path, how):
    unreachable = "redis://127.0.0.1:1/0"
    env = {**os.environ, "REDIS_URL": unreachable if how == "env" else REDIS_URL}
    flag = ["--redis-url", unreachable] if how == "flag" else []
    out = subprocess.run([sys.executable, "-m", "bot.demo", *flag, "--log-dir", str(tmp_path)], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert f"Redis is not reachable at {unreachable}" in out.stdout and "scripts/ensure-redis.sh" in out.stdout


def test_a_bad_redis_url_is_one_line_without_its_password_and_starts_nothing(tmp_path):
    out = subprocess.run([sys.executable, "-m", "bot.demo", "--redis-url", "redis+cluster://u:s3cret-pw@/",
                          "--log-dir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1 and "Redis URL" in out.stderr
    assert "s3cret-pw" not in out.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_demo_without_a_log_dir_makes_a_new_temporary_one(tmp_path):
    env = {**os.environ, "REDIS_URL": "redis://127.0.0.1:1/0", "TMPDIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "bot.demo"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1 and "Redis is not reachable" in out.stdout
    assert [p.is_dir() for p in tmp_path.glob("otel-session-demo-*")] == [True]


def test_the_demo_has_its_own_help():
    out = subprocess.run([sys.executable, "-m", "bot.demo", "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0
    assert " ".join(out.stdout.split("\n\n")[0].split()) == (
        "usage: python -m bot.demo [-h] [--redis-url REDIS_URL] [--log-dir DIR] [--view] [--view-port PORT] "
        "[--collector]")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_the_demo_with_view_serves_the_sessions_it_printed_until_ctrl_c(tmp_path):
    port = _free_port()
    demo = subprocess.Popen([sys.executable, "-m", "bot.demo", "--log-dir", str(tmp_path), "--view",
                             "--view-port", str(port)], cwd=ROOT, env=demo_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    text = ""
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(demo.stdout, selectors.EVENT_READ)  # type: ignore[arg-type]
            deadline = time.monotonic() + 180
            while "Ctrl-C stops it" not in text:
                assert demo.poll() is None and time.monotonic() < deadline, text
                if selector.select(timeout=0.5):
                    text += os.read(demo.stdout.fileno(), 65536).decode()  # type: ignore[union-attr]
        assert f"The view is running at http://127.0.0.1:{port}/; Ctrl-C stops it" in text
        assert f"   otel-session view --dir {tmp_path} --port {port}\n" in text
        for who in ("ada", "grace", "linus"):
            url = f"http://127.0.0.1:{port}/sessions/demo-session-{who}"
            assert f"   on one page: {url}\n" in text
            assert httpx.get(url, timeout=10).status_code == 200  # the page the demo printed
            answer = httpx.get(f"http://127.0.0.1:{port}/api/sessions/demo-session-{who}", timeout=10).json()
            assert {r["service"] for r in answer["records"]} == {"bot-gateway", "bot-operator", "bot-runner",
                                                                 "manifold"}
            assert {r["session_id"] for r in answer["records"]} == {f"demo-session-{who}"}
        demo.send_signal(signal.SIGINT)  # Ctrl-C (to the demo alone: it stops the view it started)
        assert demo.wait(timeout=30) == 0, text
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/", timeout=5)  # the view went with it
