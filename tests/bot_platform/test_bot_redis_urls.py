"""A bad `REDIS_URL` or `OTEL_SESSION_REDIS_URL` stops every bot service at start: one line, exit non-zero,
the URL's password never shown (`otel_session.live.urls`)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bot.demo.harness import ROOT

pytestmark = pytest.mark.processes  # and the folder's (tests/conftest.py)
SECRET = "hunter2-redis-pw"
SERVICES = {
    "gateway": ["-m", "bot.gateway", "--port", "1"],
    "operator": ["-m", "bot.operator"],
    "operator --check": ["-m", "bot.operator", "--check"],
    "warm runner": ["-m", "bot.runner", "--warm", "--port", "1"],
    "cold runner": ["-m", "bot.runner", "--job"],
}
BAD = {
    f"redis+sentinel://:{SECRET}@127.0.0.1:26379/": "name the master",
    f"redis+cluster://:{SECRET}@127.0.0.1:7000/2": "db 0 only",
    f"redis://:{SECRET}@127.0.0.1:6379/zero": "must be a db number",
    f"reddis://:{SECRET}@127.0.0.1:6379/0": "unknown scheme reddis://",
}


def _start(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "BOT_", "REDIS_URL"))}
    return subprocess.run([sys.executable, *args], env={**environ, **env}, cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


# each service with one bad URL (every form's parsing is tests/in_process/test_redis_urls.py's)
@pytest.mark.parametrize("service, url", list(zip(SERVICES, [*BAD, *BAD], strict=False)))
def test_a_bad_redis_url_is_one_line_and_a_non_zero_exit(service, url):
    done = _start(SERVICES[service], REDIS_URL=url)
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "REDIS_URL: invalid Redis URL" in done.stderr and BAD[url] in done.stderr, done.stderr
    assert SECRET not in done.stderr + done.stdout


@pytest.mark.parametrize("service", ["gateway", "operator", "cold runner"])
def test_a_bad_otel_session_redis_url_is_refused_the_same_way(service):
    done = _start(SERVICES[service], OTEL_SESSION_REDIS_URL=f"redis+cluster://:{SECRET}@h:7000/9")
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "OTEL_SESSION_REDIS_URL: invalid Redis URL 'redis+cluster://h:7000/9'" in done.stderr, done.stderr
    assert SECRET not in done.stderr + done.stdout
