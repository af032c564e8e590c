"""The OTLP-JSON metrics line format: what the encoder writes from real SDK metrics, and what the decoder and
`read_metrics` accept from any writer (the SDK encoder, a Collector's `metrics.json`) or refuse."""

from __future__ import annotations

import gzip
import json

import pytest
from opentelemetry.metrics import Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from otel_session._otlp_json import NotOtlpError, decode_line, decode_metrics, encode_metrics_json_line
from otel_session.log_reader import OTHER, MetricPoint, ReadStats, read_logs, read_metrics
from otel_session.testing import metric_points


@pytest.fixture
def sdk_metrics():
    """Real SDK metrics from a provider of the test's own (not the global one): a counter, an up-down counter,
    a histogram recorded inside a sampled span (so it carries an exemplar) and an observable gauge."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(resource=Resource.create({"service.name": "enc-metrics"}), metric_readers=[reader])
    meter = provider.get_meter("tests.enc", "1.2")
    meter.create_counter("app.joins", unit="{join}", description="joins").add(3, {"app.room": "lobby"})
    meter.create_up_down_counter("app.bots", unit="{bot}").add(-2)
    meter.create_observable_gauge("app.load", callbacks=[lambda options: [Observation(0.75, {"cpu": "0"})]])
    histogram = meter.create_histogram("app.latency", unit="s")
    tracer = TracerProvider().get_tracer("tests.enc")
    with tracer.start_as_current_span("join") as span:
        histogram.record(0.3)
        histogram.record(7.0)
    data = reader.get_metrics_data()
    provider.shutdown()
    return data, format(span.get_span_context().trace_id, "032x"), format(span.get_span_context().span_id, "016x")


def test_the_encoder_writes_one_request_a_line_with_hex_exemplar_ids(sdk_metrics):
    data, trace_hex, span_hex = sdk_metrics
    line = encode_metrics_json_line(data)
    assert line.endswith("\n") and line.count("\n") == 1
    request = json.loads(line)
    assert list(request) == ["resourceMetrics"]
    metrics = {m["name"]: m for m in request["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]}
    exemplars = metrics["app.latency"]["histogram"]["dataPoints"][0]["exemplars"]
    assert {(e["traceId"], e["spanId"]) for e in exemplars} == {(trace_hex, span_hex)}
    assert metrics["app.joins"]["sum"]["isMonotonic"] is True
    assert metrics["app.joins"]["sum"]["aggregationTemporality"] == 2  # enums as numbers, as a Collector writes


def test_what_is_encoded_decodes_back(sdk_metrics):
    data, _, _ = sdk_metrics
    points = {p.name: p for p in decode_metrics(encode_metrics_json_line(data))}
    joins, bots, load, latency = (points[n] for n in ("app.joins", "app.bots", "app.load", "app.latency"))
    assert (joins.kind, joins.value, dict(joins.attributes), joins.unit, joins.monotonic, joins.temporality) == (
        "sum", 3, {"app.room": "lobby"}, "{join}", True, 2)
    assert (bots.kind, bots.value, bots.monotonic) == ("sum", -2, False)
    assert (load.kind, load.value, dict(load.attributes), load.temporality) == ("gauge", 0.75, {"cpu": "0"}, 0)
    assert (latency.kind, latency.count, latency.value, latency.min, latency.max) == ("histogram", 2, 7.3, 0.3, 7.0)
    assert sum(latency.bucket_counts) == 2 and len(latency.bucket_counts) == len(latency.explicit_bounds) + 1
    assert all(p.service == "enc-metrics" and p.scope == "tests.enc" for p in points.values())
    assert all(p.time_unix_nano > 0 and p.start_time_unix_nano > 0 for p in (joins, bots, latency))
    assert metric_points(data) == {name: [point] for name, point in points.items()}


COLLECTOR_LINE = {  # as a Collector's file exporter writes metrics: int64 as strings, hex ids, enum numbers
    "resourceMetrics": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "bot-runner"}}]},
        "scopeMetrics": [{
            "scope": {"name": "otel_session", "version": "0.1.0"},
            "metrics": [
                {"name": "otel_session.log.exported", "unit": "{record}", "sum": {
                    "dataPoints": [{"attributes": [{"key": "otel_session.exporter", "value": {"stringValue": "otlp"}}],
                                    "startTimeUnixNano": "1700000000000000000",
                                    "timeUnixNano": "1700000060000000000", "asInt": "42"}],
                    "aggregationTemporality": 2, "isMonotonic": True}},
                {"name": "bot.join.duration", "unit": "s", "histogram": {
                    "dataPoints": [{"timeUnixNano": "1700000060000000000", "count": "3", "sum": 1.5,
                                    "bucketCounts": ["1", "2", "0"], "explicitBounds": [0.1, 1.0],
                                    "min": 0.05, "max": 0.9,
                                    "exemplars": [{"timeUnixNano": "1700000001000000000", "asDouble": 0.9,
                                                   "traceId": "0af7651916cd43dd8448eb211c80319c",
                                                   "spanId": "00f067aa0ba902b7"}]}],
                    "aggregationTemporality": "AGGREGATION_TEMPORALITY_DELTA"}},
                {"name": "bot.load", "gauge": {"dataPoints": [{"timeUnixNano": "1700000060000000000",
                                                              "asDouble": "NaN"}]}},
            ],
        }],
    }],
}


def test_a_collectors_metrics_line_decodes():
    points = {p.name: p for p in decode_metrics(json.dumps(COLLECTOR_LINE))}
    exported = points["otel_session.log.exported"]
    assert (exported.value, exported.service, exported.scope, exported.temporality) == (42, "bot-runner",
                                                                                      "otel_session", 2)
    assert exported.time_unix_nano == 1700000060000000000 and exported.start_time_unix_nano == 1700000000000000000
    duration = points["bot.join.duration"]
    assert (duration.kind, duration.count, duration.value, duration.bucket_counts, duration.explicit_bounds) == (
        "histogram", 3, 1.5, (1, 2, 0), (0.1, 1.0))
    assert (duration.min, duration.max, duration.temporality) == (0.05, 0.9, 1)
    load = points["bot.load"]
    assert load.kind == "gauge" and load.value != load.value  # NaN stays a float


@pytest.mark.parametrize("line", [
    '{"resourceLogs": []}', '{"resourceSpans": [{"scopeSpans": []}]}', '{"resourceProfiles": []}'])
def test_other_signals_hold_no_metrics(line):
    assert decode_metrics(line) == []


@pytest.mark.parametrize("line", [
    "[]", '{"hello": 1}', '{"resourceMetrics": {}}', '{"resourceMetrics": [{"scopeMetrics": [{"metrics": [{'
    '"name": "x", "sum": {"dataPoints": [{"asInt": "many"}]}}]}]}]}',
    '{"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"name": "x", "sum": {"dataPoints": [{"asInt": 1}], '
    '"aggregationTemporality": "SOMETIMES"}}]}]}]}'])
def test_anything_else_is_refused(line):
    with pytest.raises(NotOtlpError):
        decode_metrics(line)


def test_a_metrics_line_is_other_for_the_log_and_span_readers():
    assert decode_line(json.dumps(COLLECTOR_LINE)).kind == OTHER


def test_read_metrics_reads_directories_rotated_and_gzip_files_in_time_order(tmp_path, sdk_metrics):
    data, _, _ = sdk_metrics
    later = json.loads(json.dumps(COLLECTOR_LINE))
    later["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["sum"]["dataPoints"][0].update(
        timeUnixNano="1700000120000000000", asInt="50")
    (tmp_path / "collector").mkdir()
    (tmp_path / "collector" / "metrics.json").write_text(json.dumps(later) + "\n" + "not json\n")
    with gzip.open(tmp_path / "collector" / "metrics-2026-11-23T10-00-00.000.json.gz", "wt") as rotated:
        rotated.write(json.dumps(COLLECTOR_LINE) + "\n")
    (tmp_path / "svc.1.metrics.jsonl").write_text(encode_metrics_json_line(data))
    (tmp_path / "svc.1.jsonl").write_text('{"resourceLogs": []}\n')

    stats = ReadStats()
    points = read_metrics(tmp_path, stats=stats)
    assert [p.value for p in points["otel_session.log.exported"]] == [42, 50]  # by time, across files
    assert points["app.joins"][0].value == 3 and isinstance(points["app.joins"][0], MetricPoint)
    assert stats.skipped_lines == 0  # "not json" holds no metrics: passed over like a log line
    assert read_metrics(tmp_path / "svc.1.metrics.jsonl").keys() == {p.name for p in decode_metrics(
        encode_metrics_json_line(data))}
    assert list(read_logs(tmp_path)) == []


def test_read_metrics_counts_a_broken_metrics_line(tmp_path):
    (tmp_path / "metrics.json").write_text('{"resourceMetrics": [{"scopeMetrics": 7}]}\n'
                                           + json.dumps(COLLECTOR_LINE) + "\n")
    stats = ReadStats()
    assert [p.value for p in read_metrics(tmp_path, stats=stats)["otel_session.log.exported"]] == [42]
    assert stats.skipped_lines == 1
