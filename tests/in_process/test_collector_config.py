"""`collector-config.yaml` is a Collector config that refers only to components that exist."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import pytest
import yaml

from tests.helpers.support import ROOT

CONFIG = ROOT / "collector-config.yaml"
SECTIONS = ("receivers", "processors", "exporters")

# Component types (the part before an optional `/name`) of the OpenTelemetry Collector contrib
# distribution (otelcol-contrib), from open-telemetry/opentelemetry-collector-releases,
# distributions/otelcol-contrib/manifest.yaml: a small subset, enough for what this config may use.
CONTRIB_TYPES = {
    "receivers": {"otlp", "filelog", "hostmetrics", "prometheus", "nop"},
    "processors": {"memory_limiter", "batch", "attributes", "resource", "resourcedetection", "filter",
                   "transform", "k8sattributes", "redaction", "tail_sampling", "probabilistic_sampler"},
    "exporters": {"file", "debug", "otlp", "otlphttp", "nop", "prometheus", "prometheusremotewrite", "kafka",
                  "loadbalancing"},
}
# Settings of the components used here, from each component's README/config.go in
# open-telemetry/opentelemetry-collector(-contrib).
FILE_EXPORTER_KEYS = {"path", "append", "rotation", "format", "encoding", "compression", "flush_interval",
                      "group_by", "create_directory", "directory_permissions"}
FILE_ROTATION_KEYS = {"max_megabytes", "max_days", "max_backups", "localtime"}
MEMORY_LIMITER_KEYS = {"check_interval", "limit_mib", "spike_limit_mib", "limit_percentage",
                       "spike_limit_percentage"}
BATCH_KEYS = {"timeout", "send_batch_size", "send_batch_max_size", "metadata_keys", "metadata_cardinality_limit"}
DEBUG_KEYS = {"verbosity", "sampling_initial", "sampling_thereafter", "use_internal_logger"}


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    loaded = yaml.safe_load(CONFIG.read_text())
    assert isinstance(loaded, dict)
    return loaded


def _type(component_id: str) -> str:
    return component_id.split("/", 1)[0]


def _settings(config: dict[str, Any], section: str, type_: str) -> list[dict[str, Any]]:
    return [v or {} for k, v in config[section].items() if _type(k) == type_]


def test_pipelines_use_only_defined_components_and_every_defined_one_is_used(config):
    pipelines = config["service"]["pipelines"]
    assert set(pipelines) == {"logs", "traces"}
    used: dict[str, set[str]] = {section: set() for section in SECTIONS}
    for name, pipeline in pipelines.items():
        assert pipeline["receivers"] and pipeline["exporters"], name
        for section in SECTIONS:
            names = pipeline.get(section, [])
            assert len(names) == len(set(names)), f"{name}: {section} listed twice"
            undefined = set(names) - set(config[section])
            assert not undefined, f"pipeline {name} names undefined {section}: {undefined}"
            used[section] |= set(names)
    for section in SECTIONS:
        assert set(config[section]) == used[section], f"defined but unused {section}"


def test_memory_limiter_comes_first_then_batch(config):
    for name, pipeline in config["service"]["pipelines"].items():
        assert pipeline["processors"] == ["memory_limiter", "batch"], name


def test_every_component_type_exists_in_the_contrib_distribution(config):
    for section in SECTIONS:
        for component_id in config[section]:
            assert _type(component_id) in CONTRIB_TYPES[section], f"{section}.{component_id}"


def test_otlp_receiver_listens_on_the_standard_local_ports(config):
    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols == {"grpc": {"endpoint": "localhost:4317"}, "http": {"endpoint": "localhost:4318"}}


def test_processor_and_debug_settings_are_known_ones(config):
    (limiter,) = _settings(config, "processors", "memory_limiter")
    assert set(limiter) <= MEMORY_LIMITER_KEYS
    assert {"check_interval", "limit_mib", "spike_limit_mib"} <= set(limiter)
    assert 0 < limiter["spike_limit_mib"] < limiter["limit_mib"]
    (batch,) = _settings(config, "processors", "batch")
    assert set(batch) <= BATCH_KEYS
    if "send_batch_max_size" in batch:  # the Collector refuses a maximum below the batch size
        assert batch["send_batch_max_size"] >= batch.get("send_batch_size", 8192)
    (debug,) = _settings(config, "exporters", "debug")
    assert set(debug) <= DEBUG_KEYS and debug["verbosity"] == "basic"


def test_file_exporters_write_rotated_otlp_json_and_logs_have_a_file_of_their_own(config):
    files = {k: v for k, v in config["exporters"].items() if _type(k) == "file"}
    for name, settings in files.items():
        assert set(settings) <= FILE_EXPORTER_KEYS, name
        assert settings["format"] == "json", name
        assert set(settings["rotation"]) == FILE_ROTATION_KEYS, name
        rotation = settings["rotation"]
        assert all(isinstance(rotation[k], int) and rotation[k] > 0
                   for k in ("max_megabytes", "max_days", "max_backups")), name
        assert isinstance(rotation["localtime"], bool), name
        assert "append" not in settings  # the Collector refuses append together with rotation
    assert files["file"]["path"] == "./.otel-session/collector/logs.json"
    # One file exporter writes every signal it is given into its one file: the logs file must
    # only ever be fed the logs pipeline, whose output `otel-session logs --dir` reads.
    pipelines = config["service"]["pipelines"]
    feeding = {name for name, p in pipelines.items() if "file" in p["exporters"]}
    assert feeding == {"logs"}
    # and no other file lands under the logs directory, which the reader walks recursively
    logs_file = PurePosixPath(files["file"]["path"])
    others = [PurePosixPath(s["path"]) for name, s in files.items() if name != "file"]
    assert all(not other.is_relative_to(logs_file.parent) for other in others)


def test_header_says_how_to_run_it_and_where_to_point_services():
    header = "".join(line for line in CONFIG.read_text().splitlines(keepends=True) if line.startswith("#"))
    assert "otelcol-contrib --config collector-config.yaml" in header
    assert "otel/opentelemetry-collector-contrib" in header
    assert "OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318" in header
