import logging

import pytest

from otel_session import parse_level
from otel_session._levels import default_level
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


@pytest.mark.parametrize(("env", "expected"), [
    ({}, logging.INFO),
    ({"OTEL_PYTHON_LOG_LEVEL": "debug"}, logging.DEBUG),
    ({"OTEL_PYTHON_LOG_LEVEL": " "}, logging.INFO),
    ({"GLOBAL_LOG_LEVEL": "DEBUG"}, logging.INFO),  # Open WebUI's variable is the manifold's, not the library's
])
def test_the_process_default_level(env, expected):
    assert default_level(env) == expected


def test_a_bad_process_default_level_is_named():
    with pytest.raises(ValueError, match="OTEL_PYTHON_LOG_LEVEL='loud': invalid log level"):
        default_level({"OTEL_PYTHON_LOG_LEVEL": "loud"})


def test_severity_mapping_matches_the_stdlib_bridge():
    try:
        from opentelemetry.instrumentation.log_utils import std_to_otel
    except ImportError:  # older instrumentation releases keep it beside the handler
        from opentelemetry.instrumentation.logging.handler import std_to_otel  # type: ignore[no-redef]
    for level in range(0, 70):
        assert severity_of(level) == std_to_otel(level).value, level
