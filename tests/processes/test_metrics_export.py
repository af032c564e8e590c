"""Metrics in fresh processes (OTel's MeterProvider is set once a process): a service's metrics file after
shutdown, the environment's choices, periodic export, and attach mode on a host's MeterProvider."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from otel_session.log_reader import read_logs, read_metrics
from tests.helpers.support import ROOT

SERVICE = textwrap.dedent(
    """
    import json, logging, sys
    from opentelemetry import metrics
    import otel_session

    telemetry = otel_session.configure(**json.loads(sys.argv[1]))
    joins = metrics.get_meter("app.service").create_counter("app.joins", unit="{join}")
    with otel_session.session(session_id="s-metrics", user_id="u-metrics"):
        logging.getLogger("app.service").warning("joined")
        joins.add(1, {"app.room": "lobby"})
    logging.getLogger("app.service").warning("left")
    telemetry.shutdown()
    print(json.dumps({"metrics": telemetry.metrics_exporter_name, "pid": __import__("os").getpid()}))
    """
)


def _env(directory: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return {**env, "OTEL_SESSION_LOG_DIR": str(directory), **extra}


def run(script: str, env: dict[str, str], *args: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", script, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "could not write" not in out.stderr, out.stderr
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_a_service_writes_its_metrics_file_beside_its_logs_and_it_holds_them_after_shutdown(tmp_path):
    result = run(SERVICE, _env(tmp_path, OTEL_SERVICE_NAME="svc/m"), json.dumps({"exporter": "file"}))
    assert result["metrics"] == "file"
    pid = result["pid"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"svc_m.{pid}.jsonl", f"svc_m.{pid}.metrics.jsonl"]
    lines = (tmp_path / f"svc_m.{pid}.metrics.jsonl").read_text().splitlines()
    assert lines and all(list(json.loads(line)) == ["resourceMetrics"] for line in lines)

    points = read_metrics(tmp_path)
    joins = points["app.joins"][-1]
    assert (joins.value, dict(joins.attributes), joins.unit, joins.service) == (1, {"app.room": "lobby"}, "{join}",
                                                                                "svc/m")
    exported = points["otel_session.log.exported"][-1]
    assert (exported.value, dict(exported.attributes)) == (2, {"otel_session.exporter": "file"})
    assert [r.message for r in read_logs(tmp_path)] == ["joined", "left"]  # metrics lines are no log lines
    for point in (p for ps in points.values() for p in ps):
        assert not {"session.id", "user.id"} & set(point.attributes)
        assert not {"s-metrics", "u-metrics"} & set(map(str, point.attributes.values()))


def test_the_environment_chooses_where_metrics_go(tmp_path):
    logs_only = tmp_path / "logs-only"
    result = run(SERVICE, _env(logs_only, OTEL_SERVICE_NAME="svc", OTEL_METRICS_EXPORTER="none"),
                 json.dumps({"exporter": "file"}))
    assert result["metrics"] == "none"
    assert [p.name for p in logs_only.iterdir()] == [f"svc.{result['pid']}.jsonl"]

    metrics_only = tmp_path / "metrics-only"
    result = run(SERVICE, _env(metrics_only, OTEL_SERVICE_NAME="svc", OTEL_METRICS_EXPORTER="file",
                               OTEL_LOGS_EXPORTER="none"), "{}")
    assert result["metrics"] == "file"
    assert [p.name for p in metrics_only.iterdir()] == [f"svc.{result['pid']}.metrics.jsonl"]
    assert read_metrics(metrics_only)["app.joins"][-1].value == 1


PERIODIC = textwrap.dedent(
    """
    import os, sys, time
    import otel_session

    telemetry = otel_session.configure(service_name="periodic", exporter="file")
    path = os.path.join(os.environ["OTEL_SESSION_LOG_DIR"], f"periodic.{os.getpid()}.metrics.jsonl")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # no flush of ours: only the reader's own schedule writes
        if os.path.exists(path) and open(path).read().count("\\n") >= 2:
            print("periodic")
            break
        time.sleep(0.05)
    sys.stdout.flush()
    os._exit(0)  # no exit hooks: nothing but the schedule has written
    """
)


def test_the_reader_exports_on_its_own_schedule(tmp_path):
    out = subprocess.run([sys.executable, "-c", PERIODIC], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env=_env(tmp_path, OTEL_METRIC_EXPORT_INTERVAL="100"))
    assert out.returncode == 0 and out.stdout.split() == ["periodic"], out.stderr
    assert "otel_session.capture.count" in read_metrics(tmp_path)


HOST = textwrap.dedent(
    """
    import json, logging
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.resources import Resource

    reader = InMemoryMetricReader()
    host = MeterProvider(resource=Resource.create({"service.name": "host-app"}), metric_readers=[reader])
    metrics.set_meter_provider(host)

    import otel_session
    telemetry = otel_session.configure(service_name="plugin", exporter="file", metrics="file")
    telemetry = otel_session.configure(service_name="plugin", exporter="file", metrics="file")
    logging.getLogger("plugin").warning("exported to our file")
    metrics.get_meter("plugin").create_counter("plugin.calls").add(3)
    telemetry.force_flush()
    data = reader.get_metrics_data()
    names = {m.name: [p.value for p in m.data.data_points]
             for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    print(json.dumps({"host": telemetry.meter_provider is host, "metrics": telemetry.metrics_exporter_name,
                      "names": names, "memory": telemetry.metrics() is None}))
    """
)


def test_attach_mode_registers_on_the_hosts_meter_provider_and_adds_no_reader(tmp_path):
    out = subprocess.run([sys.executable, "-c", HOST], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env=_env(tmp_path))
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["host"] and result["metrics"] == "none" and result["memory"]
    assert result["names"]["otel_session.log.exported"] == [1]  # ours, read by the host's reader
    assert result["names"]["plugin.calls"] == [3]
    assert "otel_session.capture.count" in result["names"]
    assert [p.name for p in tmp_path.iterdir() if "metrics" in p.name] == []  # the host exports metrics
    assert out.stderr.count("configure(metrics='file') ignored") == 1  # warned once, not per call


@pytest.mark.parametrize(("preference", "observable"), [("delta", 1), ("LowMemory", 2), ("", 2)])
def test_the_temporality_preference_is_honoured(tmp_path, preference, observable):
    run(SERVICE, _env(tmp_path, OTEL_SERVICE_NAME="svc", OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=preference),
        json.dumps({"exporter": "file"}))
    points = read_metrics(tmp_path)
    counter = 2 if preference == "" else 1  # a synchronous counter: delta unless cumulative
    assert {p.temporality for p in points["app.joins"]} == {counter}
    assert {p.temporality for p in points["otel_session.log.exported"]} == {observable}
    assert {p.temporality for p in points["otel_session.capture.count"]} == {2}  # up-down: always cumulative


FORK = textwrap.dedent(
    """
    import json, logging, os
    import otel_session

    telemetry = otel_session.configure(service_name="forky", exporter="file")
    logging.getLogger("parent").warning("before the fork")
    telemetry.force_flush()
    child = os.fork()
    if child == 0:
        for n in range(2):
            logging.getLogger("child").warning("child %d", n)
        telemetry.shutdown()
        os._exit(0)
    os.waitpid(child, 0)
    logging.getLogger("parent").warning("after the fork")
    telemetry.shutdown()
    print(json.dumps({"parent": os.getpid(), "child": child}))
    """
)


def test_a_forked_child_writes_its_own_metrics_counting_its_own_exports(tmp_path):
    pids = run(FORK, _env(tmp_path))
    for who, exported in (("parent", 2), ("child", 2)):
        path = tmp_path / f"forky.{pids[who]}.metrics.jsonl"
        points = read_metrics(path)["otel_session.log.exported"]
        assert points[-1].value == exported, who
