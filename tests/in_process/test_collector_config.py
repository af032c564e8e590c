"""`collector-config.yaml` is a Collector config that refers only to components that exist."""

from __future__ import annotations

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
    assert set(pipelines) == {"logs", "traces", "metrics"}
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


def test_otlp_receiver_listens_on_the_standard_loopback_ports_unless_the_environment_moves_them(config):
    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols == {"grpc": {"endpoint": "${env:OTEL_SESSION_COLLECTOR_GRPC:-127.0.0.1:4317}"},
                         "http": {"endpoint": "${env:OTEL_SESSION_COLLECTOR_HTTP:-127.0.0.1:4318}"}}


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


def test_file_exporters_write_rotated_otlp_json_each_signal_to_a_file_of_its_own(config):
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
    directory = "${env:OTEL_SESSION_COLLECTOR_DIR:-./.otel-session/collector}"
    assert {name: s["path"] for name, s in files.items()} == {
        f"file/{signal}": f"{directory}/{signal}.json" for signal in ("logs", "traces", "metrics")}
    # One file exporter writes every signal it is given into its one file: each is fed by its own pipeline only,
    # so logs.json holds records, traces.json spans and metrics.json metrics (which the log readers pass over).
    pipelines = config["service"]["pipelines"]
    for name in files:
        feeding = {pipeline for pipeline, p in pipelines.items() if name in p["exporters"]}
        assert feeding == {name.split("/")[1]}, name


def test_header_says_how_to_run_it_and_where_to_point_services():
    words = " ".join(line.lstrip("#").strip() for line in CONFIG.read_text().splitlines() if line.startswith("#"))
    words = " ".join(words.split())  # as prose, whatever the wrapping
    assert "make collector" in words and "--config collector-config.yaml" in words
    assert "In a container, listen on 0.0.0.0" in words
    assert "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318" in words
