"""Spans on disk: a process configured with the file exporter writes its spans as OTLP-JSON traces lines
beside its logs, and the reader gives them back; `otel-session logs` is not disturbed by them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from otel_session.log_reader import LOGS, OTHER, TRACES, ReadStats, read_chunks, read_logs, read_spans

WRITER = textwrap.dedent(
    """
    import json, logging, os, sys
    from opentelemetry import trace
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode
    import otel_session

    telemetry = otel_session.configure(service_name=sys.argv[1], exporter="file", level="INFO")
    log = logging.getLogger("app.work")
    tracer = trace.get_tracer("app.tracer")
    page = trace.SpanContext(int("ab" * 16, 16), int("cd" * 8, 16), is_remote=True)
    ids = {}
    with tracer.start_as_current_span("join", kind=SpanKind.SERVER, links=[Link(page, {"link.kind": "page"})],
                                      attributes={"http.route": "/join"}) as root, \\
            otel_session.session(session_id="s-spans", user_id="u-1"):
        log.info("joined")
        with tracer.start_as_current_span("dispatch", kind=SpanKind.PRODUCER) as child:
            child.add_event("queued", {"queue.depth": 2})
            child.set_status(Status(StatusCode.ERROR, "no bot free"))
            log.warning("no bot free")
            ids["child"] = format(child.get_span_context().span_id, "016x")
        ids["root"] = format(root.get_span_context().span_id, "016x")
        ids["trace"] = format(root.get_span_context().trace_id, "032x")
    ids["processor"] = telemetry.span_processor is not None
    getattr(telemetry, sys.argv[2])()  # force_flush or shutdown: either writes the spans out
    print(json.dumps(ids))
    """
)


def _env(directory: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return {**env, "OTEL_SESSION_LOG_DIR": str(directory), **extra}


def run(script: str, *args: str, env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "could not write" not in out.stderr, out.stderr
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("flush", ["force_flush", "shutdown"])
def test_a_configured_process_writes_its_spans_beside_its_logs(tmp_path, flush):
    ids = run(WRITER, "svc/a", flush, env=_env(tmp_path))
    assert ids["processor"]
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 3
    logs, metrics_file, spans_file = names
    service, pid, rest = logs.split(".", 2)
    assert (service, rest) == ("svc_a", "jsonl") and spans_file == f"svc_a.{pid}.spans.jsonl"
    assert metrics_file == f"svc_a.{pid}.metrics.jsonl"  # the metrics follow the logs too

    lines = (tmp_path / spans_file).read_text().splitlines()
    assert all("resourceSpans" in json.loads(line) for line in lines)
    spans = read_spans(tmp_path)
    assert [s.name for s in spans] == ["join", "dispatch"]  # in start order
    join, dispatch = spans
    assert (join.trace_id, join.span_id, join.parent_span_id) == (ids["trace"], ids["root"], None)
    assert (dispatch.trace_id, dispatch.span_id, dispatch.parent_span_id) == (ids["trace"], ids["child"], ids["root"])
    assert (join.kind_name, dispatch.kind_name) == ("SERVER", "PRODUCER")
    assert [(link.trace_id, link.span_id, dict(link.attributes)) for link in join.links] == [
        ("ab" * 16, "cd" * 8, {"link.kind": "page"})]
    assert join.attributes == {"http.route": "/join"}
    assert [(e.name, dict(e.attributes)) for e in dispatch.events] == [("queued", {"queue.depth": 2})]
    assert (dispatch.status, dispatch.status_message, join.status) == ("ERROR", "no bot free", "UNSET")
    assert {s.service for s in spans} == {"svc/a"} and join.resource["service.name"] == "svc/a"
    assert join.scope == "app.tracer"
    assert join.start_unix_nano <= dispatch.start_unix_nano <= dispatch.end_unix_nano <= join.end_unix_nano

    records = read_logs(tmp_path)  # the records point at the spans written beside them
    assert [(r.message, r.span_id, r.trace_id) for r in records] == [
        ("joined", ids["root"], ids["trace"]), ("no bot free", ids["child"], ids["trace"])]


def test_traces_exporter_none_writes_no_spans_and_a_hosts_tracer_provider_is_left_alone(tmp_path):
    run(WRITER, "quiet", "shutdown", env=_env(tmp_path / "none", OTEL_TRACES_EXPORTER="none"))
    assert sorted(p.name.split(".", 2)[2] for p in (tmp_path / "none").iterdir()) == ["jsonl", "metrics.jsonl"]

    host = "from opentelemetry import trace\nfrom opentelemetry.sdk.trace import TracerProvider\n" \
           "trace.set_tracer_provider(TracerProvider())\n" + WRITER
    ids = run(host, "hosted", "shutdown", env=_env(tmp_path / "host"))
    assert not ids["processor"]
    assert sorted(p.name.split(".", 2)[2] for p in (tmp_path / "host").iterdir()) == ["jsonl", "metrics.jsonl"]


REPOINT = textwrap.dedent(
    """
    import json, os, sys
    from opentelemetry import trace
    import otel_session

    tracer = trace.get_tracer("app")
    first = otel_session.configure(service_name="moving", exporter="file")
    with tracer.start_as_current_span("in-a"):
        pass
    os.environ["OTEL_SESSION_LOG_DIR"] = sys.argv[1]
    second = otel_session.configure(exporter="file")  # re-pointed: spans follow the logs
    with tracer.start_as_current_span("in-b"):
        pass
    third = otel_session.configure(exporter="memory")  # no spans written for a memory exporter
    with tracer.start_as_current_span("nowhere"):
        pass
    otel_session.configure(exporter="file")
    with tracer.start_as_current_span("in-b-again"):
        pass
    otel_session.configured().shutdown()
    print(json.dumps({"one_processor": first.span_processor is second.span_processor is third.span_processor}))
    """
)


def test_spans_follow_the_logs_when_configure_re_points_them(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    result = run(REPOINT, str(b), env=_env(a))
    assert result["one_processor"]
    assert [s.name for s in read_spans(a)] == ["in-a"]
    assert [s.name for s in read_spans(b)] == ["in-b", "in-b-again"]
    assert len(list(b.glob("*.spans.jsonl"))) == 1  # the same file, opened again


def test_a_forked_child_writes_its_own_span_file(tmp_path):
    script = textwrap.dedent(
        """
        import os
        from opentelemetry import trace
        import otel_session

        telemetry = otel_session.configure(service_name="forks", exporter="file")
        tracer = trace.get_tracer("app")
        with tracer.start_as_current_span("parent-before"):
            pass
        telemetry.force_flush()
        pid = os.fork()
        if pid == 0:
            with tracer.start_as_current_span("child"):
                pass
            telemetry.force_flush()
            os._exit(0)
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
        with tracer.start_as_current_span("parent-after"):
            pass
        telemetry.shutdown()
        print('{"ok": true}')
        """
    )
    run(script, env=_env(tmp_path))
    by_file = {p.name.split(".")[1]: [s.name for s in read_spans(p)] for p in tmp_path.glob("*.spans.jsonl")}
    assert sorted(by_file.values()) == [["child"], ["parent-before", "parent-after"]]


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "otel_session", *args], env=env, capture_output=True, text=True,
                          timeout=60)


def test_otel_session_logs_prints_the_same_with_span_files_beside_the_logs(tmp_path):
    run(WRITER, "svc-one", "shutdown", env=_env(tmp_path / "both"))
    run(WRITER, "svc-two", "shutdown", env=_env(tmp_path / "both"))
    logs_only = tmp_path / "logs-only"
    logs_only.mkdir()
    for path in (tmp_path / "both").iterdir():
        if not path.name.endswith(".spans.jsonl"):
            shutil.copy(path, logs_only)
    assert len(list((tmp_path / "both").glob("*.spans.jsonl"))) == 2
    env = _env(tmp_path)
    for flags in ((), ("--json",), ("--session", "s-spans", "--level", "warn")):
        with_spans = cli("logs", "--dir", str(tmp_path / "both"), *flags, env=env)
        without = cli("logs", "--dir", str(logs_only), *flags, env=env)
        assert with_spans.returncode == without.returncode == 0
        assert with_spans.stdout == without.stdout and with_spans.stdout.strip()
        assert with_spans.stderr == "" == without.stderr  # span lines are not skipped lines
    stats = ReadStats()
    kinds = [chunk.kind for path in sorted((tmp_path / "both").iterdir()) for chunk in read_chunks(path, stats=stats)]
    assert sorted(set(kinds)) == [LOGS, OTHER, TRACES] and stats.summary() is None  # metrics lines are "other"
