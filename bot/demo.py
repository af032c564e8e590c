"""`python -m bot.demo` (`make demo`): the whole platform on this machine, three joins, one session's logs per service.

Starts the manifold host, a warm runner (two slots), the operator and the gateway as subprocesses on
free loopback ports against `REDIS_URL`; submits three joins — two land on the warm runner, the third
finds the pool dry and gets a cold bot; each bot asks the manifold one question; then it ends the
sessions, stops everything (each service flushes its logs), and prints per session what every service
logged, the trace id, the manifold's "Logs" citation, and the `otel-session logs` command to see it all.
Every process and every Redis key it made is cleaned up on exit, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import redis

from bot.service import DEFAULT_REDIS_URL

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("bot-gateway", "bot-operator", "bot-runner", "manifold")


@dataclass
class Join:
    who: str
    session_id: str
    user_id: str
    room_url: str
    launch_id: str = ""
    trace_id: str = ""
    kind: str = ""
    runner_url: str = ""
    citation: str = ""
    counts: dict[str, int] = field(default_factory=dict)


def say(text: str = "") -> None:
    print(text, flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, redis.RedisError, ValueError, KeyError):
            if (value := check()) is not None and value is not False:
                return value
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


class Deployment:
    """The processes and Redis keys of one demo run."""

    def __init__(self, redis_url: str, log_dir: Path) -> None:
        self.redis_url, self.log_dir = redis_url, log_dir
        self.prefix = f"demo-{uuid.uuid4().hex[:8]}:"
        self.redis = redis.Redis.from_url(redis_url, decode_responses=True, socket_connect_timeout=2)
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRACEPARENT", "BAGGAGE"))}
        self.env.update(REDIS_URL=redis_url, BOT_KEY_PREFIX=self.prefix, OTEL_LOGS_EXPORTER="file",
                        OTEL_SESSION_LOG_DIR=str(log_dir), OTEL_BLRP_SCHEDULE_DELAY="200",
                        BOT_CONSOLE_LEVEL="ERROR", GLOBAL_LOG_LEVEL="INFO", BOT_KEEPALIVE_S="1")

    def start(self, name: str, args: list[str], health: str | None = None, **env: str) -> None:
        out = open(self.log_dir / f"{name}.out", "ab")  # noqa: SIM115 - the child owns it
        proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env={**self.env, **env}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append((name, proc))
        if health:
            _wait(f"{name} to answer", lambda: proc.poll() is None and httpx.get(health, timeout=1).is_success)
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited; see {self.log_dir / f'{name}.out'}")

    def key(self, name: str) -> str:
        return self.prefix + name

    def lock(self, room: str) -> dict[str, Any] | None:
        import json

        raw = self.redis.get(self.key(f"room_active:{room}"))
        return json.loads(raw) if raw else None

    def running_lock(self, room: str) -> dict[str, Any] | None:
        lock = self.lock(room)
        return lock if lock and lock["status"] == "running" else None

    def stop(self) -> None:
        """SIGTERM, as an orchestrator would: each service flushes its logs on the way out."""
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                say(f"  {name} did not stop in time; killed")
                proc.kill()
        self.procs.clear()

    def cleanup(self) -> None:
        self.stop()
        with contextlib.suppress(redis.RedisError):
            for key in self.redis.scan_iter(match=f"{self.prefix}*"):
                self.redis.delete(key)
        self.redis.close()


def _citations(manifold: str, session_id: str) -> list[dict[str, Any]] | None:
    found: list[dict[str, Any]] = httpx.get(f"{manifold}/citations", params={"session_id": session_id},
                                            timeout=5).json()
    return found or None


def _exited(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().split(") ")[1][0] in "ZX"


def _cold_pids(dep: Deployment, joins: list[Join]) -> Iterator[int]:
    for join in joins:
        lock = dep.lock(join.room_url)
        if lock and lock.get("type") == "cold" and lock.get("pid"):
            yield int(lock["pid"])


def run(redis_url: str, log_dir: Path) -> int:
    dep = Deployment(redis_url, log_dir)
    try:
        dep.redis.ping()
    except redis.RedisError as exc:
        say(f"Redis is not reachable at {redis_url} ({exc}).")
        say("Start one with `bash scripts/ensure-redis.sh` (or `redis-server --daemonize yes`), or point REDIS_URL "
            "at yours, then run the demo again.")
        return 1
    joins = [
        Join("Ada", "demo-session-ada", "user-ada", "https://rooms.example/standup"),
        Join("Grace", "demo-session-grace", "user-grace", "https://rooms.example/retro"),
        Join("Linus", "demo-session-linus", "user-linus", "https://rooms.example/planning"),
    ]
    try:
        say(f"Logs go to {log_dir} (OTLP JSON); Redis keys under {dep.prefix}")
        manifold = f"http://127.0.0.1:{_free_port()}"
        say("Starting the manifold host (Open WebUI pipe; "
            + ("real OpenAI API)" if os.environ.get("OPENAI_API_KEY") else "offline Responses API stand-in)"))
        dep.start("manifold", ["-m", "manifold.serve", "--port", manifold.rsplit(":", 1)[1]], f"{manifold}/health")
        runner = f"http://127.0.0.1:{_free_port()}"
        say("Starting a warm runner with two slots")
        dep.start("runner", ["-m", "bot.runner", "--warm", "--slots", "2", "--port", runner.rsplit(":", 1)[1]],
                  f"{runner}/health", MANIFOLD_URL=manifold)
        say("Starting the operator")
        dep.start("operator", ["-m", "bot.operator"], MANIFOLD_URL=manifold)
        gateway = f"http://127.0.0.1:{_free_port()}"
        say("Starting the gateway")
        dep.start("gateway", ["-m", "bot.gateway", "--port", gateway.rsplit(":", 1)[1]], f"{gateway}/health")

        say()
        for join in joins:
            reply = httpx.post(f"{gateway}/join", timeout=10, json={
                "room_url": join.room_url, "sessionId": join.session_id, "userId": join.user_id, "userName": join.who})
            reply.raise_for_status()
            body = reply.json()
            join.launch_id, join.trace_id = body["launchId"], body["traceId"]
            lock = _wait(f"{join.who}'s bot", partial(dep.running_lock, join.room_url))
            join.kind = lock["type"]
            join.runner_url = lock.get("runner_url", "")
            where = f"warm runner {join.runner_url}" if join.kind == "warm" else f"cold bot, pid {lock['pid']}"
            say(f"{join.who:6} joined {join.room_url}: session {join.session_id}, trace {join.trace_id} -> {where}")

        say()
        for join in joins:
            found = _wait(f"the manifold's answer to {join.who}'s bot",
                          partial(_citations, manifold, join.session_id), 60)
            join.citation = found[-1]["document"]
            say(f"{join.who}'s bot asked the manifold a question; the run logged under the same session and trace")

        say()
        say("Ending the sessions")
        cold = list(_cold_pids(dep, joins))
        for join in joins:
            if join.kind == "warm":
                httpx.post(f"{join.runner_url}/sessions/{join.launch_id}/leave", timeout=10)
            else:
                dep.redis.delete(dep.key(f"room_active:{join.room_url}"))  # the room is freed: the cold bot goes
        for pid in cold:
            _wait(f"cold bot {pid} to exit", partial(_exited, pid), 30)
        dep.stop()
        _report(joins, log_dir)
        return 0
    except KeyboardInterrupt:
        say("\nInterrupted; cleaning up")
        return 130
    except (TimeoutError, RuntimeError, httpx.HTTPError) as exc:
        say(f"\nThe demo failed: {exc}\nService output is in {log_dir}/*.out")
        return 1
    finally:
        dep.cleanup()


def _report(joins: list[Join], log_dir: Path) -> None:
    from otel_session.log_reader import read_records

    records = list(read_records(log_dir))
    for join in joins:
        mine = [r for r in records if r.session_id == join.session_id]
        join.counts = {s: sum(1 for r in mine if r.service == s) for s in SERVICES}
    say()
    for join in joins:
        say(f"== {join.who}: session {join.session_id} ({join.kind}), trace {join.trace_id}")
        say("   records per service: " + ", ".join(f"{s} {n}" for s, n in join.counts.items()))
        say("   the manifold's Logs citation:")
        for line in join.citation.strip("`").strip().removeprefix("text").strip().splitlines():
            say(f"     {line}")
        say(f"   see them all: otel-session logs --dir {log_dir} --session {join.session_id}")
        say()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bot.demo",
        description="Start the bot/ and manifold/ services of this checkout and run three demo sessions.")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL,
                        help=f"Redis to use (default: $REDIS_URL, else {DEFAULT_REDIS_URL})")
    parser.add_argument("--log-dir", type=Path, default=None, metavar="DIR",
                        help="where the services write their OTLP-JSON logs (default: a new temporary directory)")
    args = parser.parse_args(argv)
    directory: Path = args.log_dir or Path(tempfile.mkdtemp(prefix="otel-session-demo-"))
    directory.mkdir(parents=True, exist_ok=True)
    return run(args.redis_url, directory)


if __name__ == "__main__":
    sys.exit(main())
