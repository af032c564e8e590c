"""One pipeline with a host that owns OpenTelemetry: Open WebUI's shape (tests/helpers/host_openwebui.py),
checked through exporters that serialise at export time."""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers.support import ROOT


def _run_host(**extra: str) -> dict:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}, **extra}
    out = subprocess.run([sys.executable, "-m", "tests.helpers.host_openwebui"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60, check=True)
    return json.loads(out.stdout)


@pytest.fixture(scope="module", params=["host handler first", "ours first"])
def report(request):
    return _run_host(**({"OURS_FIRST": "1"} if request.param == "ours first" else {}))


def _pipe(records):
    return [(r["body"], r["session"]) for r in records if r["logger"] == "function_openai_responses"]


def test_we_attach_to_the_hosts_provider_and_add_no_exporter_of_our_own(report):
    assert report["attached"] is True
    assert report["exporter_name"] == "none" and report["inner"] is False  # its OTLP endpoint is the host's


@pytest.mark.parametrize("exporter", ["batch", "simple"])
def test_the_host_exports_each_record_once_enriched_gated_and_redacted(report, exporter):
    records = report[exporter]
    assert _pipe(records) == [
        ("quiet: upstream refused key [REDACTED]", "quiet"),  # the ERROR session's INFO is gated away
        ("chat: info for everyone", "chat"),  # the capture's DEBUG line stays in the capture
    ]
    assert all("sk-" not in bytes.fromhex(r["raw"]).decode("latin-1") for r in records)
    assert min(r["severity"] for r in records) >= 9  # no DEBUG record of any context reached the host
    bodies = [r["body"] for r in records]
    assert len(bodies) == len(set(bodies))
    assert "another request's debug" not in bodies and "outside any session" not in bodies


def test_the_citation_shows_each_line_once_and_the_hosts_console_what_it_saw_before(report):
    assert report["citation"] == ["chat: debug for the citation only", "chat: info for everyone"]
    assert report["root_level"] == 20
    assert not any(line.startswith("DEBUG") for line in report["console"])
    assert report["duplicates"] > 0  # the second bridge's copies were recognised


@pytest.mark.parametrize("order", ["host handler first", "ours first"])
def test_a_failing_run_flushes_its_held_debug_records_to_the_hosts_exporters_once(order):
    report = _run_host(BUFFER="1", **({"OURS_FIRST": "1"} if order == "ours first" else {}))
    for exporter in ("batch", "simple"):
        # by time: an OTLP batch groups records by scope, and the host's handler and ours name theirs apart
        failing = [r["body"] for r in sorted(report[exporter], key=lambda r: r["time"]) if r["session"] == "fails"]
        assert failing == ["fails: request body keys", "fails: streaming started", "fails: upstream stream broke"]
        assert not [r for r in report[exporter] if r["session"] == "fine"]  # held, then never exported
        assert "outside any session" not in [r["body"] for r in report[exporter]]
        quiet = [r["body"] for r in sorted(report[exporter], key=lambda r: r["time"])
                 if r["session"] == "quiet"]  # at ERROR: its INFO was held
        assert quiet == ["quiet: info below the session's export level", "quiet: upstream refused key [REDACTED]"]
    simple = [r["body"] for r in report["simple"] if r["session"] == "fails"]
    assert simple == ["fails: request body keys", "fails: streaming started", "fails: upstream stream broke"]
    assert "flushed=3" in report["stats"] and "flushes=2" in report["stats"]  # and the chat's DEBUG, captured
    assert "buffered=2" in report["stats"]  # the fine run's and the chat's: buffered until the TTL drops them
    assert not any(line.startswith("DEBUG") for line in report["console"])  # the host's console: as before
