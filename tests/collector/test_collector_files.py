"""What the real Collector's files look like, read by `otel-session logs` and `otel-session view`: rotated files
under their current names (`logs-<UTC time>-size.json`) while a follower and the view are running, lines of many
records and of several resources, and metrics.json beside the logs (skipped quietly, never a bad line).

One Collector for the module, rotating its logs at 1 MB with batches of 200 records, so a few thousand records
rotate it twice; `otel-session logs -f` and `otel-session view` follow its directory from before the first write.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from otel_session.log_reader import read_spans
from tests.helpers.collector import Collector, get_json, logs_json, view_of
from tests.helpers.support import wait_for
from tests.helpers.view import line, record

RUNS, PER_RUN = 3, 1500  # about 0.75 MB a run: two rotations at 1 MB
ROTATED = re.compile(r"logs-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{3}-size\.json")

WRITER = textwrap.dedent(
    """
    import logging, sys
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    import otel_session

    run, count = sys.argv[1], int(sys.argv[2])
    telemetry = otel_session.configure(f"writer-{run}")
    meters = MeterProvider(resource=Resource.create({"service.name": f"writer-{run}"}),
                           metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())])
    written = meters.get_meter("writer").create_counter("writer.records")
    pad = "x" * 300
    with otel_session.session(session_id=f"s-run-{run}"), trace.get_tracer("writer").start_as_current_span("write"):
        for n in range(count):
            logging.getLogger("app.writer").info("run %s record %05d %s", run, n, pad)
            written.add(1)
    telemetry.shutdown()
    meters.shutdown()
    """
)


@dataclass
class Files:
    directory: Path
    followed: list[dict[str, Any]]
    view_status: dict[str, Any]


def _post_json(url: str, body: str) -> int:
    request = urllib.request.Request(url, data=body.encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        return int(reply.status)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    tmp = tmp_path_factory.mktemp("collector-files")
    collector = Collector(tmp / "collector", settings=[
        "exporters::file/logs::rotation::max_megabytes=1",
        "processors::batch::send_batch_size=200", "processors::batch::send_batch_max_size=200"]).start()
    collector.directory.mkdir(parents=True, exist_ok=True)
    follow_out = tmp / "follow.out"
    with open(follow_out, "wb") as out:
        follower = subprocess.Popen([sys.executable, "-m", "otel_session", "logs", "--dir", str(collector.directory),
                                     "-f", "--json"], stdout=out, stderr=subprocess.PIPE)
    try:
        with view_of(collector.directory) as url:
            env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
            env.update(OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint, OTEL_BLRP_SCHEDULE_DELAY="100")
            for run in range(RUNS):
                done = subprocess.run([sys.executable, "-c", WRITER, str(run), str(PER_RUN)], env=env,
                                      capture_output=True, text=True, timeout=120)
                assert done.returncode == 0, done.stderr
            # One request of two services (two resources) in OTLP JSON, as any OTLP/HTTP sender may send it.
            two = json.loads(line(record("from alpha", session="s-two"), service="alpha"))
            two["resourceLogs"] += json.loads(line(record("from beta", at_ms=1, session="s-two"),
                                                   service="beta"))["resourceLogs"]
            assert _post_json(f"{collector.endpoint}/v1/logs", json.dumps(two)) == 200
            assert collector.stop() == 0, collector.log_text()[-4000:]
            total = RUNS * PER_RUN + 2
            wait_for(lambda: len(follow_out.read_text().splitlines()) >= total, timeout=30, what="the follower")
            status = wait_for(lambda: (s := get_json(f"{url}api/status"))["records"] >= total and s, timeout=30,
                              what="the view's index")
        follower.send_signal(signal.SIGTERM)
        _, err = follower.communicate(timeout=30)
        assert err == b"", err  # no skipped lines, no unreadable files
    finally:
        collector.stop()
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    followed = [json.loads(text) for text in follow_out.read_text().splitlines()]
    return Files(collector.directory, followed, status)


def _expected(run: int) -> list[str]:
    return [f"run {run} record {n:05d} " + "x" * 300 for n in range(PER_RUN)]


def test_the_collector_rotates_to_size_names_and_logs_reads_every_record_once(files: Files) -> None:
    names = sorted(p.name for p in files.directory.iterdir())
    rotated = [name for name in names if name.startswith("logs-")]
    assert len(rotated) >= 2 and all(ROTATED.fullmatch(name) for name in rotated), names
    assert set(names) - set(rotated) == {"logs.json", "traces.json", "metrics.json"}
    for run in range(RUNS):
        assert [r["message"] for r in logs_json(files.directory, "--session", f"s-run-{run}")] == _expected(run)


def test_a_follower_running_through_the_rotations_printed_every_record_once(files: Files) -> None:
    def key(r: dict[str, Any]) -> str:
        return json.dumps(r, sort_keys=True)

    # `-f` from the start printed what a reader finds after, in the order it arrived (s-two's times are older)
    assert sorted(map(key, files.followed)) == sorted(map(key, logs_json(files.directory)))
    assert len(files.followed) == RUNS * PER_RUN + 2
    for run in range(RUNS):
        assert [r["message"] for r in files.followed if r["session_id"] == f"s-run-{run}"] == _expected(run)


def test_the_view_following_the_rotations_indexed_every_record_once_and_skipped_nothing(files: Files) -> None:
    status = files.view_status
    assert status["records"] == RUNS * PER_RUN + 2 and status["skipped_lines"] == 0
    by_path = {f["path"]: f for f in status["files"]}
    assert set(by_path) == {p.name for p in files.directory.iterdir()}
    assert all(f["duplicate_lines"] == 0 and f["skipped_lines"] == 0 and not f["gone"] for f in by_path.values())
    assert sum(f["records"] for f in by_path.values() if f["path"].startswith("logs")) == RUNS * PER_RUN + 2


def test_metrics_json_beside_the_logs_is_skipped_quietly(files: Files) -> None:
    metrics = files.directory / "metrics.json"
    requests = [json.loads(text) for text in metrics.read_text().splitlines()]
    assert requests and all("resourceMetrics" in request for request in requests)  # what the Collector wrote
    status = files.view_status["files"]
    (entry,) = [f for f in status if f["path"] == "metrics.json"]
    assert entry["lines"] == len(requests) and entry["records"] == entry["spans"] == entry["skipped_lines"] == 0
    assert logs_json(files.directory, "--session", "s-run-0", "--limit", "1")  # and `logs` says nothing on stderr


def test_a_line_of_several_resources_gives_each_services_records(files: Files) -> None:
    lines = [json.loads(text) for text in (files.directory / "logs.json").read_text().splitlines()]
    services = [{a["value"]["stringValue"] for r in request["resourceLogs"] for a in r["resource"]["attributes"]
                 if a["key"] == "service.name"} for request in lines]
    assert {"alpha", "beta"} in [s & {"alpha", "beta"} for s in services]  # one line, both resources
    assert max(len(request["resourceLogs"]) for request in lines) >= 2
    read = logs_json(files.directory, "--session", "s-two")
    assert [(r["service"], r["message"]) for r in read] == [("alpha", "from alpha"), ("beta", "from beta")]


def test_spans_are_read_from_the_collectors_traces_file(files: Files) -> None:
    spans = read_spans(files.directory)
    assert sorted((s.service, s.name) for s in spans) == [(f"writer-{run}", "write") for run in range(RUNS)]
    for run in range(RUNS):
        (span,) = [s for s in spans if s.service == f"writer-{run}"]
        assert {r["trace_id"] for r in logs_json(files.directory, "--session", f"s-run-{run}")} == {span.trace_id}
