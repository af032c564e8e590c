"""`python -m bot.demo` (`make demo`): the whole platform on this machine, three joins, one session's logs per service.

Midway it grants DEBUG for one live session and makes another's bot fail (its buffered DEBUG records are
flushed everywhere); then it prints what each service logged per session. It cleans up on exit, Ctrl-C included.
With `--collector` every service exports over OTLP to a real OpenTelemetry Collector (`make collector`) that writes
its files under the demo's directory, and the report reads those.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from bot.demo.collector import Collector, collector_binary
from bot.demo.harness import REDIS_ERRORS, Deployment, wait_for
from bot.settings import DEFAULT_REDIS_URL
from bot.settings import redis_url as default_redis_url
from otel_session import grants
from otel_session.live.urls import RedisURLError, parse, safe_url

SERVICES = ("bot-gateway", "bot-operator", "bot-runner", "manifold")
DRILL = "demo: fail this session"  # BOT_FAULT_MESSAGE: an admin message that makes a bot fail
ADMIN_TOKEN = "demo-admin-token"
BUFFERED = "otel_session.buffered"
VIEW_PORT = 8321  # `otel-session view`'s default


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


def _citations(manifold: str, session_id: str) -> list[dict[str, Any]] | None:
    found: list[dict[str, Any]] = httpx.get(f"{manifold}/citations", params={"session_id": session_id},
                                            timeout=5).json()
    return found or None


def view_url(port: int, session_id: str | None = None) -> str:
    base = f"http://127.0.0.1:{port}"
    return f"{base}/sessions/{quote(session_id, safe='')}" if session_id else f"{base}/"


def view_command(log_dir: Path, port: int) -> str:
    port_flag = "" if port == VIEW_PORT else f" --port {port}"
    return f"otel-session view --dir {shlex.quote(str(log_dir))}{port_flag}"


def otel_dir(log_dir: Path, collector: bool) -> Path:
    """Where the records are: the services' own files in `log_dir`, or the Collector's files under it."""
    return log_dir / "collector" if collector else log_dir


def run(redis_url: str, log_dir: Path, view_port: int = VIEW_PORT, view: bool = False, collector: bool = False) -> int:
    otel = Collector(otel_dir(log_dir, True), log=log_dir / "collector.out") if collector else None
    try:  # a cluster client connects as it is built
        dep = Deployment(log_dir, redis_url, otel_dir=otel_dir(log_dir, collector), name="demo",
                         otlp_endpoint=otel.endpoint if otel else None, BOT_CONSOLE_LEVEL="ERROR",
                         BOT_KEEPALIVE_S="1", BOT_LOCK_TTL_S="10", OTEL_SESSION_BUFFER_LEVEL="DEBUG",
                         BOT_FAULT_MESSAGE=DRILL, BOT_ADMIN_TOKEN=ADMIN_TOKEN)
        dep.redis.ping()
    except REDIS_ERRORS as exc:
        say(f"Redis is not reachable at {safe_url(redis_url)} ({exc}).")
        say("Start one with `bash scripts/ensure-redis.sh` (or `redis-server --daemonize yes`), or point REDIS_URL "
            "at yours, then run the demo again.")
        return 1
    if otel is not None and not _start_collector(otel):
        return 1
    joins = [
        Join("Ada", "demo-session-ada", "user-ada", "https://rooms.example/standup"),
        Join("Grace", "demo-session-grace", "user-grace", "https://rooms.example/retro"),
        Join("Linus", "demo-session-linus", "user-linus", "https://rooms.example/planning"),
    ]
    try:
        if otel is None:
            say(f"Logs go to {dep.otel_dir} (OTLP JSON); Redis keys under {dep.keys.prefix}")
        else:
            say(f"Every service exports to the Collector at {otel.endpoint} (OTLP/HTTP); it writes {dep.otel_dir}; "
                f"Redis keys under {dep.keys.prefix}")
        say("Starting the manifold host (Open WebUI pipe; "
            + ("real OpenAI API)" if os.environ.get("OPENAI_API_KEY") else "offline Responses API stand-in)"))
        dep.start_manifold()
        say("Starting a warm runner with two slots")
        dep.start_runner(slots=2)
        say("Starting the operator")
        dep.start_operator()
        say("Starting the gateway")
        dep.start_gateway()

        say()
        for join in joins:
            reply = dep.join(room_url=join.room_url, sessionId=join.session_id, userId=join.user_id, userName=join.who)
            reply.raise_for_status()
            body = reply.json()
            join.launch_id, join.trace_id = body["launchId"], body["traceId"]
            record = dep.wait_status(join.launch_id, "running", "failed")
            if record["status"] != "running":
                raise RuntimeError(f"{join.who}'s launch failed: {record.get('reason')}")
            join.kind, join.runner_url = record["type"], record["runner"]
            where = (f"warm runner {join.runner_url}" if join.kind == "warm"
                     else f"cold bot, pid {join.runner_url.removeprefix('cold:')}")
            say(f"{join.who:6} joined {join.room_url}: session {join.session_id}, trace {join.trace_id} -> {where}")

        say()
        for join in joins:
            found = wait_for(partial(_citations, dep.manifold_url, join.session_id), 60,
                             what=f"the manifold's answer to {join.who}'s bot")
            join.citation = found[-1]["document"]
            say(f"{join.who}'s bot asked the manifold a question; the run logged under the same session and trace")

        say()
        ada = joins[0]
        say(f"Midway: DEBUG on for {ada.who}'s live session, for 5 minutes "
            f"(otel-session debug on --session {ada.session_id} --for 5m)")
        grant = grants.grant(session_id=ada.session_id, ttl_s=300, reason="demo: chasing a live problem",
                             by="demo", redis_url=dep.redis_url, prefix=dep.keys.prefix)
        switched_ns = time.time_ns()
        time.sleep(2.5)  # every service switches within 2 s
        again = Join(ada.who, ada.session_id, ada.user_id, "https://rooms.example/standup-2")
        reply = dep.join(room_url=again.room_url, sessionId=again.session_id, userId=again.user_id,
                         userName=again.who)
        reply.raise_for_status()
        again.launch_id = reply.json()["launchId"]
        dep.wait_status(again.launch_id, "running")
        wait_for(lambda: len(_citations(dep.manifold_url, ada.session_id) or []) >= 2, 60,
                 what=f"the manifold's answer to {ada.who}'s second bot")
        say(f"{ada.who} joined a second room with the same session (a second tab): that launch ran at DEBUG in "
            "every service")
        joins.append(again)
        every = {"bot-gateway", "bot-operator", "bot-runner", "manifold"}
        with contextlib.suppress(TimeoutError):  # each service audits its first use within a poll
            wait_for(lambda: every <= {e["service"] for e in grants.audit(redis_url=dep.redis_url,
                                                                          prefix=dep.keys.prefix)
                                       if e["event"] == "used"}, 5, interval=0.2, what="the uses audited")
        grants.revoke(grant.id, by="demo", redis_url=dep.redis_url, prefix=dep.keys.prefix)
        audit = grants.audit(redis_url=dep.redis_url, prefix=dep.keys.prefix)
        revoked_ns = time.time_ns()

        say()
        grace = joins[1]
        say(f"Then a bot fails: an admin message that is the drill phrase (BOT_FAULT_MESSAGE) makes {grace.who}'s "
            "bot raise")
        httpx.post(f"{dep.gateway_url}/admin", json={"launchId": grace.launch_id, "message": DRILL},
                   headers={"authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10).raise_for_status()
        dep.wait_status(grace.launch_id, "failed")
        time.sleep(2.5)  # every service flushes the failed trace within 2 s
        say(f"{grace.who}'s launch failed: its ERROR flushed the DEBUG records every service buffered for that trace")

        say()
        say("Ending the sessions (POST /leave on the gateway)")
        for join in joins:
            left = httpx.post(f"{dep.gateway_url}/leave", json={"launchId": join.launch_id}, timeout=30).json()
            say(f"  {join.who}'s launch: {left['status']}")
        wait_for(lambda: not dep.cold_bots(), 30, what="the cold bot to exit")
        dep.stop_all()
        if otel is not None:
            otel.stop()  # SIGTERM: it drains its pipelines into its files first
        _report(joins[:3], dep.otel_dir, switched_ns, revoked_ns, view_port)
        _audit_report(audit)
        if otel is not None:
            _collector_report(otel)
        _view_report(dep.otel_dir, view_port, view, "--collector " if otel else "")
        return 0
    except KeyboardInterrupt:
        say("\nInterrupted; cleaning up")
        return 130
    except (TimeoutError, RuntimeError, httpx.HTTPError) as exc:
        say(f"\nThe demo failed: {exc}\nService output is in {log_dir}/*.out")
        return 1
    finally:
        dep.cleanup()
        if otel is not None:
            otel.stop()


def _report(joins: list[Join], log_dir: Path, switched_ns: int, revoked_ns: int, view_port: int) -> None:
    from otel_session.log_reader import read_records

    records = list(read_records(log_dir))
    debug: dict[str, dict[str, int]] = {}
    flushed: dict[str, dict[str, int]] = {}
    for join in joins:
        mine = [r for r in records if r.session_id == join.session_id]
        join.counts = {s: sum(1 for r in mine if r.service == s) for s in SERVICES}
        debug[join.session_id] = {s: sum(1 for r in mine if r.service == s and r.level == "DEBUG"
                                         and not r.attributes.get(BUFFERED)
                                         and switched_ns <= r.time_unix_nano < revoked_ns) for s in SERVICES}
        flushed[join.session_id] = {s: sum(1 for r in mine if r.service == s and r.attributes.get(BUFFERED))
                                    for s in SERVICES}
    say()
    for join in joins:
        say(f"== {join.who}: session {join.session_id} ({join.kind}), trace {join.trace_id}")
        say("   records per service: " + ", ".join(f"{s} {n}" for s, n in join.counts.items()))
        counts = debug[join.session_id]
        say("   DEBUG records after the grant: " + (", ".join(f"{s} {n}" for s, n in counts.items())
                                                     if any(counts.values()) else "none"))
        held = flushed[join.session_id]
        say("   DEBUG records flushed by a failure: " + (", ".join(f"{s} {n}" for s, n in held.items())
                                                          if any(held.values()) else "none (buffered, never exported)"))
        say("   the manifold's Logs citation:")
        for line in join.citation.strip("`").strip().removeprefix("text").strip().splitlines():
            say(f"     {line}")
        say(f"   see them all: otel-session logs --dir {log_dir} --session {join.session_id}")
        say(f"   on one page: {view_url(view_port, join.session_id)}")
        say()


def _start_collector(otel: Collector) -> bool:
    say("Starting the OpenTelemetry Collector (make collector: built once, a few minutes the first time)")
    try:
        say(f"  {collector_binary()} --config collector-config.yaml, on free ports")
        otel.start()
    except (RuntimeError, OSError) as exc:
        say(f"The Collector did not start: {exc}")
        return False
    return True


def _collector_report(otel: Collector) -> None:
    """What the Collector wrote, counted from its files: records, spans, and metrics by name."""
    from otel_session.log_reader import read_metrics, read_records, read_spans

    records = sum(1 for _ in read_records(otel.directory))
    spans = len(read_spans(otel.directory))
    metrics = read_metrics(otel.directory)
    names, points = sorted(metrics), sum(len(p) for p in metrics.values())
    files = ", ".join(sorted(p.name for p in otel.directory.iterdir() if p.is_file()))
    say(f"== The Collector (stopped with SIGTERM: it drained into its files) wrote {files} in {otel.directory}")
    say(f"   log records {records}, spans {spans}, "
        + (f"metrics {len(names)} ({points} data points): {', '.join(sorted(names))}" if names else "metrics none"))
    say(f"   its own output: {otel.log}")
    say()


def _audit_report(audit: list[dict[str, Any]]) -> None:
    say("== The audit (otel_session:{grants}:audit; each entry was also a WARNING record on otel_session.audit)")
    for entry in audit:
        who = entry.get("session_id") or entry.get("user_id")
        say(f"   {entry['event']:8} grant {entry['grant_id']} for {who}, {entry['level']}, by {entry['by']}, "
            f"service {entry['service']}")
    say()


def _view_report(log_dir: Path, port: int, starting: bool, flags: str = "") -> None:
    say("== The view: each session above on one page, every service's records and spans on one timeline")
    say(f"   {view_command(log_dir, port)}")
    if not starting:
        say(f"   (then open a session's page above; `python -m bot.demo {flags}--view` starts it for you)")
    say()


def serve_view(log_dir: Path, port: int) -> int:
    """`otel-session view` over the demo's directory, until Ctrl-C (or until it stops by itself)."""
    view = subprocess.Popen([sys.executable, "-m", "otel_session", "view", "--dir", str(log_dir),
                             "--port", str(port)])
    try:
        try:
            wait_for(lambda: view.poll() is not None or httpx.get(view_url(port), timeout=2).status_code == 200,
                     60, interval=0.2, what="the view to answer")
        except TimeoutError as exc:
            say(f"The view did not start: {exc}")
            return 1
        if view.poll() is not None:
            say(f"The view stopped (exit status {view.returncode}) before it answered: its error is above "
                "(a port in use? try --view-port)")
            return 1
        say(f"The view is running at {view_url(port)}; Ctrl-C stops it")
        code = view.wait()
        return 0 if code in (130, -signal.SIGINT) else code  # Ctrl-C reached the view first
    except KeyboardInterrupt:
        return 0
    finally:
        if view.poll() is None:
            view.terminate()
            try:
                view.wait(timeout=10)
            except subprocess.TimeoutExpired:
                view.kill()
                view.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bot.demo",
        description="Start the bot/ and manifold/ services of this checkout and run three demo sessions.")
    parser.add_argument("--redis-url", default=default_redis_url(),
                        help=f"Redis to use (default: $REDIS_URL, else {DEFAULT_REDIS_URL})")
    parser.add_argument("--log-dir", type=Path, default=None, metavar="DIR",
                        help="where the services write their OTLP-JSON logs (default: a new temporary directory)")
    parser.add_argument("--view", action="store_true",
                        help="at the end, start `otel-session view` over the demo's logs and keep it running until "
                             "Ctrl-C (default: print the command that does)")
    parser.add_argument("--view-port", type=int, default=VIEW_PORT, metavar="PORT",
                        help=f"the view's port, in the URLs printed and with --view (default {VIEW_PORT})")
    parser.add_argument("--collector", action="store_true",
                        help="export through a real OpenTelemetry Collector (built by `make collector`, needs Go) "
                             "started on free ports, its files in DIR/collector, and report from those")
    args = parser.parse_args(argv)
    try:
        parse(args.redis_url)  # a bad URL is one line (its password hidden), before anything starts
    except RedisURLError as exc:
        print(f"python -m bot.demo: {exc}", file=sys.stderr)
        return 2
    directory: Path = args.log_dir or Path(tempfile.mkdtemp(prefix="otel-session-demo-"))
    directory.mkdir(parents=True, exist_ok=True)
    code = run(args.redis_url, directory, args.view_port, args.view, args.collector)
    if code == 0 and args.view:
        return serve_view(otel_dir(directory, args.collector), args.view_port)
    return code


if __name__ == "__main__":
    sys.exit(main())
