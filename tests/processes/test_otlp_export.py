"""OTLP/HTTP export over a real loopback socket: the official exporters, a stdlib HTTP receiver.

Each pipeline runs in its own process, so the set-once global providers are fresh and
`service.name` is that process's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers.otlp import Answering, OtlpReceiver
from tests.helpers.support import ROOT


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    server = OtlpReceiver()
    yield server
    server.close()


PIPELINE = textwrap.dedent(
    """
    import json, logging, sys
    from opentelemetry import trace
    import otel_session

    kwargs = json.loads(sys.argv[1])
    first = otel_session.configure(**kwargs)
    for _ in range(3):  # re-pointing never adds a second span processor
        telemetry = otel_session.configure(**kwargs)
    log = logging.getLogger("app.otlp")
    with trace.get_tracer("app.tracer").start_as_current_span("checkout") as span, otel_session.session(
        session_id="s-otlp", user_id="u-otlp", user_name="Ada Lovelace"
    ):
        log.info("order %s placed", 42)
        log.warning("payment slow")
    log.error("outside any session")
    ctx = span.get_span_context()
    telemetry.shutdown()  # flushes the logs, the spans and the metrics
    print(json.dumps({
        "exporter": telemetry.exporter_name, "metrics": telemetry.metrics_exporter_name,
        "trace_id": format(ctx.trace_id, "032x"),
        "span_id": format(ctx.span_id, "016x"), "span_processor": telemetry.span_processor is not None,
        "same_span_processor": telemetry.span_processor is first.span_processor,
    }))
    """
)


def run_pipeline(env: dict[str, str], **configure_kwargs: Any) -> dict[str, Any]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run([sys.executable, "-c", PIPELINE, json.dumps(configure_kwargs)], cwd=ROOT,
                         env={**clean, **env}, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Failed to export" not in out.stderr, out.stderr
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def assert_exported(receiver: OtlpReceiver, result: dict[str, Any], service: str) -> None:
    records = receiver.log_records()
    assert [r["body"] for r in records] == ["order 42 placed", "payment slow", "outside any session"]
    # the bridge writes the spec's display names: WARNING -> WARN
    assert [(r["severity_number"], r["severity_text"]) for r in records] == [(9, "INFO"), (13, "WARN"), (17, "ERROR")]
    for record in records:
        assert record["resource"]["service.name"] == service
        assert record["scope"] == "app.otlp"
    inside, outside = records[:2], records[2]
    for record in inside:
        assert record["attrs"]["session.id"] == "s-otlp"
        assert record["attrs"]["user.id"] == "u-otlp"
        assert record["attrs"]["user.name"] == "Ada Lovelace"
        assert record["trace_id"] == result["trace_id"] and record["span_id"] == result["span_id"]
    assert not {"session.id", "user.id", "user.name"} & outside["attrs"].keys()
    assert outside["trace_id"] in ("", "0" * 32)
    assert all(r.content_type == "application/x-protobuf" for r in receiver.requests)


def assert_metrics(receiver: OtlpReceiver, service: str) -> None:
    """The library's metrics arrived: the three records counted under `otlp`, and no id as an attribute."""
    points = receiver.metric_points()
    exported = [p["value"] for p in points if p["name"] == "otel_session.log.exported"]
    assert exported and max(exported) == 3
    assert {p["name"] for p in points} >= {"otel_session.buffer.size", "otel_session.capture.count"}
    for point in points:
        assert point["resource"]["service.name"] == service and point["scope"] == "otel_session"
        assert not {"session.id", "user.id", "user.name"} & point["attrs"].keys()
        assert not {"s-otlp", "u-otlp"} & set(map(str, point["attrs"].values()))


def test_the_endpoint_alone_selects_otlp_and_logs_spans_and_metrics_arrive_over_the_wire(receiver):
    result = run_pipeline({"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_SERVICE_NAME": "otlp-wire"})
    assert result["exporter"] == "otlp" and result["metrics"] == "otlp"
    assert_metrics(receiver, "otlp-wire")
    assert_exported(receiver, result, "otlp-wire")
    assert result["span_processor"] and result["same_span_processor"]
    spans = receiver.spans()
    assert len(spans) == 1  # four configure() calls, one span processor
    span = spans[0]
    assert (span["name"], span["scope"]) == ("checkout", "app.tracer")
    assert (span["trace_id"], span["span_id"]) == (result["trace_id"], result["span_id"])
    assert span["resource"]["service.name"] == "otlp-wire"
    assert receiver.refused == []


def test_explicit_otlp_with_signal_endpoints_and_gzip(receiver):
    result = run_pipeline(
        {
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": f"{receiver.url}/v1/logs",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{receiver.url}/v1/traces",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"{receiver.url}/v1/metrics",
            "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
            "OTEL_LOGS_EXPORTER": "console",  # the explicit argument wins over the variable
        },
        exporter="otlp",
        service_name="otlp-explicit",
    )
    assert result["exporter"] == "otlp"
    assert_exported(receiver, result, "otlp-explicit")
    assert {r.content_encoding for r in receiver.requests} == {"gzip"}
    assert [s["name"] for s in receiver.spans()] == ["checkout"]
    assert_metrics(receiver, "otlp-explicit")


def test_metrics_exporter_none_keeps_metrics_home(receiver):
    result = run_pipeline({"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_METRICS_EXPORTER": "none"},
                          service_name="no-metrics")
    assert_exported(receiver, result, "no-metrics")
    assert result["metrics"] == "none" and receiver.of("/v1/metrics") == []


def test_traces_exporter_none_keeps_spans_home(receiver):
    result = run_pipeline({"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_TRACES_EXPORTER": "none"},
                          service_name="logs-only")
    assert_exported(receiver, result, "logs-only")
    assert not result["span_processor"]
    assert receiver.of("/v1/traces") == []


def test_no_span_export_on_a_tracer_provider_someone_else_set(receiver, tmp_path):
    host = textwrap.dedent(
        """
        import logging
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        host = TracerProvider(resource=Resource.create({"service.name": "host-app"}))
        trace.set_tracer_provider(host)

        import otel_session
        telemetry = otel_session.configure(exporter="otlp", service_name="plugin")
        assert telemetry.tracer_provider is host and telemetry.span_processor is None
        with trace.get_tracer("host").start_as_current_span("host-span"):
            logging.getLogger("plugin").warning("logs still go out")
        telemetry.shutdown()
        host.shutdown()
        """
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run([sys.executable, "-c", host], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={**clean, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url})
    assert out.returncode == 0, out.stderr
    assert [r["body"] for r in receiver.log_records()] == ["logs still go out"]
    assert receiver.of("/v1/traces") == []  # the host's provider is the host's business


FEEDBACK = textwrap.dedent(
    """
    import logging, time
    import otel_session

    telemetry = otel_session.configure(level="DEBUG")  # urllib3 logs each export's POST at DEBUG
    log = logging.getLogger("app.feedback")
    for n in range(5):
        log.info("tick %d", n)
        telemetry.force_flush()  # one export a tick, each logging its own POST
        time.sleep(0.2)
    time.sleep(1.0)  # export cycles with nothing of the app's to send
    telemetry.shutdown()
    print("done")
    """
)


def test_the_exporters_own_requests_are_never_exported_back_into_the_pipeline(receiver):
    """The SDK marks its exports with the suppress-instrumentation key: what is logged inside (urllib3's
    DEBUG lines about the POST) would otherwise be exported again, each export making the next, forever."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run([sys.executable, "-c", FEEDBACK], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={**clean, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_SERVICE_NAME": "feedback",
                              "OTEL_BLRP_SCHEDULE_DELAY": "50"})
    assert out.returncode == 0 and out.stdout.split() == ["done"], out.stderr
    records = receiver.log_records()
    assert [r["body"] for r in records] == [f"tick {n}" for n in range(5)]
    assert not [r for r in records if r["scope"].startswith("urllib3")]


REFUSED = textwrap.dedent(
    """
    import json, logging, time
    import otel_session

    telemetry = otel_session.configure(exporter="otlp", metrics="none")
    logging.getLogger("app.refused").warning("a record the Collector refuses")
    time.sleep(2)  # the batch goes out after 100 ms; a retry would follow within a second
    stats = telemetry.export_stats()
    telemetry.shutdown()
    print(json.dumps({"dropped_export": stats.dropped_export, "outages": stats.outages}))
    """
)


def test_a_batch_the_collector_refuses_is_not_retried_through_configure():
    server = Answering(400)
    try:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env = {**clean, "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": server.url, "OTEL_TRACES_EXPORTER": "none",
               "OTEL_BLRP_SCHEDULE_DELAY": "100"}
        out = subprocess.run([sys.executable, "-c", REFUSED], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        assert server.posts == 1, out.stderr  # configure()'s exporter saw the 400: no second try
    finally:
        server.close()
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"dropped_export": 1, "outages": 0}
    assert out.stderr.count("given up without a retry: the Collector refused them with HTTP 400") == 1, out.stderr
