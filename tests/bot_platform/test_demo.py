"""`python -m bot.demo` (`make demo`), the project's main job, run as a user runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from tests.helpers.bot_platform import REDIS_URL

pytestmark = [pytest.mark.redis, pytest.mark.processes, pytest.mark.manifold]  # and the folder's (tests/conftest.py)
ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_runs_the_whole_platform_and_reports_each_session(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "BOT_"))}
    env.pop("OPENAI_API_KEY", None)
    env["REDIS_URL"] = REDIS_URL
    out = subprocess.run([sys.executable, "-m", "bot.demo", "--log-dir", str(tmp_path)], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=180)
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
    assert "usage: python -m bot.demo [-h] [--redis-url REDIS_URL] [--log-dir DIR]" in out.stdout
