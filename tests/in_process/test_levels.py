import logging

import pytest

from manifold.openai_responses_manifold import INHERIT, resolve_level
from otel_session import parse_level
from otel_session._severity import severity_of


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("DEBUG", 10), ("debug", 10), (" Info ", 20), ("WARN", 30), ("warning", 30), ("Error", 40),
        ("CRITICAL", 50), ("fatal", 50), ("NOTSET", 0), (15, 15), ("25", 25), (0, 0),
    ],
)
def test_parse_level_accepts_names_any_case_warn_and_numbers(value, expected):
    assert parse_level(value) == expected


@pytest.mark.parametrize("value", ["verbose", "", "INFOO", -1, 101, True, "1e3"])
def test_parse_level_rejects_invalid_values_listing_the_valid_ones(value):
    with pytest.raises(ValueError) as err:
        parse_level(value)
    assert "DEBUG, INFO, WARNING (or WARN), ERROR, CRITICAL" in str(err.value)


def test_parse_level_rejects_non_level_types():
    with pytest.raises(TypeError):
        parse_level(1.5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("user", "valve", "env", "expected"),
    [
        ("DEBUG", "ERROR", {"GLOBAL_LOG_LEVEL": "WARNING"}, logging.DEBUG),  # user wins
        (INHERIT, "ERROR", {"GLOBAL_LOG_LEVEL": "WARNING"}, logging.ERROR),  # INHERIT -> valve
        ("inherit", "warn", {}, logging.WARNING),  # any case
        (None, None, {"GLOBAL_LOG_LEVEL": "debug"}, logging.DEBUG),  # env override
        (None, INHERIT, {"GLOBAL_LOG_LEVEL": "ERROR"}, logging.ERROR),
        ("", "", {}, logging.INFO),  # nothing set -> INFO
        (None, None, {}, logging.INFO),
        (35, None, {}, 35),  # ints
        (None, 5, {}, 5),
    ],
)
def test_resolve_level_order(user, valve, env, expected):
    assert resolve_level(user, valve, env=env) == expected


def test_resolve_level_reads_the_process_environment_by_default(monkeypatch):
    monkeypatch.setenv("GLOBAL_LOG_LEVEL", "ERROR")
    assert resolve_level() == logging.ERROR
    monkeypatch.delenv("GLOBAL_LOG_LEVEL")
    assert resolve_level() == logging.INFO


@pytest.mark.parametrize(
    ("user", "valve", "env"), [("loud", None, {}), (None, "quiet", {}), (None, None, {"GLOBAL_LOG_LEVEL": "x"})]
)
def test_resolve_level_rejects_invalid_names(user, valve, env):
    with pytest.raises(ValueError, match="invalid log level"):
        resolve_level(user, valve, env=env)


def test_severity_mapping_matches_the_stdlib_bridge():
    try:
        from opentelemetry.instrumentation.log_utils import std_to_otel
    except ImportError:  # older instrumentation releases keep it beside the handler
        from opentelemetry.instrumentation.logging.handler import std_to_otel  # type: ignore[no-redef]
    for level in range(0, 70):
        assert severity_of(level) == std_to_otel(level).value, level
