"""The library's metrics through the SDK's MeterProvider: each instrument moves when its thing happens, no
session or user id is ever an attribute, and configure() re-points where they go (memory, file, none)."""

from __future__ import annotations

import json
import logging
import os
import time

import pytest
from opentelemetry import trace
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

import otel_session
from otel_session import _instruments, capture, extract_headers, session
from otel_session._grant_table import NO_GRANTS, GrantTable
from otel_session._keys import LOG_LEVEL, SESSION_ID, USER_ID
from otel_session._meter import METRICS, METRICS_EXPORTERS
from otel_session._state import STATE
from otel_session.log_reader import MetricPoint, read_metrics
from otel_session.testing import collected_metrics

log = logging.getLogger("tests.metrics")
tracer = trace.get_tracer("tests.metrics")

NAMES = {
    "otel_session.log.exported": ("{record}", True),
    "otel_session.buffer.size": ("{record}", False),
    "otel_session.buffer.usage": ("By", False),
    "otel_session.buffer.flushed": ("{record}", True),
    "otel_session.buffer.dropped": ("{record}", True),
    "otel_session.buffer.evicted": ("{record}", True),
    "otel_session.capture.count": ("{capture}", False),
    "otel_session.grant.count": ("{grant}", False),
    "otel_session.log_level.refused": ("{log_level}", True),
}
SECRET_SESSION, SECRET_USER = "s-metrics-secret", "u-metrics-secret"


@pytest.fixture
def metered(otel_logs):
    """Logs into the fixture's memory exporter, metrics into memory; afterwards metrics go nowhere again."""
    otel_logs.configure(metrics="memory")
    yield otel_logs
    otel_logs.configure(metrics="none")


def value(name: str, attributes: dict[str, str] | None = None) -> int | float:
    """The metric's value now, summed over the points whose attributes include `attributes`."""
    points = collected_metrics().get(name, [])
    wanted = (attributes or {}).items()
    return sum(p.value or 0 for p in points if wanted <= dict(p.attributes).items())


def test_every_instrument_is_there_with_its_unit_and_kind(metered):
    log.warning("one exported record, so the export count has a point")
    metrics = collected_metrics()
    assert {name: (points[0].unit, points[0].monotonic) for name, points in metrics.items()
            if name.startswith("otel_session.")} == NAMES
    assert all(p.kind == "sum" and p.scope == "otel_session" for name in NAMES for p in metrics[name])
    assert all(p.service == metered.telemetry.service_name for name in NAMES for p in metrics[name])


def test_exported_records_are_counted_by_exporter(metered):
    exporter = {_instruments.EXPORTER: "InMemoryLogRecordExporter"}
    before = value("otel_session.log.exported", exporter)
    for i in range(3):
        log.warning("exported %d", i)
    log.debug("below the level: not exported, not counted")
    assert value("otel_session.log.exported", exporter) == before + 3
    assert len(metered.records) == 3


class _Refusing(LogRecordExporter):
    def __init__(self, raises: bool) -> None:
        self.raises = raises

    def export(self, batch):  # type: ignore[override]
        if self.raises:
            raise ConnectionError("collector away")
        return LogRecordExportResult.FAILURE

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


@pytest.mark.parametrize(("raises", "error"), [(False, "_OTHER"), (True, "ConnectionError")])
def test_failed_exports_are_counted_with_their_error_type(metered, raises, error):
    metered.configure(exporter=_Refusing(raises), metrics="memory")
    failed = {_instruments.EXPORTER: "_Refusing", _instruments.ERROR_TYPE: error}
    before = value("otel_session.log.exported", failed)
    log.warning("refused")
    log.warning("refused again")
    metered.telemetry.force_flush()
    assert value("otel_session.log.exported", failed) == before + 2


def test_the_debug_buffer_counts_what_it_holds_flushes_drops_and_evicts(metered):
    metered.configure(metrics="memory", buffer_level="DEBUG", buffer_ttl_s=30)
    flushed = value("otel_session.buffer.flushed")
    with session(session_id=SECRET_SESSION), tracer.start_as_current_span("fails"):
        log.debug("held 1")
        log.debug("held 2")
        assert value("otel_session.buffer.size") == 2
        assert value("otel_session.buffer.usage") == STATE.buffer.stats().buffered_bytes > 0
        log.error("broke")
    assert value("otel_session.buffer.size") == 0 and value("otel_session.buffer.usage") == 0
    assert value("otel_session.buffer.flushed") == flushed + 2

    metered.configure(metrics="memory", buffer_level="DEBUG", buffer_ttl_s=0.1)
    dropped = value("otel_session.buffer.dropped")
    with tracer.start_as_current_span("fine"):
        log.debug("held, never exported")
    time.sleep(0.2)  # past the TTL
    assert value("otel_session.buffer.dropped") == dropped + 1

    metered.configure(metrics="memory", buffer_level="DEBUG", buffer_ttl_s=30, buffer_max_bytes=4000)
    evicted = value("otel_session.buffer.evicted")
    with tracer.start_as_current_span("big"):
        for i in range(20):
            log.debug("big %d %s", i, "x" * 200)
    assert value("otel_session.buffer.evicted") - evicted == STATE.buffer.stats().evicted > 0


def test_open_captures_are_counted(metered):
    before = value("otel_session.capture.count")
    with capture(), capture():
        assert value("otel_session.capture.count") == before + 2
        assert metered.metrics()["otel_session.capture.count"][0].value == before + 2  # the fixture's view
    assert value("otel_session.capture.count") == before


def test_live_grants_are_counted_by_what_they_name(metered):
    STATE.set_grants(GrantTable(by_session={SECRET_SESSION: (10, "g-1"), "s-other": (10, "g-2")},
                                by_user={SECRET_USER: (20, "g-3")}))
    try:
        assert value("otel_session.grant.count", {_instruments.GRANT_SCOPE: "session"}) == 2
        assert value("otel_session.grant.count", {_instruments.GRANT_SCOPE: "user"}) == 1
    finally:
        STATE.set_grants(NO_GRANTS)
    assert value("otel_session.grant.count") == 0


def test_levels_refused_by_the_signature_check_are_counted(metered):
    metered.configure(metrics="memory", signing_key="k" * 32)
    before = value("otel_session.log_level.refused")
    with otel_session.attach(extract_headers({"baggage": f"{SESSION_ID}={SECRET_SESSION},{LOG_LEVEL}=DEBUG"})):
        log.debug("forced DEBUG, unsigned: not exported")
    assert metered.messages() == []
    assert value("otel_session.log_level.refused") == before + 1


def test_no_session_or_user_id_is_ever_a_metric_attribute(metered):
    metered.configure(metrics="memory", buffer_level="DEBUG", signing_key="k" * 32)
    STATE.set_grants(GrantTable(by_session={SECRET_SESSION: (10, "g-1")}, by_user={SECRET_USER: (10, "g-2")}))
    try:
        with session(session_id=SECRET_SESSION, user_id=SECRET_USER), capture(), \
                tracer.start_as_current_span("everything"):
            log.debug("held")
            log.warning("exported")
            log.error("flushes")
        with otel_session.attach(extract_headers({"baggage": f"{SESSION_ID}={SECRET_SESSION},{USER_ID}={SECRET_USER},"
                                                             f"{LOG_LEVEL}=DEBUG"})):
            log.info("refused level")
            points = [p for ps in collected_metrics().values() for p in ps]
    finally:
        STATE.set_grants(NO_GRANTS)
    assert len(points) >= len(NAMES)
    for point in points:  # every point in the process: ours, and any other instrument's on the provider
        assert not {SESSION_ID, USER_ID} & set(point.attributes), point
        assert not {SECRET_SESSION, SECRET_USER} & {str(v) for v in point.attributes.values()}, point
    ours = {_instruments.EXPORTER, _instruments.ERROR_TYPE, _instruments.GRANT_SCOPE}
    assert all(set(p.attributes) <= ours for p in points if p.name in NAMES)


def test_a_failing_callback_is_counted_warned_once_and_spares_the_others(metered, monkeypatch, capsys):
    class Broken:
        @property
        def open_count(self) -> int:
            raise RuntimeError("broken registry")

    monkeypatch.setattr(STATE, "captures", Broken())
    errors = _instruments.ERRORS.counts.get("otel_session.capture.count", 0)
    first, second = collected_metrics(), collected_metrics()
    assert "otel_session.buffer.size" in first and "otel_session.buffer.size" in second
    assert _instruments.ERRORS.counts["otel_session.capture.count"] == errors + 2
    warned = capsys.readouterr().err.count("the otel_session.capture.count metric could not be read")
    assert warned == (1 if errors == 0 else 0)


# -- where they go ------------------------------------------------------------------------------


def test_metrics_follow_the_logs_unless_told(otel_logs, monkeypatch, tmp_path):
    monkeypatch.setenv("OTEL_SESSION_LOG_DIR", str(tmp_path))
    try:
        assert otel_logs.configure().metrics_exporter_name == "none"  # an exporter instance
        assert otel_logs.configure(exporter="memory").metrics_exporter_name == "none"
        assert otel_logs.configure(exporter="file").metrics_exporter_name == "file"
        monkeypatch.setenv("OTEL_METRICS_EXPORTER", "memory")
        assert otel_logs.configure(exporter="file").metrics_exporter_name == "memory"
        assert otel_logs.configure(exporter="file", metrics="none").metrics_exporter_name == "none"
    finally:
        monkeypatch.delenv("OTEL_METRICS_EXPORTER", raising=False)
        otel_logs.configure(metrics="none")


@pytest.mark.parametrize("bad", ["prometheus", "", "OTLP/grpc"])
def test_a_bad_metrics_exporter_is_refused_naming_the_choices_before_anything_changes(metered, monkeypatch, bad):
    telemetry, route = metered.telemetry, METRICS.route.target
    with pytest.raises(ValueError, match=", ".join(METRICS_EXPORTERS)):
        otel_session.configure(metrics=bad, buffer_level="DEBUG")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", bad or "nonsense")
    with pytest.raises(ValueError, match="OTEL_METRICS_EXPORTER"):
        otel_session.configure(buffer_level="DEBUG")
    assert otel_session.configured() is telemetry and METRICS.route.target is route
    assert STATE.buffer.settings.level is None


def _metric_lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_file_route_writes_otlp_json_metrics_lines_beside_the_logs(otel_logs, monkeypatch, tmp_path):
    monkeypatch.setenv("OTEL_SESSION_LOG_DIR", str(tmp_path))
    try:
        telemetry = otel_logs.configure(exporter="file")
        log.warning("to the file")
        assert telemetry.force_flush()
        name = telemetry.service_name
        metrics_file = tmp_path / f"{name}.{os.getpid()}.metrics.jsonl"
        assert sorted(p.name for p in tmp_path.iterdir()) == [f"{name}.{os.getpid()}.jsonl", metrics_file.name]
        lines = _metric_lines(metrics_file)
        assert lines and all(list(line) == ["resourceMetrics"] for line in lines)
        points = read_metrics(tmp_path)
        assert set(NAMES) <= set(points)
        exported = [p for p in points["otel_session.log.exported"] if p.attributes == {_instruments.EXPORTER: "file"}]
        assert exported[-1].value >= 1 and exported[-1].temporality == 2 and exported[-1].monotonic
        assert all(isinstance(p, MetricPoint) and p.service == name for ps in points.values() for p in ps)
    finally:
        otel_logs.configure(metrics="none")


def test_configure_re_points_metrics_between_file_memory_and_none(otel_logs, monkeypatch, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    monkeypatch.setenv("OTEL_SESSION_LOG_DIR", str(first))
    try:
        telemetry = otel_logs.configure(metrics="file")
        target = METRICS.route.target
        assert otel_logs.configure(metrics="file").metrics_exporter_name == "file"
        assert METRICS.route.target is target  # the same place: the same open file
        log.warning("counted while metrics go to the first directory")
        before = len(_metric_lines(next(first.glob("*.metrics.jsonl")))) if any(first.glob("*.metrics.jsonl")) else 0

        telemetry = otel_logs.configure(metrics="memory")  # what was collected so far goes to the file first
        metrics_file = next(first.glob("*.metrics.jsonl"))
        written = len(_metric_lines(metrics_file))
        assert written > before
        data = telemetry.metrics()
        assert data is not None and target.export(data).name == "FAILURE"  # the old file exporter is closed
        telemetry.force_flush()
        assert len(_metric_lines(metrics_file)) == written  # the file gets no more

        telemetry = otel_logs.configure(metrics="none")
        assert telemetry.metrics() is None and METRICS.route.target is None
        assert telemetry.force_flush()
        with pytest.raises(RuntimeError, match="memory"):
            collected_metrics()

        monkeypatch.setenv("OTEL_SESSION_LOG_DIR", str(second))
        otel_logs.configure(metrics="file").force_flush()
        assert set(NAMES) <= set(read_metrics(second))
        assert len(_metric_lines(metrics_file)) == written
    finally:
        otel_logs.configure(metrics="none")


def test_the_meter_provider_is_the_sdk_one_set_once(metered):
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider

    provider = metered.telemetry.meter_provider
    assert isinstance(provider, MeterProvider) and metrics.get_meter_provider() is provider
    assert metered.configure(metrics="none").meter_provider is provider
    # an app's own instrument on it goes where the library's go
    counter = metrics.get_meter("tests.app").create_counter("app.requests", unit="{request}")
    metered.configure(metrics="memory")
    counter.add(2, {"http.route": "/join"})
    assert value("app.requests", {"http.route": "/join"}) == 2
