"""The bot platform and the manifold exporting to the real Collector, read back from its files.

One run for the module: gateway, operator, a warm runner, a cold bot and the manifold host send OTLP/HTTP through a
tap (`tests.helpers.otlp.OtlpReceiver(forward=...)`: it keeps what each service sent and passes it on unchanged) to
a Collector started from collector-config.yaml; two joins (one warm, one cold), each bot asking the manifold; the
Collector stopped with SIGTERM (it drains). Then `otel-session logs` (the CLI) and `otel-session view` (its HTTP
API) read the Collector's directory: logs.json, traces.json; `read_metrics` its metrics.json.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from otel_session.log_reader import ReadStats, iso_time, read_metrics, read_spans
from tests.helpers.bot_platform import Platform
from tests.helpers.collector import Collector, get_json, logs_json, view_of
from tests.helpers.otlp import OtlpReceiver
from tests.helpers.support import wait_for

pytestmark = [pytest.mark.bot, pytest.mark.redis, pytest.mark.latest_only, pytest.mark.manifold]

SERVICES = {"bot-gateway", "bot-operator", "bot-runner", "manifold"}
JOINED = {"bot-gateway", "bot-operator", "bot-runner"}  # one trace per join across these (and the manifold's run)


@dataclass
class Join:
    session_id: str
    room_url: str
    kind: str = ""
    launch_id: str = ""
    trace_id: str = ""


@dataclass
class Run:
    directory: Path
    tap: OtlpReceiver
    joins: list[Join] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)  # what `Platform.records()` read


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("collector-platform")
    collector = Collector(tmp / "collector").start()
    tap = OtlpReceiver(forward=collector.endpoint)
    # The services export to the tap, which passes everything on to the Collector: `collector=` sets the rest.
    platform = Platform(tmp / "platform", collector=collector, OTEL_EXPORTER_OTLP_ENDPOINT=tap.url)
    joins = [Join("col-warm", "https://rooms.example.test/col-warm"),
             Join("col-cold", "https://rooms.example.test/col-cold")]
    try:
        manifold = platform.start_manifold()
        platform.start_runner(slots=1)
        platform.start_operator()
        platform.start_gateway()
        for join in joins:  # the runner's one slot takes the first; the second finds the pool empty: cold
            reply = platform.join(room_url=join.room_url, sessionId=join.session_id, userId=f"user-{join.session_id}")
            assert reply.status_code == 202, reply.text
            join.launch_id, join.trace_id = reply.json()["launchId"], reply.json()["traceId"]
            join.kind = platform.wait_status(join.launch_id, "running")["type"]
        for join in joins:
            wait_for(lambda j=join: httpx.get(f"{manifold}/citations", params={"session_id": j.session_id},
                                              timeout=5).json(), timeout=60, what=f"the manifold's run for {join}")
        for join in joins:
            left = httpx.post(f"{platform.gateway_url}/leave", json={"launchId": join.launch_id}, timeout=30)
            assert left.status_code == 200, left.text
        wait_for(lambda: not platform.cold_bots(), timeout=30, what="the cold bot to exit")
        platform.stop_all()
        assert collector.stop() == 0, collector.log_text()[-4000:]
        assert [j.kind for j in joins] == ["warm", "cold"]
        assert tap.refused == []
        yield Run(collector.directory, tap, joins, platform.records())
    finally:
        platform.cleanup()
        collector.stop()
        tap.close()


def _key(service: str, logger: str, message: Any, trace_id: str | None, span_id: str | None,
         time: str) -> tuple[Any, ...]:
    return service, logger, message, trace_id or None, span_id or None, time  # no id: "" on the wire, null read


def test_the_collectors_logs_hold_every_record_each_service_sent_exactly_once(run: Run) -> None:
    sent = Counter(_key(r["resource"]["service.name"], r["scope"], r["body"], r["trace_id"], r["span_id"],
                        iso_time(r["time_unix_nano"])) for r in run.tap.log_records())
    assert {key[0] for key in sent} >= SERVICES
    read = logs_json(run.directory)
    written = Counter(_key(r["service"], r["logger"], r["message"], r["trace_id"], r["span_id"], r["time"])
                      for r in read)
    assert max(written.values()) == 1, [k for k, n in written.items() if n > 1][:5]  # no duplicates
    assert written == sent  # none missing, nothing else
    # and the tests' own reader (`Platform.records()`), pointed at the Collector's directory by `collector=`
    assert Counter(_key(r["service"], r["scope"], r["message"], r["trace_id"], r["raw"].get("spanId"),
                        iso_time(r["time"])) for r in run.records) == sent
    for join in run.joins:
        mine = logs_json(run.directory, "--session", join.session_id)
        assert {r["service"] for r in mine} == SERVICES, join
        assert {r["session_id"] for r in mine} == {join.session_id}
        launch = [r for r in mine if r["attributes"].get("bot.launch_id") == join.launch_id]
        assert {r["service"] for r in launch} == JOINED and {r["trace_id"] for r in launch} == {join.trace_id}


def test_the_collectors_traces_hold_every_span_each_service_sent_exactly_once(run: Run) -> None:
    sent = Counter((s["resource"]["service.name"], s["trace_id"], s["span_id"], s["name"]) for s in run.tap.spans())
    assert {key[0] for key in sent} >= SERVICES
    written = Counter((s.service, s.trace_id, s.span_id, s.name) for s in read_spans(run.directory / "traces.json"))
    assert max(written.values()) == 1 and written == sent


def test_the_view_shows_each_session_with_its_spans_joined_to_its_records(run: Run) -> None:
    with view_of(run.directory) as url:
        status = get_json(f"{url}api/status")
        files = {f["path"]: f for f in status["files"]}
        assert {"logs.json", "traces.json"} <= set(files), files
        assert status["skipped_lines"] == 0 and status["error"] is None, status
        for join in run.joins:
            answer = get_json(f"{url}api/sessions/{join.session_id}")
            expected = logs_json(run.directory, "--session", join.session_id)
            assert [(r["time"], r["service"], r["message"]) for r in answer["records"]] == \
                [(r["time"], r["service"], r["message"]) for r in expected]
            assert set(answer["services"]) == SERVICES
            spans = {s["span_id"]: s for s in answer["spans"]}
            unjoined = [r for r in answer["records"] if r["span_id"] and r["span_id"] not in spans]
            assert unjoined == [], unjoined[:3]  # every record's span is on disk and in the answer
            (trace,) = [t for t in answer["traces"] if t["trace_id"] == join.trace_id]
            assert set(trace["services"]) >= JOINED, trace  # the join's one trace across the services
            launch = [r for r in answer["records"] if r["attributes"].get("bot.launch_id") == join.launch_id]
            assert {r["trace_id"] for r in launch} == {join.trace_id}
            assert {spans[r["span_id"]]["trace_id"] for r in launch if r["span_id"]} == {join.trace_id}


# What the scenario makes each service record (docs/bot-platform.md, "Metrics"), and the library's own in every one.
PLATFORM_METRICS = {
    "bot-gateway": {"bot.joins", "bot.queue.depth", "bot.queue.claims", "bot.queue.processing"},
    "bot-operator": {"bot.dispatches", "bot.dispatch.duration", "bot.join.duration", "bot.cold_slot.usage",
                     "bot.operator.count"},
    "bot-runner": {"bot.session.active", "bot.session.duration"},
    "manifold": set(),
}


def test_the_collectors_metrics_hold_every_point_each_service_sent_and_the_platforms_instruments(run: Run) -> None:
    stats = ReadStats()
    points = [p for ps in read_metrics(run.directory, stats=stats).values() for p in ps]
    assert stats.summary() is None
    names: dict[str, set[str]] = {}
    for point in points:
        names.setdefault(point.service, set()).add(point.name)
    for service, wanted in PLATFORM_METRICS.items():
        assert wanted | {"otel_session.log.exported"} <= names.get(service, set()), (service, names.get(service))
    sent = Counter((p["resource"]["service.name"], p["name"], p["value"], tuple(sorted(p["attrs"].items())))
                   for p in run.tap.metric_points())
    written = Counter((p.service, p.name, p.value, tuple(sorted(p.attributes.items()))) for p in points
                      if p.kind in ("sum", "gauge"))
    assert sent and written == sent  # every sum and gauge point once
    joins = [p for p in points if p.service == "bot-gateway" and p.name == "bot.joins"]
    assert max(p.value or 0 for p in joins if p.attributes.get("outcome") == "queued") == len(run.joins)
    dispatched = {p.attributes.get("outcome") for p in points if p.name == "bot.dispatches"}
    assert {"warm", "cold"} <= dispatched, dispatched
