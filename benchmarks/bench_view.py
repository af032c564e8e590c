"""How fast `otel-session view` is on a real volume: index build, list and session answers, a rendered page.

Writes `--records` log records (default 1,000,000) across 4 services and `--sessions` sessions (default 5,000)
into a temporary directory with the real file exporter (`otel_session.OtlpJsonFileExporter`, fed batches of
real SDK records, 512 a batch as the SDK's batch processor sends them), and each session's spans beside them
(`otel_session.OtlpJsonFileSpanExporter`, real SDK spans). Then it times:

- `Index.refresh()` from scratch (MB/s over the directory's size), and an incremental refresh after 1 % more
  records were appended;
- request → answer through the real HTTP server (`otel-session view` as its own process, on loopback):
  `/api/sessions` (the list) and `/api/sessions/{id}` for random sessions, median and p95;
- the time to a rendered session page in a real browser, when Python's playwright and /usr/bin/chromium are there.

Not a test: it prints a Markdown table, with the targets beside the figures (issue 18: a session's API answer
under 200 ms, the list under 500 ms, at the default volume on this machine).

    .venv/bin/python benchmarks/bench_view.py [--records N] [--sessions N] [--requests N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import multiprocessing
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from otel_session import OtlpJsonFileExporter, OtlpJsonFileSpanExporter

BATCH = 512  # BatchLogRecordProcessor's max_export_batch_size
SERVICES = {  # service: (share of the records, loggers)
    "bot-gateway": (0.08, ("bot.gateway", "uvicorn.access", "bot.edge")),
    "bot-operator": (0.07, ("bot.operator", "bot.launches")),
    "bot-runner": (0.55, ("bot.runner.session", "pipecat.pipeline.task", "pipecat.transports.base_output",
                          "pipecat.services.openai.llm", "bot.runner.keepalive", "httpx")),
    "manifold": (0.30, ("openai_responses", "httpx", "openai._base_client")),
}
SPAN_NAMES = {"bot-gateway": ("launches.enqueue", "edge.server_timing"),
              "bot-operator": ("operator.claim", "operator.dispatch"),
              "bot-runner": ("runner.take", "bot.session"), "manifold": ("responses.create", "citation.emit")}
SESSION_API_TARGET_MS = 200
LIST_TARGET_MS = 500
SESSION_SECONDS = 600  # a session's records spread over up to ten minutes
DAY_NS = 86_400 * 10**9

WORDS = ("standup", "retro", "planning", "review", "sync", "onboarding", "incident", "demo", "budget", "roadmap",
         "hiring", "launch", "design", "customer", "support", "billing", "migration")


def _message(service: str, logger: str, rng: random.Random, s: Session) -> str:
    """A body like the platform's own records: formatted, some long (a prompt, a request's options)."""
    n = rng.randrange(1, 40)
    if logger == "uvicorn.access":
        return f'127.0.0.1:{rng.randrange(40000, 60000)} - "POST /join HTTP/1.1" 202'
    if logger == "httpx":
        target = "/v1/chat/completions" if service == "bot-runner" else "/v1/responses"
        return f'HTTP Request: POST http://127.0.0.1:8400{target} "HTTP/1.1 200 OK"'
    if logger == "openai._base_client":
        return ("Request options: {'method': 'post', 'url': '/responses', 'files': None, 'json_data': {'model': "
                f"'gpt-4.1-mini', 'input': [{{'role': 'user', 'content': 'about the {rng.choice(WORDS)} of "
                f"{s.user_name}, point {n}'}}], 'stream': True}}}}")
    if logger == "openai_responses":
        return rng.choice((f"Calling gpt-4.1-mini with {n} messages",
                           f"Response completed: {n * 37} characters, {n * 11} tokens"))
    if logger.startswith("pipecat"):
        return rng.choice((f"PipelineTask#{n}: Starting. Waiting for StartFrame#0 to reach the end of the pipeline",
                           "User started speaking", "User stopped speaking",
                           f"Generating chat [{{'role': 'user', 'content': 'let us talk about the "
                           f"{rng.choice(WORDS)} {rng.choice(WORDS)}, part {n}'}}]",
                           f"{s.user_name}: TTFB {n * 0.013:.3f} s"))
    if logger == "bot.runner.keepalive":
        return f"keepalive renewed room lock for launch {s.launch_id} (ttl 10 s)"
    if logger == "bot.runner.session":
        return rng.choice((f"Bot started for room https://rooms.example/{rng.choice(WORDS)}-{s.index}",
                           f"Admin message for launch {s.launch_id}: {n} characters",
                           f"Bot for launch {s.launch_id} answered turn {n}"))
    if logger == "bot.operator":
        return rng.choice((f"Claimed launch {s.launch_id} (attempt 1)",
                           f"Dispatching launch {s.launch_id} to warm runner http://127.0.0.1:81{n:02d}",
                           f"Launch {s.launch_id} running after {n * 9} ms"))
    if logger == "bot.launches":
        return f"launch {s.launch_id}: starting -> running"
    return rng.choice((f"Join accepted for room https://rooms.example/{rng.choice(WORDS)}: launch {s.launch_id}",
                       f"Leave requested for launch {s.launch_id}", f"Status of launch {s.launch_id}: running"))


@dataclass
class Session:
    index: int
    session_id: str
    user_id: str
    user_name: str
    launch_id: str
    start_ns: int
    debug: bool  # under a debug grant: its records include DEBUG
    fails: bool  # its bot fails: buffered DEBUG records flushed, an ERROR with a stack trace
    traces: list[tuple[int, int, str]] = field(default_factory=list)  # (trace id, root span id, service)


def make_sessions(count: int, rng: random.Random, now_ns: int) -> list[Session]:
    sessions = []
    for i in range(count):
        user = rng.randrange(max(1, count // 3))
        s = Session(i, f"sess-{i:06d}-{rng.getrandbits(32):08x}", f"user-{user:05d}", f"User {user}",
                    f"{rng.getrandbits(64):016x}", now_ns - DAY_NS + (DAY_NS * i) // count,
                    debug=rng.random() < 0.03, fails=rng.random() < 0.02)
        s.traces.append((rng.getrandbits(128) | 1, rng.getrandbits(64) | 1, "bot-gateway"))  # the join
        s.traces.extend((rng.getrandbits(128) | 1, rng.getrandbits(64) | 1, "manifold")  # the manifold's runs
                        for _ in range(rng.randrange(1, 5)))
        sessions.append(s)
    return sessions


class Writer:
    """Per service: a real SDK logger feeding a collecting exporter; every `BATCH` records go to the file exporter."""

    def __init__(self, directory: Path, service: str) -> None:
        resource = Resource.create({"service.name": service, "service.instance.id": f"{service}-0"})
        self.memory = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
        self.provider = LoggerProvider(resource=resource)
        self.provider.add_log_record_processor(SimpleLogRecordProcessor(self.memory))
        self.exporter = OtlpJsonFileExporter(directory, service)
        self.loggers: dict[str, Any] = {}
        self.count = 0

    def emit(self, logger: str, record: LogRecord) -> None:
        sdk_logger = self.loggers.get(logger) or self.loggers.setdefault(logger, self.provider.get_logger(logger))
        sdk_logger.emit(record)
        self.count += 1
        if self.count % BATCH == 0:
            self.flush()

    def flush(self) -> None:
        batch: Sequence[ReadableLogRecord] = self.memory.get_finished_logs()
        self.memory.clear()
        if batch:
            self.exporter.export(batch)

    def close(self) -> None:
        self.flush()
        self.exporter.shutdown()
        self.provider.shutdown()


_contexts: dict[tuple[int, int], Any] = {}


def _context(trace_id: int, span_id: int) -> Any:
    key = (trace_id, span_id)
    found = _contexts.get(key)
    if found is None:
        span = NonRecordingSpan(SpanContext(trace_id, span_id, is_remote=False, trace_flags=TraceFlags(1)))
        found = _contexts[key] = trace.set_span_in_context(span)
    return found


STACK = ('Traceback (most recent call last):\n  File "/app/bot/runner/session.py", line 212, in run\n'
         "    await task.run()\n  File \"/app/bot/runner/pipeline.py\", line 88, in on_admin\n"
         '    raise BotFault(message)\nbot.runner.session.BotFault: demo: fail this session\n')


def plan(sessions: list[Session], records: int, rng: random.Random) -> dict[str, list[tuple[int, int]]]:
    """(time, session index) per service, in time order: each service serves many sessions at once."""
    per_service: dict[str, list[tuple[int, int]]] = {name: [] for name in SERVICES}
    names = list(SERVICES)
    weights = [SERVICES[n][0] for n in names]
    per_session = records // len(sessions)
    extra = records - per_session * len(sessions)
    for s in sessions:
        n = per_session + (1 if s.index < extra else 0)
        for service in rng.choices(names, weights, k=n):
            per_service[service].append((s.start_ns + rng.randrange(SESSION_SECONDS * 10**9), s.index))
    for rows in per_service.values():
        rows.sort()
    return per_service


def write_logs(directory: Path, sessions: list[Session], per_service: dict[str, list[tuple[int, int]]],
               rng: random.Random) -> int:
    total = 0
    for service, rows in per_service.items():
        writer = Writer(directory, service)
        loggers = SERVICES[service][1]
        for stamp, index in rows:
            s = sessions[index]
            logger = rng.choice(loggers)
            traces = [t for t in s.traces if t[2] == service] or s.traces[:1]
            trace_id, span_id, _ = rng.choice(traces)
            attributes: dict[str, Any] = {"session.id": s.session_id, "user.id": s.user_id,
                                          "user.name": s.user_name, "bot.launch_id": s.launch_id,
                                          "code.file.path": f"/app/{logger.replace('.', '/')}.py",
                                          "code.function.name": "run", "code.line.number": rng.randrange(20, 400)}
            roll = rng.random()
            severity, text = SeverityNumber.INFO, "INFO"
            if s.debug and roll < 0.4:
                severity, text = SeverityNumber.DEBUG, "DEBUG"
                attributes["otel_session.log_level"] = "DEBUG"
            elif s.fails and roll < 0.3:
                severity, text = SeverityNumber.DEBUG, "DEBUG"
                attributes["otel_session.buffered"] = True
            elif roll > 0.993:
                severity, text = SeverityNumber.ERROR, "ERROR"
                attributes.update({"exception.type": "bot.runner.session.BotFault",
                                   "exception.message": "demo: fail this session", "exception.stacktrace": STACK})
            elif roll > 0.965:
                severity, text = SeverityNumber.WARN, "WARN"
            body = _message(service, logger, rng, s)
            writer.emit(logger, LogRecord(timestamp=stamp, observed_timestamp=stamp,
                                          context=_context(trace_id, span_id), severity_number=severity,
                                          severity_text=text, body=body, attributes=attributes))
        writer.close()
        total += writer.count
    return total


_JOB: tuple[Path, list[Session], dict[str, list[tuple[int, int]]], int] | None = None  # what forked workers read


def _write_service(service: str) -> tuple[int, int]:
    assert _JOB is not None
    directory, sessions, per_service, seed = _JOB
    written = write_logs(directory, sessions, {service: per_service[service]}, random.Random(f"{seed}-{service}"))
    return written, write_spans(directory, sessions, random.Random(seed), only=service)


def write_all(jobs: int, directory: Path, sessions: list[Session], per_service: dict[str, list[tuple[int, int]]],
              seed: int) -> tuple[int, int]:
    """Records and spans, one process a service, `jobs` at a time (forked: they read the plan without copying it
    through a pipe), as the services are separate processes: each writes its `<service>.<pid>.jsonl` and
    `<service>.<pid>.spans.jsonl` as the exporters do. Returns (records, spans)."""
    global _JOB
    _JOB = (directory, sessions, per_service, seed)
    try:
        biggest, *others = sorted(per_service, key=lambda name: -len(per_service[name]))
        if jobs <= 1:
            counts = [_write_service(service) for service in (biggest, *others)]
        else:  # this process writes the biggest service (its file grows again later), workers the others
            with multiprocessing.get_context("fork").Pool(jobs - 1) as pool:
                rest = pool.map_async(_write_service, others, chunksize=1)
                counts = [_write_service(biggest), *rest.get()]
        return sum(c[0] for c in counts), sum(c[1] for c in counts)
    finally:
        _JOB = None


def write_spans(directory: Path, sessions: list[Session], rng: random.Random, only: str) -> int:
    """Each session's traces as real SDK spans (a root per trace and a few children across the services that
    worked on it); those of service `only` are written. The same `rng` gives every service the same traces."""
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    exporters = {only: OtlpJsonFileSpanExporter(directory, only)}
    resources = {name: Resource.create({"service.name": name, "service.instance.id": f"{name}-0"})
                 for name in SERVICES}
    batches: dict[str, list[Any]] = {name: [] for name in SERVICES}
    count = 0
    for s in sessions:
        for trace_id, root_id, service in s.traces:
            services = ("bot-gateway", "bot-operator", "bot-runner") if service == "bot-gateway" else ("manifold",)
            start = s.start_ns + rng.randrange(SESSION_SECONDS * 10**9 // 2)
            root = SpanContext(trace_id, root_id, is_remote=False, trace_flags=TraceFlags(1))
            # as the services' spans are: no session attribute, the session is found through its records' traces
            attrs: dict[str, Any] = {"gen_ai.request.model": "gpt-4.1-mini"}
            if service == "bot-gateway":
                attrs = {"http.request.method": "POST", "url.path": "/join", "http.response.status_code": 202}
            spans = [(services[0], ReadableSpan(
                "POST /join" if service == "bot-gateway" else "openai_responses.pipe", root, None,
                resources[services[0]], attrs, kind=SpanKind.SERVER, start_time=start,
                end_time=start + rng.randrange(10**8, 10**10), instrumentation_scope=InstrumentationScope(service)))]
            for k, child_service in enumerate(services * 2):
                child = SpanContext(trace_id, rng.getrandbits(64) | 1, is_remote=False, trace_flags=TraceFlags(1))
                begin = start + (k + 1) * 10**7
                spans.append((child_service, ReadableSpan(
                    SPAN_NAMES[child_service][k // len(services)], child, root, resources[child_service],
                    {"bot.launch_id": s.launch_id}, start_time=begin,
                    end_time=begin + rng.randrange(10**6, 10**9),
                    instrumentation_scope=InstrumentationScope(child_service))))
            for name, span in spans:
                if name != only:
                    continue
                batches[name].append(span)
                count += 1
                if len(batches[name]) >= BATCH:
                    exporters[name].export(batches[name])
                    batches[name] = []
    if batches[only]:
        exporters[only].export(batches[only])
    exporters[only].shutdown()
    return count


def directory_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


# --- timing ------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def view_server(directory: Path, port: int, db: Path, timeout_s: float = 600,
                ) -> Iterator[tuple[subprocess.Popen[bytes], float]]:
    """`otel-session view` as its own process over the index in `db`; yields it and the seconds until its list
    first answered."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "otel_session", "view", "--dir", str(directory),
                             "--port", str(port), "--db", str(db)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = started + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"otel-session view exited {proc.returncode}: "
                                   f"{proc.stderr.read().decode(errors='replace') if proc.stderr else ''}")
            with contextlib.suppress(OSError):
                status, _, _ = get(port, "/api/sessions?limit=1")
                if status == 200:
                    break
            if time.perf_counter() > deadline:
                raise TimeoutError("otel-session view did not answer")
            time.sleep(0.2)
        yield proc, time.perf_counter() - started
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def get(port: int, path: str, conn: http.client.HTTPConnection | None = None) -> tuple[int, bytes, float]:
    """One GET: status, body, seconds from sending the request to having read the whole answer."""
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        started = time.perf_counter()
        conn.request("GET", path)
        answer = conn.getresponse()
        body = answer.read()
        return answer.status, body, time.perf_counter() - started
    finally:
        if own:
            conn.close()


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def rendered_page_times(port: int, session_ids: list[str]) -> list[float] | str:
    """Seconds from navigation to a session page showing its records, in chromium; or why it was skipped."""
    chromium = "/usr/bin/chromium"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return "skipped: Python's playwright is not installed (the `browser` extra; no browser download needed)"
    if not os.path.exists(chromium):
        return f"skipped: no browser at {chromium}"
    times = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            for session_id in session_ids:
                started = time.perf_counter()
                page.goto(f"http://127.0.0.1:{port}/sessions/{session_id}")
                # rendered: a record row of this session's is in the page
                page.wait_for_function("() => document.querySelectorAll('#record-rows tr[data-record]').length > 0",
                                       timeout=60_000)
                times.append(time.perf_counter() - started)
        finally:
            browser.close()
    return times


@dataclass
class Row:
    what: str
    figure: str
    target: str = ""


def bench(args: argparse.Namespace) -> list[Row]:
    rng = random.Random(args.seed)
    rows: list[Row] = []
    directory = Path(tempfile.mkdtemp(prefix="otel-session-bench-view-")) if args.keep is None else args.keep
    directory.mkdir(parents=True, exist_ok=True)
    try:
        now_ns = time.time_ns()
        sessions = make_sessions(args.sessions, rng, now_ns)
        started = time.perf_counter()
        per_service = plan(sessions, args.records, rng)
        written, spans = write_all(args.jobs, directory, sessions, per_service, args.seed)
        generating = time.perf_counter() - started
        size = directory_bytes(directory)
        rows.append(Row(f"generated: {written:,} records, {spans:,} spans, {len(sessions):,} sessions, "
                        f"{len(SERVICES)} services", f"{generating:.0f} s"))
        rows.append(Row("directory size", f"{size / 1e6:.0f} MB"))
        print(f"bench_view: wrote {directory} in {generating:.0f} s", file=sys.stderr, flush=True)

        try:
            from otel_session.view.index import Index
        except ImportError:
            rows.append(Row("the view", "not in this checkout (otel_session.view.index): nothing else timed"))
            return rows

        db = Path(tempfile.mkdtemp(prefix="otel-session-bench-index-")) / "index.sqlite3"
        try:
            index = Index(directory, db_path=db)
            started = time.perf_counter()
            stats = index.refresh()
            build = time.perf_counter() - started
            rows.append(Row("index build from scratch (`Index.refresh()`)",
                            f"{build:.1f} s, {size / 1e6 / build:.1f} MB/s"))
            print(f"bench_view: index built in {build:.1f} s: {stats}", file=sys.stderr, flush=True)

            more = make_sessions(max(1, args.sessions // 100), rng, now_ns + 60 * 10**9)
            for s in more:
                s.session_id = "more-" + s.session_id
            before = {p: p.stat().st_size for p in directory.iterdir()}
            written_more = write_logs(directory, more, plan(more, max(1, args.records // 100), rng), rng)
            grown = directory_bytes(directory) - size
            after = {p: p.stat().st_size for p in directory.iterdir()}
            files_grown = sum(1 for p, n in after.items() if p in before and n > before[p])
            files_new = sum(1 for p in after if p not in before)
            started = time.perf_counter()
            index.refresh()
            incremental = time.perf_counter() - started
            rows.append(Row(f"incremental refresh after {written_more:,} more records ({grown / 1e6:.1f} MB: "
                            f"{files_grown} file(s) grown, {files_new} new)", f"{ms(incremental)}"))
            started = time.perf_counter()
            index.refresh()
            rows.append(Row("refresh with nothing new", ms(time.perf_counter() - started)))
            index.close()

            port = free_port()
            with view_server(directory, port, db) as (_, ready):
                rows.append(Row("`otel-session view --db` over that index: first answer of /api/sessions",
                                ms(ready)))
                rows.extend(requests(port, sessions, rng, args.requests))
        finally:
            shutil.rmtree(db.parent, ignore_errors=True)
        return rows
    finally:
        if args.keep is None:
            shutil.rmtree(directory, ignore_errors=True)


def requests(port: int, sessions: list[Session], rng: random.Random, count: int) -> list[Row]:
    """The list, random sessions' answers, an unknown session, and rendered pages, through the real server."""
    rows = []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)  # kept alive, as a browser does
    listing = []
    for _ in range(max(1, count // 2)):
        status, body, took = get(port, "/api/sessions", conn)
        assert status == 200, (status, body[:200])
        listing.append(took)
    found = json.loads(body)
    items = found["sessions"] if isinstance(found, dict) else found
    rows.append(Row(f"`GET /api/sessions` ({len(items)} sessions in the answer), {len(listing)} requests, "
                    "median / p95", f"{ms(statistics.median(listing))} / {ms(p95(listing))}",
                    f"< {LIST_TARGET_MS} ms"))
    searching = []
    for s in rng.sample(sessions, min(10, len(sessions))):
        status, body, took = get(port, f"/api/sessions?q={s.user_id}", conn)
        assert status == 200, (status, body[:200])
        searching.append(took)
    rows.append(Row(f"`GET /api/sessions?q=<a user id>`, {len(searching)} requests, median / p95",
                    f"{ms(statistics.median(searching))} / {ms(p95(searching))}", f"< {LIST_TARGET_MS} ms"))
    picks = rng.sample(sessions, min(count, len(sessions)))
    answers, counts = [], []
    for s in picks:
        status, body, took = get(port, f"/api/sessions/{s.session_id}", conn)
        assert status == 200, (status, s.session_id, body[:200])
        answer = json.loads(body)
        assert answer["records"] and all(r["session_id"] == s.session_id for r in answer["records"])
        answers.append(took)
        counts.append(len(answer["records"]))
    rows.append(Row(f"`GET /api/sessions/{{id}}`, {len(picks)} random sessions "
                    f"(≈ {statistics.median(counts):.0f} records each), median / p95",
                    f"{ms(statistics.median(answers))} / {ms(p95(answers))}", f"< {SESSION_API_TARGET_MS} ms"))
    status, _, took = get(port, "/api/sessions/no-such-session", conn)
    rows.append(Row("`GET /api/sessions/{id}` for an unknown session", f"{ms(took)} ({status})"))
    conn.close()
    pages = rendered_page_times(port, [s.session_id for s in picks[:11]])
    if isinstance(pages, str):
        rows.append(Row("a session page rendered in chromium", pages))
    else:
        first, *rest = pages
        rows.append(Row("a session page rendered in chromium (its records in the table), the browser's first page",
                        ms(first)))
        if rest:
            rows.append(Row(f"the next {len(rest)} sessions' pages, median / p95",
                            f"{ms(statistics.median(rest))} / {ms(p95(rest))}"))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="log records to write (default 1,000,000)")
    parser.add_argument("--sessions", type=int, default=5_000, help="sessions they belong to (default 5,000)")
    parser.add_argument("--requests", type=int, default=50, help="random sessions asked for (default 50)")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="processes writing the services' files at once (default: 2, or 1 on one core)")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="write into DIR and keep it (default: a temporary "
                                                                "directory, removed at the end)")
    args = parser.parse_args(argv)
    if args.records < args.sessions or args.sessions < 1:
        parser.error("--records must be at least --sessions, and --sessions at least 1")
    rows = bench(args)
    print("| view, at this volume | measured | target |")
    print("| --- | ---: | ---: |")
    for row in rows:
        print(f"| {row.what} | {row.figure} | {row.target} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
