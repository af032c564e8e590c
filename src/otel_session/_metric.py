"""`MetricPoint`: one data point as read from an OTLP-JSON metrics line, plain and frozen, beside `Record`
for logs and `Span` for spans, so tests and tools read our `*.metrics.jsonl` and a Collector's metrics file alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from otel_session._record import EMPTY

SUM, GAUGE, HISTOGRAM, EXPONENTIAL_HISTOGRAM, SUMMARY = "sum", "gauge", "histogram", "exponential_histogram", "summary"
# The OTLP JSON field of each kind of metric, and the kind it is read as.
KIND_FIELDS = {"sum": SUM, "gauge": GAUGE, "histogram": HISTOGRAM, "exponentialHistogram": EXPONENTIAL_HISTOGRAM,
               "summary": SUMMARY}
DELTA, CUMULATIVE = 1, 2  # OTLP's AggregationTemporality
TEMPORALITY_ENUM_NAMES = {"AGGREGATION_TEMPORALITY_UNSPECIFIED": 0, "AGGREGATION_TEMPORALITY_DELTA": DELTA,
                          "AGGREGATION_TEMPORALITY_CUMULATIVE": CUMULATIVE}


@dataclass(frozen=True, slots=True)
class MetricPoint:
    """One data point of metric `name`. `value` is a sum's or gauge's number, and a histogram's or summary's
    sum (None when it has none); `count`, `bucket_counts`, `explicit_bounds`, `min` and `max` are a histogram's.
    `temporality` is OTLP's (1 delta, 2 cumulative; 0 for gauges)."""

    name: str
    kind: str
    value: int | float | None
    attributes: Mapping[str, Any] = field(default_factory=lambda: EMPTY)
    time_unix_nano: int = 0
    start_time_unix_nano: int = 0
    unit: str = ""
    monotonic: bool = False
    temporality: int = 0
    count: int = 0
    bucket_counts: tuple[int, ...] = ()
    explicit_bounds: tuple[float, ...] = ()
    min: float | None = None
    max: float | None = None
    service: str = ""
    resource: Mapping[str, Any] = field(default_factory=lambda: EMPTY)
    scope: str = ""


__all__ = ["CUMULATIVE", "DELTA", "EXPONENTIAL_HISTOGRAM", "GAUGE", "HISTOGRAM", "KIND_FIELDS", "SUM", "SUMMARY",
           "TEMPORALITY_ENUM_NAMES", "MetricPoint"]
