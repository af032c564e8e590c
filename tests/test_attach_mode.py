"""One pipeline with a host that owns OpenTelemetry: Open WebUI's shape (tests/host_openwebui.py),
checked through exporters that serialise at export time."""

import json
import os
import subprocess
import sys

import pytest

from tests.support import ROOT


@pytest.fixture(scope="module", params=["host handler first", "ours first"])
def report(request):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    if request.param == "ours first":
        env["OURS_FIRST"] = "1"
    out = subprocess.run([sys.executable, "-m", "tests.host_openwebui"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60, check=True)
    return json.loads(out.stdout)


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
