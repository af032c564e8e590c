"""The process's metrics: one SDK `MeterProvider` (ours, or a host's in attach mode) with one periodic reader
over a route that every configure() re-points, the way spans follow the logs (docs/library.md#metrics).

The SDK fixes a provider's readers when it is made, and OTel's global provider is set once a process, so the
reader is made once and only its route's target changes: `otlp`, `file` (beside the log files), `console`,
`memory` (what `Telemetry.metrics()` reads) or nowhere.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from opentelemetry import metrics
from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    MeterProvider,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    ConsoleMetricExporter,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource

from otel_session import _instruments
from otel_session._file_exporter import OtlpJsonFileMetricExporter, log_dir

logger = logging.getLogger(__name__)

METRICS_EXPORTERS = ("otlp", "file", "console", "memory", "none")
_FOLLOW = ("otlp", "file")  # the log exporters whose place metrics follow when not told otherwise
REPOINT_FLUSH_MS = 5000  # re-pointing never waits long on an unreachable Collector
Key = tuple[str, str]


def requested(metrics_exporter: str | None) -> str | None:
    """The metrics exporter asked for (the argument, else `OTEL_METRICS_EXPORTER`), or None to follow the
    logs. ValueError naming the choices for anything else, before configure() changes anything."""
    source = "metrics"
    if metrics_exporter is None:
        env = os.environ.get("OTEL_METRICS_EXPORTER", "").strip()
        if not env:
            return None
        names = [n.strip().lower() for n in env.split(",") if n.strip()]
        if len(names) > 1:
            logger.warning("OTEL_METRICS_EXPORTER=%s: only one exporter is supported; using %s", env, names[0])
        metrics_exporter, source = (names[0] if names else ""), "OTEL_METRICS_EXPORTER"
    if not isinstance(metrics_exporter, str):
        raise TypeError(f"metrics must be an exporter name, not {type(metrics_exporter).__name__}")
    name = metrics_exporter.strip().lower()
    if name not in METRICS_EXPORTERS:
        raise ValueError(f"unknown metrics exporter {metrics_exporter!r} ({source}): use one of "
                         f"{', '.join(METRICS_EXPORTERS)}")
    return name


def follow(logs_exporter_name: str) -> str:
    """Where metrics go when nobody said: where the logs go for `otlp` and `file`, else nowhere."""
    return logs_exporter_name if logs_exporter_name in _FOLLOW else "none"


def temporality(env: dict[str, str] | None = None) -> dict[type, AggregationTemporality]:
    """`OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE` (cumulative, delta or lowmemory, as the spec's
    tables say), for our one reader: it is made once, so the OTLP exporter's own reading of it never applies."""
    raw = (env if env is not None else os.environ).get("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "")
    preference = raw.strip().lower() or "cumulative"
    if preference not in ("cumulative", "delta", "lowmemory"):
        logger.warning("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=%s: use cumulative, delta or lowmemory; "
                       "using cumulative", raw)
        preference = "cumulative"
    delta, cumulative = AggregationTemporality.DELTA, AggregationTemporality.CUMULATIVE
    if preference == "cumulative":
        return {}
    return {Counter: delta, Histogram: delta, UpDownCounter: cumulative, ObservableGauge: cumulative,
            ObservableUpDownCounter: cumulative, ObservableCounter: delta if preference == "delta" else cumulative}


class MemoryMetricExporter(MetricExporter):
    """Keeps the latest collection (cumulative, so it holds every value so far), for tests."""

    def __init__(self) -> None:
        super().__init__()
        self.latest: MetricsData | None = None

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: object
               ) -> MetricExportResult:
        self.latest = metrics_data
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: object) -> None:
        pass


class MetricRoute(MetricExporter):
    """The one exporter behind our reader; configure() points it somewhere (or nowhere)."""

    def __init__(self, preferred_temporality: dict[type, AggregationTemporality] | None = None) -> None:
        super().__init__(preferred_temporality=preferred_temporality)
        self.target: MetricExporter | None = None
        self.key: Key | None = None  # what the target writes to

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: object
               ) -> MetricExportResult:
        target = self.target
        return target.export(metrics_data, timeout_millis=timeout_millis) if target is not None \
            else MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        target = self.target
        return target.force_flush(timeout_millis) if target is not None else True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: object) -> None:
        self.point(None, None)

    def point(self, key: Key | None, build: Callable[[], MetricExporter] | None) -> None:
        if key == self.key and self.target is not None:
            return  # the same place: keep the exporter (an OTLP connection, an open file)
        old, self.target, self.key = self.target, build() if build is not None else None, key
        if old is not None:
            old.shutdown()


def target(name: str, service_name: str) -> tuple[Key | None, Callable[[], MetricExporter] | None]:
    """Where metrics go for this exporter name: a key naming the place, and how to build its exporter."""
    if name == "file":
        directory = log_dir()
        return ("file", str(directory.resolve())), lambda: OtlpJsonFileMetricExporter(directory, service_name)
    if name == "otlp":
        def otlp() -> MetricExporter:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

            return OTLPMetricExporter()

        return ("otlp", ""), otlp
    if name == "console":
        return ("console", ""), ConsoleMetricExporter
    if name == "memory":
        return ("memory", ""), MemoryMetricExporter
    return None, None


class Metrics:
    """What this process holds for metrics, across configure() calls (the providers are set once)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # not STATE.lock: a collection runs callbacks, which may log
        self.provider: MeterProvider | None = None
        self.reader: PeriodicExportingMetricReader | None = None
        self.route = MetricRoute()
        self.attached = False  # the provider is a host's: it exports, we add no reader

    def setup(self, resource: Resource) -> MeterProvider:
        """Adopt an SDK MeterProvider someone else set globally; otherwise set ours, once. Our instruments
        are registered on it either way."""
        with self.lock:
            if self.provider is None:
                existing = metrics.get_meter_provider()
                if isinstance(existing, MeterProvider):
                    self.provider, self.attached = existing, True
                else:
                    self.route = MetricRoute(temporality())
                    self.reader = PeriodicExportingMetricReader(self.route)  # OTEL_METRIC_EXPORT_INTERVAL
                    self.provider = MeterProvider(resource=resource, metric_readers=[self.reader])
                    metrics.set_meter_provider(self.provider)
                    if metrics.get_meter_provider() is not self.provider:
                        logger.warning("A MeterProvider that is not the SDK's is set: otel_session's metrics are "
                                       "exported through its own provider (Telemetry.meter_provider) only")
                _instruments.register(self.provider)
            return self.provider

    def point(self, name: str, service_name: str) -> None:
        """Send what the reader collects to this exporter from now on; what it collected so far goes
        where it was meant to first. In a host's provider the host exports: nothing to point."""
        with self.lock:
            if self.reader is None:
                return
            key, build = target(name, service_name)
            if key != self.route.key and self.route.target is not None:
                self.reader.force_flush(REPOINT_FLUSH_MS)
            self.route.point(key, build)

    def collected(self) -> MetricsData | None:
        """A collection made now, when metrics go to `memory`; else None."""
        memory = self.route.target
        if not isinstance(memory, MemoryMetricExporter) or self.reader is None:
            return None
        self.reader.force_flush()
        return memory.latest

    def force_flush(self, timeout_millis: float = 30_000) -> bool:
        provider = self.provider
        if provider is None:
            return True
        try:
            return bool(provider.force_flush(timeout_millis))
        except Exception as exc:  # the SDK raises when a reader failed to collect
            logger.warning("otel_session: could not flush metrics: %s", exc)
            return False


METRICS = Metrics()

__all__ = ["METRICS", "METRICS_EXPORTERS", "MemoryMetricExporter", "MetricRoute", "Metrics", "follow", "requested"]
