"""`otel-session view` as a process: its URL, its errors (exit 2, one line), the warning off loopback, and the
index it serves over files three real service processes wrote."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest

URL = re.compile(r"(http://\S+/)")

WRITER = textwrap.dedent(
    """
    import logging, sys
    from otel_session import configure, session
    service, session_id = sys.argv[1], sys.argv[2]
    telemetry = configure(service_name=service, exporter="file", level="INFO")
    with session(session_id=session_id, user_id="u-1"):
        logging.getLogger(service).warning("%s was here", service)
    telemetry.shutdown()
    """
)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OTEL_SESSION_LOG_DIR", "PYTHONPATH")}
    return {**env, **extra}


def run_view(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "otel_session", "view", *args], capture_output=True, text=True,
                          timeout=60, cwd=cwd, env=_env(**env))


def start_view(*args: str, **env: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "otel_session", "view", "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(**env))
    assert proc.stdout is not None
    first = proc.stdout.readline()
    match = URL.search(first)
    assert match, (first, proc.stderr.read() if proc.poll() is not None else "")
    return proc, match.group(1)


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    return proc.returncode, err


def test_a_directory_that_does_not_exist_is_one_line_and_exit_2(tmp_path):
    done = run_view("--dir", str(tmp_path / "absent"))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "no such directory" in done.stderr and "absent" in done.stderr
    assert done.stdout == ""
    default = run_view(cwd=tmp_path)  # no --dir, no OTEL_SESSION_LOG_DIR, no ./.otel-session/logs
    assert default.returncode == 2 and default.stderr.count("\n") == 1 and "OTEL_SESSION_LOG_DIR" in default.stderr


def test_bad_flags_exit_2(tmp_path):
    assert run_view("--dir", str(tmp_path), "--port", "70000").returncode == 2
    assert run_view("--dir", str(tmp_path), "--port", "x").returncode == 2


def test_a_port_in_use_is_one_line_and_exit_2(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        done = run_view("--dir", str(tmp_path), "--port", str(taken.getsockname()[1]))
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "cannot listen" in done.stderr


def test_it_serves_what_three_service_processes_wrote(tmp_path):
    logs = tmp_path / "logs"
    env = _env(OTEL_SESSION_LOG_DIR=str(logs))
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, service, "s-cli"], env=env)
               for service in ("gateway", "operator", "runner")]
    assert [w.wait(timeout=60) for w in writers] == [0, 0, 0]
    proc, url = start_view(OTEL_SESSION_LOG_DIR=str(logs))  # the directory from the environment, like `logs`
    try:
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "api/sessions", timeout=10) as response:
            sessions = json.load(response)
        assert [(s["session_id"], s["services"], s["warnings"]) for s in sessions] == [
            ("s-cli", ["gateway", "operator", "runner"], 3)]
    finally:
        code, err = stop(proc)
    assert code == 0 and err == ""


def test_listening_beyond_loopback_warns(tmp_path):
    proc, url = start_view("--dir", str(tmp_path), "--host", "0.0.0.0")
    code, err = stop(proc)
    assert code == 0
    assert url.startswith("http://0.0.0.0:")
    assert err.count("\n") == 1 and "warning" in err and "readable by anyone who can reach it" in err


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_loopback_does_not_warn(tmp_path, host):
    proc, _ = start_view("--dir", str(tmp_path), "--host", host)
    code, err = stop(proc)
    assert code == 0 and err == ""
