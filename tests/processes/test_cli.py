"""`otel-session logs` over files the real pipeline wrote (three services in their own processes),
and hand-written OTLP-JSON lines for what a pipeline does not write: garbage, truncated lines,
Collector-rotated and compressed files, records at chosen times."""

from __future__ import annotations

import ast
import gzip
import json
import os
import pty
import selectors
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from otel_session._cli import main, min_severity, parse_count, parse_since, trace_hex
from otel_session.log_reader import LogFilter, read_logs, read_records
from tests.helpers.support import ROOT, wait_for

SERVICES = ("gateway", "operator", "runner")
JSON_KEYS = {"time", "service", "level", "logger", "message", "session_id", "user_id", "trace_id", "span_id",
             "attributes"}

WRITER = textwrap.dedent(
    """
    import json, logging, sys
    from opentelemetry import trace
    from otel_session import configure, session

    service = sys.argv[1]
    telemetry = configure(service_name=service, exporter="file", level="INFO")
    log = logging.getLogger(service + ".work")
    tracer = trace.get_tracer(service)
    traces = {}
    log.info("%s starting", service)
    with tracer.start_as_current_span("one") as span, session(session_id="s-1", user_id="u-1", log_level="DEBUG"):
        traces["s-1"] = format(span.get_span_context().trace_id, "032x")
        log.debug("%s debug for s-1", service)
        log.info("%s info for s-1", service)
        log.warning("%s warning for s-1", service)
    with tracer.start_as_current_span("two") as span, session(session_id="s-2", user_id="u-2"):
        traces["s-2"] = format(span.get_span_context().trace_id, "032x")
        log.debug("dropped: s-2 runs at INFO")
        log.info("%s info for s-2", service, extra={"job.attempt": 2})
        try:
            1 / 0
        except ZeroDivisionError:
            log.exception("%s failed for s-2", service)
    telemetry.shutdown()
    print(json.dumps(traces))
    """
)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "PYTHONPATH", "OTEL_SESSION_LOG_DIR")}
    return {**env, **extra}


def write_with_pipeline(directory: Path, *services: str, script: str = WRITER) -> dict[str, dict[str, str]]:
    """Run one real pipeline process per service into `directory`; their trace ids by service and session."""
    env = _env(OTEL_SESSION_LOG_DIR=str(directory))
    procs = {s: subprocess.Popen([sys.executable, "-c", script, s], env=env, stdout=subprocess.PIPE, text=True)
             for s in services}
    traces = {}
    for service, proc in procs.items():
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        traces[service] = json.loads(out)
    return traces


@pytest.fixture(scope="module")
def pipeline_logs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, str]]]:
    directory = tmp_path_factory.mktemp("logs")
    traces = write_with_pipeline(directory, *SERVICES)
    # a log, a span and a metrics file per process: every test here reads logs from a directory that holds
    # spans and metrics too
    assert len(list(directory.glob("*.spans.jsonl"))) == 3
    assert len(list(directory.glob("*.metrics.jsonl"))) == 3
    assert len(list(directory.glob("*.jsonl"))) == 9
    return directory, traces


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "otel_session", *args], env=env or _env(), cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, Any]]:
    """`main(["logs", *args, "--json"])` in this process."""
    assert main(["logs", *args, "--json"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    return [json.loads(line) for line in out.splitlines()]


def otlp_line(service: str, *records: dict[str, Any], scope: str = "hand") -> str:
    """One hand-written `ExportLogsServiceRequest` line, as a Collector's file exporter writes it."""
    return json.dumps({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeLogs": [{"scope": {"name": scope}, "logRecords": list(records)}],
    }]}, separators=(",", ":")) + "\n"


def record(time_ns: int, message: str, *, number: int = 9, text: str | None = "INFO", session: str | None = None,
           **extra: Any) -> dict[str, Any]:
    attributes = [{"key": "session.id", "value": {"stringValue": session}}] if session else []
    out: dict[str, Any] = {"timeUnixNano": str(time_ns), "severityNumber": number,
                           "body": {"stringValue": message}, "attributes": attributes, **extra}
    if text:
        out["severityText"] = text
    return out


def ns(when: datetime) -> int:
    return int(when.timestamp() * 1e9)


# --- the real pipeline's files ---------------------------------------------------------------------


def test_one_session_from_every_service_in_time_order(pipeline_logs):
    directory, _ = pipeline_logs
    result = cli("logs", "--dir", str(directory), "--session", "s-1", "--json")
    assert result.returncode == 0 and result.stderr == ""
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 9 and {r["session_id"] for r in rows} == {"s-1"}
    assert {r["service"] for r in rows} == set(SERVICES)
    times = [datetime.fromisoformat(r["time"]) for r in rows]
    assert times == sorted(times)
    for service in SERVICES:
        assert [r["message"] for r in rows if r["service"] == service] == [
            f"{service} debug for s-1", f"{service} info for s-1", f"{service} warning for s-1"]
    everything = cli("logs", "--dir", str(directory), "--json").stdout.splitlines()
    assert len(everything) == 18  # 3 × (startup, 3 for s-1, 2 for s-2); the dropped DEBUG is not there


def test_human_output_is_aligned_with_the_stack_trace_under_its_record_and_no_colour_when_piped(pipeline_logs):
    directory, _ = pipeline_logs
    result = cli("logs", "--dir", str(directory), "--service", "gateway")
    assert result.returncode == 0 and result.stderr == ""
    assert "\x1b" not in result.stdout
    lines = result.stdout.splitlines()
    records = [line for line in lines if not line.startswith(" ")]
    assert len(records) == 6
    for line in records:
        stamp, service, _level, _session, logger, _message = line.split(maxsplit=5)
        assert datetime.fromisoformat(stamp).tzinfo is not None and stamp.endswith("Z")
        assert service == "gateway" and logger == "gateway.work"
        assert line.index(" gateway.work ") == records[0].index(" gateway.work ")  # aligned columns
    assert records[0].split()[2:4] == ["INFO", "-"]  # no session: "-"
    assert records[1].split()[2:4] == ["DEBUG", "s-1"]
    failed = lines.index(next(line for line in lines if line.endswith("gateway failed for s-2")))
    assert "ERROR" in lines[failed]
    trace = lines[failed + 1:]
    assert trace[0] == "    Traceback (most recent call last):"
    assert trace[-1] == "    ZeroDivisionError: division by zero"
    assert all(line.startswith("    ") for line in trace)


@pytest.mark.parametrize(("args", "expected"), [
    (["--user", "u-2"], {f"{s} {m} for s-2" for s in SERVICES for m in ("info", "failed")}),
    (["--service", "runner", "--session", "s-2"], {"runner info for s-2", "runner failed for s-2"}),
    (["--service", "runner", "--service", "operator", "--level", "error"],
     {"runner failed for s-2", "operator failed for s-2"}),
    (["--level", "WARN"], {f"{s} {m}" for s in SERVICES for m in ("warning for s-1", "failed for s-2")}),
    (["--level", "warning", "--user", "u-1"], {f"{s} warning for s-1" for s in SERVICES}),
    (["--level", "CRITICAL"], set()),
])
def test_filters(pipeline_logs, capsys, args, expected):
    directory, _ = pipeline_logs
    rows = run_json(capsys, "--dir", str(directory), *args)
    assert {r["message"] for r in rows} == expected and len(rows) == len(expected)


def test_trace_filter_keeps_one_trace(pipeline_logs, capsys):
    directory, traces = pipeline_logs
    trace_id = traces["operator"]["s-1"]
    rows = run_json(capsys, "--dir", str(directory), "--trace", trace_id.upper())
    assert [r["message"] for r in rows] == [f"operator {m} for s-1" for m in ("debug", "info", "warning")]
    assert {r["trace_id"] for r in rows} == {trace_id}


def test_json_keys_and_values(pipeline_logs, capsys):
    directory, traces = pipeline_logs
    rows = run_json(capsys, "--dir", str(directory), "--service", "gateway")
    assert all(set(r) == JSON_KEYS for r in rows)
    start, _debug, _info, warning, info2, failed = rows
    assert start["session_id"] is start["user_id"] is start["trace_id"] is None
    assert warning["level"] == "WARN" and warning["logger"] == "gateway.work"
    assert (warning["session_id"], warning["user_id"]) == ("s-1", "u-1")
    assert warning["trace_id"] == traces["gateway"]["s-1"] and len(warning["span_id"]) == 16
    assert warning["time"].endswith("Z") and datetime.fromisoformat(warning["time"]).utcoffset() == timedelta(0)
    assert "session.id" not in warning["attributes"] and "user.id" not in warning["attributes"]
    assert info2["attributes"]["job.attempt"] == 2
    assert failed["level"] == "ERROR" and failed["attributes"]["exception.type"] == "ZeroDivisionError"
    assert "ZeroDivisionError: division by zero" in failed["attributes"]["exception.stacktrace"]


def test_limit_keeps_the_last_records(pipeline_logs, capsys):
    directory, _ = pipeline_logs
    everything = run_json(capsys, "--dir", str(directory), "--session", "s-1")
    assert run_json(capsys, "--dir", str(directory), "--session", "s-1", "--limit", "2") == everything[-2:]
    assert run_json(capsys, "--dir", str(directory), "--limit", "0") == []


def test_an_unknown_session_prints_nothing_and_the_default_directory_is_the_env_one(pipeline_logs, tmp_path):
    directory, _ = pipeline_logs
    script = Path(sys.executable).parent / "otel-session"  # the console script, when installed
    command = [str(script)] if script.exists() else [sys.executable, "-m", "otel_session"]
    env = _env(OTEL_SESSION_LOG_DIR=str(directory))
    result = subprocess.run([*command, "logs", "--session", "nobody"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    found = subprocess.run([*command, "logs", "--session", "s-2", "--service", "runner"], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
    assert found.returncode == 0 and "runner info for s-2" in found.stdout


# --- flag values ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "message"), [
    (["--since", "ten minutes"], "argument --since: invalid time 'ten minutes'"),
    (["--since", "10x"], "argument --since: invalid time '10x'"),
    (["--level", "LOUD"], "argument --level: invalid log level 'LOUD'"),
    (["--limit", "-3"], "argument --limit: invalid count '-3'"),
    (["--limit", "many"], "argument --limit: invalid count 'many'"),
    (["--trace", "abc"], "argument --trace: invalid trace id 'abc'"),
    (["--trace", "0" * 32], "argument --trace: invalid trace id"),
    (["--dir", "/nonexistent/otel-session-logs"], "argument --dir: /nonexistent/otel-session-logs: no such file"),
])
def test_a_bad_flag_value_exits_2_with_a_clear_message(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["logs", "--dir", str(tmp_path), *args])
    assert exit_info.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and f"otel-session logs: error: {message}" in err


def test_bad_flags_exit_2_from_the_command_and_a_missing_default_directory_is_named(tmp_path):
    result = cli("logs", "--level", "chatty", "--dir", str(tmp_path))
    assert result.returncode == 2 and result.stdout == ""
    assert "argument --level: invalid log level 'chatty'" in result.stderr and "Traceback" not in result.stderr
    missing = cli("logs", env=_env(OTEL_SESSION_LOG_DIR=str(tmp_path / "absent")))
    assert missing.returncode == 2 and f"no log directory at {tmp_path / 'absent'}" in missing.stderr


def test_since_relative_and_iso(tmp_path, capsys, pipeline_logs):
    now = datetime.now(UTC)
    (tmp_path / "svc.1.jsonl").write_text(otlp_line(
        "svc",
        record(ns(now - timedelta(hours=3)), "three hours ago"),
        record(ns(now - timedelta(minutes=30)), "half an hour ago"),
        record(ns(now - timedelta(seconds=20)), "just now"),
    ))

    def since(value: str) -> list[str]:
        return [r["message"] for r in run_json(capsys, "--dir", str(tmp_path), "--since", value)]

    assert since("1m") == since("45s") == ["just now"]
    assert since("2h") == since("1h30m") == since("0.1d") == ["half an hour ago", "just now"]
    assert since("1d") == ["three hours ago", "half an hour ago", "just now"]
    assert since((now - timedelta(hours=1)).isoformat()) == ["half an hour ago", "just now"]
    assert since((now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")) == ["half an hour ago", "just now"]
    naive_utc = (now - timedelta(minutes=10)).replace(tzinfo=None).isoformat(timespec="seconds")
    assert since(naive_utc) == ["just now"]  # no offset: UTC, as the output prints
    directory, _ = pipeline_logs
    assert len(run_json(capsys, "--dir", str(directory), "--since", "1h")) == 18
    assert run_json(capsys, "--dir", str(directory), "--since", (now + timedelta(hours=1)).isoformat()) == []


# --- files the pipeline does not write ---------------------------------------------------------------


def test_garbage_truncated_and_non_otlp_lines_are_skipped_and_counted_once(tmp_path, pipeline_logs):
    directory, _ = pipeline_logs
    shutil.copytree(directory, tmp_path, dirs_exist_ok=True)
    service_file = next(tmp_path.glob("runner.*.jsonl"))
    whole = service_file.read_text()
    with service_file.open("a") as f:
        f.write("this is not json\n")
        f.write('{"hello": "world"}\n')  # JSON, not an OTLP request
        f.write("[1, 2, 3]\n")
        f.write('{"resourceSpans": []}\n')  # another signal's request: not a log line, not an error either
        f.write(whole.splitlines()[0][:50])  # a writer mid-write: no newline, cut short
    (tmp_path / "other.jsonl").write_bytes(b'{"resourceLogs": [{"scopeLogs": 7}]}\n\xff\xfe\n')
    (tmp_path / "logs-2026-01-01T00-00-00.000.json.gz").write_bytes(b"not gzip at all")
    result = cli("logs", "--dir", str(tmp_path), "--service", "runner", "--session", "s-2")
    assert result.returncode == 0
    assert [line.split(maxsplit=5)[5] for line in result.stdout.splitlines() if not line.startswith(" ")] == [
        "runner info for s-2", "runner failed for s-2"]
    assert result.stderr.splitlines() == [
        "otel-session: skipped 6 unreadable lines in 2 files; could not read 1 file "
        f"({tmp_path / 'logs-2026-01-01T00-00-00.000.json.gz'}: Not a gzipped file (b'no'))"]


def test_collector_rotated_and_compressed_files_are_read_in_time_order(tmp_path, capsys):
    base = ns(datetime(2026, 11, 23, 10, tzinfo=UTC))
    collector = tmp_path / "collector"
    collector.mkdir()
    (collector / "logs-2026-11-23T10-00-00.000.json").write_text(
        otlp_line("api", record(base + 1, "first", session="c"), record(base + 4, "fourth", session="c"))
        + otlp_line("worker", record(base + 3, "third", session="c", number=13, text="WARN")))
    (collector / "logs.json").write_text(otlp_line("api", record(base + 6, "sixth", session="c", text=None,
                                                                 number=17)))
    with gzip.open(collector / "logs-2026-11-23T09-00-00.000.json.gz", "wt") as f:
        f.write(otlp_line("worker", record(base + 2, "second", session="c"), record(base + 5, "fifth", session="c")))
    rows = run_json(capsys, "--dir", str(tmp_path))
    assert [r["message"] for r in rows] == ["first", "second", "third", "fourth", "fifth", "sixth"]
    assert [r["level"] for r in rows] == ["INFO", "INFO", "WARN", "INFO", "INFO", "ERROR"]
    assert [r["message"] for r in run_json(capsys, "--dir", str(tmp_path), "--level", "warning")] == [
        "third", "sixth"]
    single = run_json(capsys, "--dir", str(collector / "logs.json"))  # one file
    assert [r["message"] for r in single] == ["sixth"] and single[0]["time"] == "2026-11-23T10:00:00.000000Z"
    entries = read_logs(tmp_path, LogFilter(services=frozenset({"worker"})), limit=2)
    assert [(e.service, e.message) for e in entries] == [("worker", "third"), ("worker", "fifth")]
    assert sorted(e.message for e in read_records(tmp_path)) == sorted(r["message"] for r in rows)  # unsorted


def on_a_terminal(*args: str, env: dict[str, str]) -> tuple[str, str]:
    """`otel-session` with its stdout on a pseudo-terminal and its stderr on a pipe: (stdout, stderr)."""
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "otel_session", *args], env=env, stdout=follower,
                                stderr=subprocess.PIPE)
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    finally:
        os.close(leader)
    return b"".join(chunks).decode(), err.decode()


def test_colour_only_on_a_terminal_without_no_color(pipeline_logs):
    directory, _ = pipeline_logs
    args = ("logs", "--dir", str(directory), "--service", "gateway", "--level", "warn")
    coloured, _ = on_a_terminal(*args, env=_env())
    assert "\x1b[33mWARN \x1b[0m" in coloured and "\x1b[31mERROR" in coloured
    assert "\x1b" not in on_a_terminal(*args, env=_env(NO_COLOR="1"))[0]


def test_a_terminal_gets_one_hint_naming_the_view_of_the_same_directory_and_a_pipe_none(pipeline_logs, tmp_path):
    directory, _ = pipeline_logs
    out, err = on_a_terminal("logs", "--dir", str(directory), "--session", "s-1", env=_env())
    assert "s-1 " in out and "otel-session view" not in out  # the records on stdout, the hint not among them
    assert err.splitlines() == [f"otel-session: the same in the browser: otel-session view --dir {directory}, "
                                "then http://127.0.0.1:8321/sessions/s-1"]
    _, err = on_a_terminal("logs", "--dir", str(directory), env=_env())  # no one session: no page named
    assert err.splitlines() == [f"otel-session: the same in the browser: otel-session view --dir {directory}"]
    spaced = tmp_path / "my logs"
    shutil.copytree(directory, spaced)
    _, err = on_a_terminal("logs", "--dir", str(spaced), "--session", "a/b c", env=_env())  # pasteable as printed
    assert err.splitlines() == [f"otel-session: the same in the browser: otel-session view --dir '{spaced}', "
                                "then http://127.0.0.1:8321/sessions/a%2Fb%20c"]
    piped = cli("logs", "--dir", str(directory), "--session", "s-1")
    assert piped.returncode == 0 and "s-1 " in piped.stdout
    assert piped.stderr == "" and "otel-session view" not in piped.stdout  # not on a pipe


# --- follow ------------------------------------------------------------------------------------------


class Follower:
    """`otel-session logs --follow --json` in a subprocess; its stdout read as it comes."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "otel_session", "logs", "--follow", "--json", *args],
                                     env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.proc.stdout, selectors.EVENT_READ)  # type: ignore[arg-type]
        self.buffer = b""
        self.rows: list[dict[str, Any]] = []

    def _pump(self) -> list[dict[str, Any]]:
        if self.selector.select(timeout=0.05):
            self.buffer += os.read(self.proc.stdout.fileno(), 65536)  # type: ignore[union-attr]
            *lines, self.buffer = self.buffer.split(b"\n")
            self.rows.extend(json.loads(line) for line in lines)
        return self.rows

    def wait_for(self, count: int) -> list[str]:
        wait_for(lambda: len(self._pump()) >= count, timeout=20, what=f"{count} records from the follower")
        return [r["message"] for r in self.rows]

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGINT)  # Ctrl-C
        _, err = self.proc.communicate(timeout=20)
        self.selector.close()
        return self.proc.returncode, err.decode()


def test_follow_prints_records_written_after_it_started(tmp_path):
    now = ns(datetime.now(UTC))
    live = tmp_path / "logs.json"
    live.write_text(otlp_line("api", record(now, "old one", session="s-f"), record(now + 1, "old two", session="s-f")))
    follower = Follower("--dir", str(tmp_path), "--session", "s-f", "--limit", "1")
    try:
        assert follower.wait_for(1) == ["old two"]  # --limit 1: the last one, then follow

        write_with_pipeline(tmp_path, "late-service", script=textwrap.dedent("""
            import logging, sys
            from otel_session import configure, session
            telemetry = configure(service_name=sys.argv[1], exporter="file")
            with session(session_id="s-f"):
                logging.getLogger("late").warning("from a new process")
            with session(session_id="someone-else"):
                logging.getLogger("late").warning("not this session")
            telemetry.shutdown()
            print("{}")
            """))
        assert follower.wait_for(2)[1] == "from a new process"  # a new file

        line = otlp_line("api", record(now + 5, "written in two parts", session="s-f"))
        with live.open("a") as f:
            f.write(line[:40])  # a writer mid-write: neither printed nor counted as unreadable
            f.flush()
            time.sleep(1.2)
            f.write(line[40:])
        assert follower.wait_for(3)[2] == "written in two parts"

        live.rename(tmp_path / "logs-2026-11-23T10-00-00.000.json")  # the Collector rotates: nothing read twice
        live.write_text(otlp_line("api", record(now + 6, "after rotation", session="s-f")))
        assert follower.wait_for(4)[3] == "after rotation"
        time.sleep(1.2)
        assert len(follower._pump()) == 4
    finally:
        code, err = follower.stop()
    assert code == 0 and err == ""


def test_the_library_cli_has_no_demo_and_the_library_never_imports_bot():
    result = cli("demo")
    assert result.returncode == 2 and "invalid choice: 'demo'" in result.stderr
    for path in (ROOT / "src" / "otel_session").rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not [n for n in names if n.split(".")[0] in ("bot", "manifold")], path
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert not node.value.startswith(("bot.", "manifold.")), path  # importlib.import_module("bot.x")


# --- flag parsers, on their own -------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("TRACE", 1), ("debug", 5), ("Info", 9), ("WARN", 13), ("warning", 13), ("ERROR", 17), ("CRITICAL", 21),
    ("fatal", 21), ("25", 12), ("40", 17),
])
def test_min_severity(text, expected):
    assert min_severity(text) == expected


def test_parse_since_and_trace_and_count():
    now = 1_800_000_000 * 10**9
    assert parse_since("90s", now) == parse_since("1m30s", now) == now - 90 * 10**9
    assert parse_since("250ms", now) == now - 250_000_000
    assert parse_since("2026-11-23T10:00:00.000001Z") == parse_since("2026-11-23T11:00:00.000001+01:00") == (
        1_795_428_000_000_001_000)
    assert trace_hex(" 0AF7651916CD43DD8448EB211C80319C ") == "0af7651916cd43dd8448eb211c80319c"
    assert (parse_count("0"), parse_count("12")) == (0, 12)
    for bad in ("", "soon", "10 minutes ago"):
        with pytest.raises(ValueError, match="invalid time"):
            parse_since(bad, now)
    for bad in ("0af7", "g" * 32, "0" * 32):
        with pytest.raises(ValueError, match="invalid trace id"):
            trace_hex(bad)
    with pytest.raises(ValueError, match="invalid count"):
        parse_count("-1")
