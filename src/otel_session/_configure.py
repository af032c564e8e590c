"""`configure()`: the one place that builds providers, the stdlib bridge, exporters and the patches,
and the only importer of the live wing. First call sets (or adopts) OTel's set-once providers; later
calls re-point the same processor. Attach mode, span export and metrics: docs/library.md.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from opentelemetry import trace
from opentelemetry._logs import get_logger_provider, set_logger_provider
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor
from opentelemetry.sdk._logs import LoggingHandler as SdkLoggingHandler
from opentelemetry.sdk._logs.export import (
    ConsoleLogRecordExporter,
    InMemoryLogRecordExporter,
    LogRecordExporter,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricsData
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from otel_session import _diagnostics, _sdk, _stdlib
from otel_session._buffer import BufferSettings, BufferStats
from otel_session._export_guard import (
    COUNTS,
    Attempts,
    CountingExporter,
    ExportStats,
    RetryingExporter,
    batch_processor,
    observed_session,
)
from otel_session._file_exporter import OtlpJsonFileExporter, OtlpJsonFileSpanExporter, log_dir
from otel_session._handler import BridgeHandler
from otel_session._levels import default_level, parse_level
from otel_session._meter import METRICS
from otel_session._meter import follow as _follow_logs
from otel_session._meter import requested as _metrics_requested
from otel_session._processor import SessionLogProcessor
from otel_session._signing import ENV_KEY, key_bytes
from otel_session._state import DEFAULT_BAGGAGE_KEYS, STATE

logger = logging.getLogger(__name__)

EXPORTERS = ("otlp", "file", "console", "memory", "none")
_SYNCHRONOUS = (InMemoryLogRecordExporter, ConsoleLogRecordExporter)  # tests and terminals want them now


@dataclass
class Telemetry:
    """What `configure()` built; `memory_exporter` is set for the `memory` exporter."""

    service_name: str
    exporter_name: str
    logger_provider: LoggerProvider
    tracer_provider: TracerProvider | None
    processor: SessionLogProcessor
    exporter: LogRecordExporter | None
    memory_exporter: InMemoryLogRecordExporter | None = None
    attached: bool = False  # True when the providers were someone else's
    _owned: bool = field(default=False, repr=False)
    span_processor: BatchSpanProcessor | None = None  # span export (OTLP or file), when configure() added it
    meter_provider: MeterProvider | None = None  # ours, or the host's (attach mode: it exports)
    metrics_exporter_name: str = "none"  # where our reader sends metrics: otlp, file, console, memory, none

    @property
    def current(self) -> bool:
        """Whether this is what the latest `configure()` built (an earlier handle is stale)."""
        return _built.telemetry is self

    def stats(self) -> BufferStats:
        """What the debug buffer holds now, and what it flushed, dropped and evicted (`_buffer`)."""
        return STATE.buffer.stats()

    def metrics(self) -> MetricsData | None:
        """The metrics as the SDK collects them now (every value so far: cumulative), when they go to
        `memory` (`configure(metrics="memory")`, for tests); else None."""
        return METRICS.collected()

    def export_stats(self) -> ExportStats:
        """Records exported, and lost on the way out (the batch queue full, batches given up), by every
        exporting processor configure() built in this process (`_export_guard`; docs/collector.md)."""
        return COUNTS.stats()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        spans = self.span_processor.force_flush(timeout_millis) if self.span_processor is not None else True
        logs = self.processor.force_flush(timeout_millis)
        return METRICS.force_flush(timeout_millis) and logs and spans

    def shutdown(self) -> None:
        """Flush and close this pipeline's exporter, and take out what configure() put into the process
        (our root handler, the stdlib patches, the attach watcher, the live wing); a later `configure()`
        builds them again.

        Only the current handle may do this: a handle from an earlier `configure()` no longer owns
        the pipeline, so shutting it down does nothing but warn. The span processor and the metrics are only
        flushed: they live as long as the process's providers (which shut them down at exit)."""
        with STATE.lock:
            if not self.current:
                logger.warning("Telemetry.shutdown() on the handle of an earlier configure() ignored: "
                               "only the current handle (the latest configure()'s) can shut the pipeline down")
                return
            inner, self.processor.inner = self.processor.inner, None
            root = logging.getLogger()
            for handler in [h for h in root.handlers if isinstance(h, BridgeHandler)]:
                root.removeHandler(handler)
            reset()
        if inner is not None:
            inner.shutdown()
        if self.span_processor is not None:
            self.span_processor.force_flush()
        METRICS.force_flush()


class _SpanRoute(SpanExporter):
    """The one exporter behind our span processor: where spans go follows the logs' exporter (`otlp` to the
    Collector, `file` beside the log files), re-pointed by each configure(); any other exporter drops them."""

    def __init__(self) -> None:
        self.target: SpanExporter | None = None
        self.key: tuple[str, str] | None = None  # what the target writes to

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        target = self.target
        return target.export(spans) if target is not None else SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        target = self.target
        return target.force_flush(timeout_millis) if target is not None else True

    def shutdown(self) -> None:
        self.point(None, None)

    def point(self, key: tuple[str, str] | None, build: Callable[[], SpanExporter] | None) -> None:
        if key == self.key and self.target is not None:
            return  # the same place: keep the exporter (an OTLP connection, an open file)
        old, self.target, self.key = self.target, build() if build is not None else None, key
        if old is not None:
            old.shutdown()


class _Built:
    """What configure() built and must remember across calls (OTel's providers are set once)."""

    def __init__(self) -> None:
        self.telemetry: Telemetry | None = None
        self.own_tracer_provider: TracerProvider | None = None
        self.span_processor: BatchSpanProcessor | None = None
        self.span_route = _SpanRoute()
        self.warned_names: set[str] = set()
        self.warned_metrics = False


_built = _Built()


def configured() -> Telemetry | None:
    """What the last `configure()` built in this process, or None: code that may be loaded many
    times (an Open WebUI function) configures only when nobody has."""
    return _built.telemetry


def reset() -> None:
    """Back to the library's defaults, as before configure() (for tests): no captures, no redaction,
    the default baggage keys, no signing key, the buffer and the live wing off, the stdlib and the
    runtime context unpatched. OTel's providers and our processor stay (they are set once a process):
    the next configure() re-points them."""
    with STATE.lock:
        STATE.reset()
        _stdlib.uninstall()


def _exporter_name(exporter: str | None, attached: bool = False) -> str:
    if exporter is None:
        env = os.environ.get("OTEL_LOGS_EXPORTER", "").strip()
        if env:
            names = [n.strip().lower() for n in env.split(",") if n.strip()]
            if len(names) > 1:
                logger.warning("OTEL_LOGS_EXPORTER=%s: only one exporter is supported; using %s", env, names[0])
            exporter = names[0] if names else ""
        elif attached:
            exporter = "none"  # the host exports; its OTLP endpoint is not a request for a second exporter
        elif os.environ.get("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            exporter = "otlp"
        else:
            exporter = "file"
    name = exporter.strip().lower()
    if name not in EXPORTERS:
        raise ValueError(f"unknown log exporter {exporter!r}: use one of {', '.join(EXPORTERS)}")
    return name


def _build_pipeline(
    exporter: str | LogRecordExporter | None, service_name: str, attached: bool
) -> tuple[str, LogRecordExporter | None, LogRecordProcessor | None, bool]:
    """(name, exporter, exporting processor, whether we own the exporter)."""
    if isinstance(exporter, LogRecordExporter):
        name = type(exporter).__name__
        processor = (SimpleLogRecordProcessor(CountingExporter(exporter, name)) if isinstance(exporter, _SYNCHRONOUS)
                     else batch_processor(exporter, name))
        return name, exporter, processor, False
    if exporter is not None and not isinstance(exporter, str):
        raise TypeError(f"exporter must be a name or a LogRecordExporter, not {type(exporter).__name__}")
    name = _exporter_name(exporter, attached)
    built: LogRecordExporter
    if name == "none":
        return name, None, None, True
    if name == "memory":
        built = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
        return name, built, SimpleLogRecordProcessor(CountingExporter(built, name)), True
    if name == "console":
        built = ConsoleLogRecordExporter()
        return name, built, SimpleLogRecordProcessor(CountingExporter(built, name)), True
    if name == "file":
        built = OtlpJsonFileExporter(log_dir(), service_name)
    else:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

        attempts = None if _sdk.otlp_credential_provider() else Attempts()  # ours would replace its session
        session = observed_session(attempts) if attempts is not None else None
        built = RetryingExporter(OTLPLogExporter(session=session), COUNTS, attempts=attempts)  # across a blink
    return name, built, batch_processor(built, name), True


_REPOINT_FLUSH_MS = 5000  # re-pointing never waits long on an unreachable Collector
_Target = tuple[tuple[str, str] | None, Callable[[], SpanExporter] | None]


def _span_target(exporter_name: str, service_name: str) -> _Target:
    """Where spans go for this log exporter (a key naming the place, and how to build its exporter)."""
    if exporter_name == "file":
        directory = log_dir()
        return ("file", str(directory.resolve())), lambda: OtlpJsonFileSpanExporter(directory, service_name)
    if exporter_name == "otlp":
        def otlp() -> SpanExporter:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            return OTLPSpanExporter()

        return ("otlp", ""), otlp
    return None, None


def _export_spans(exporter_name: str, service_name: str) -> BatchSpanProcessor | None:
    """Point our span exporter where the logs go; add its processor once, to our own TracerProvider only,
    the first time the logs go to `otlp` or `file`. The SDK cannot remove a span processor: a later
    exporter that writes no spans re-points it to nowhere."""
    if os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none" or _built.own_tracer_provider is None:
        return _built.span_processor
    key, build = _span_target(exporter_name, service_name)
    if _built.span_processor is None:
        if build is None:
            return None
        _built.span_processor = BatchSpanProcessor(_built.span_route)
        _built.own_tracer_provider.add_span_processor(_built.span_processor)
    elif key != _built.span_route.key:
        _built.span_processor.force_flush(_REPOINT_FLUSH_MS)  # what was queued goes where it was meant to
    _built.span_route.point(key, build)
    return _built.span_processor


def _install_handler(provider: LoggerProvider) -> None:
    root = logging.getLogger()
    if any(isinstance(h, (LoggingHandler, SdkLoggingHandler)) for h in root.handlers):
        return
    root.addHandler(BridgeHandler(provider))


def _providers(resource: Resource) -> tuple[LoggerProvider, TracerProvider | None, bool]:
    """Adopt SDK providers someone else set globally; otherwise set ours."""
    attached = False
    existing = get_logger_provider()
    if isinstance(existing, LoggerProvider):
        logger_provider, attached = existing, True
    else:
        logger_provider = LoggerProvider(resource=resource)
        set_logger_provider(logger_provider)
    existing_tracer = trace.get_tracer_provider()
    if isinstance(existing_tracer, TracerProvider):
        tracer_provider = existing_tracer
    else:
        tracer_provider = TracerProvider(resource=resource)
        trace.set_tracer_provider(tracer_provider)
        if trace.get_tracer_provider() is not tracer_provider:  # someone else's non-SDK provider
            tracer_provider = None
        else:
            _built.own_tracer_provider = tracer_provider
    return logger_provider, tracer_provider, attached


def _set_default_level(level: str | int | None, first: bool) -> None:
    """The process default (`level`, else `OTEL_PYTHON_LOG_LEVEL`, else INFO), set once on the root
    logger as `basicConfig(level=)` would; after that the app's own configuration stands."""
    root = logging.getLogger()
    if level is not None:
        root.setLevel(parse_level(level))
    elif first and root.level == logging.WARNING:  # the stdlib's untouched default
        root.setLevel(default_level())


def configure(
    service_name: str | None = None,
    exporter: str | LogRecordExporter | None = None,
    level: str | int | None = None,
    *,
    baggage_keys: Sequence[str] | None = None,
    capture_max_records: int | None = None,
    capture_max_bytes: int | None = None,
    capture_max_open: int | None = None,
    capture_idle_ttl_s: float | None = None,
    redis_url: str | None = None,
    signing_key: str | bytes | None = None,
    buffer_level: str | int | None = None,
    buffer_max_bytes: int | None = None,
    buffer_ttl_s: float | None = None,
    metrics: str | None = None,
) -> Telemetry:
    """Set up (or re-point) session-scoped logging for this process; safe to call repeatedly.

    `redis_url` (or `OTEL_SESSION_REDIS_URL`): honour the live debug grants held there
    (`otel_session.grants`); any form of `otel_session.live.urls` (one Redis, Sentinel, Cluster). A malformed
    URL is a ValueError here; an unreachable Redis is retried in the background, never an error here.

    `signing_key` (or `OTEL_SESSION_SIGNING_KEY`): levels travelling in baggage count only when
    signed with it (`_signing`); once set it stays until another key is given (or `reset()`).

    `level`: the process default on the root logger; not given, the first call sets
    `OTEL_PYTHON_LOG_LEVEL`, else INFO, if the root logger is still at the stdlib's default.

    `buffer_level` (or `OTEL_SESSION_BUFFER_LEVEL`; "OFF" turns it off): the debug buffer keeps records
    below their export level, from this level up, per trace, and exports them only if the trace fails;
    `buffer_max_bytes` bounds the process, `buffer_ttl_s` how long a record is buffered.
    Not given: the environment, else what is set now (off by default).

    `metrics` (or `OTEL_METRICS_EXPORTER`): where the library's metrics (and any instrument on
    `Telemetry.meter_provider`) go: `otlp`, `file`, `console`, `memory` or `none`. Not given: where the logs
    go for `otlp` and `file`, else nowhere. In a host's SDK MeterProvider the host exports them."""
    metrics_asked = _metrics_requested(metrics)  # validate before anything changes
    if level is not None:
        parse_level(level)  # validate before anything changes
    elif _built.telemetry is None and logging.getLogger().level == logging.WARNING:
        default_level()  # a bad OTEL_PYTHON_LOG_LEVEL is refused before anything changes
    signing = signing_key if signing_key is not None else os.environ.get(ENV_KEY, "").strip() or None
    if signing is not None:
        key_bytes(signing)  # validate before anything changes
    buffering = BufferSettings.merged(STATE.buffer.settings, buffer_level, buffer_max_bytes, buffer_ttl_s)
    live_url = redis_url or os.environ.get("OTEL_SESSION_REDIS_URL")
    if live_url:
        from otel_session.live.urls import parse

        parse(live_url)  # a bad URL (RedisURLError, password hidden) is refused before anything changes
    limits = {
        k: v
        for k, v in {
            "capture_max_records": capture_max_records,
            "capture_max_bytes": capture_max_bytes,
            "capture_max_open": capture_max_open,
            "capture_idle_ttl_s": capture_idle_ttl_s,
        }.items()
        if v is not None
    }
    with STATE.lock:
        STATE.captures.set_limits(**limits)  # validates before anything changes
        if baggage_keys is not None:
            STATE.set_baggage_keys(baggage_keys)
        if signing is not None:
            STATE.set_signing_key(signing)
        name = service_name or os.environ.get("OTEL_SERVICE_NAME") or None
        current = _built.telemetry
        first = current is None
        if current is None:
            resource = Resource.create({SERVICE_NAME: name} if name else {})
            logger_provider, tracer_provider, attached = _providers(resource)
            actual = str(logger_provider.resource.attributes.get(SERVICE_NAME, "unknown_service"))
            processor = SessionLogProcessor()
            processor.attached = attached
            if not _sdk.put_first(logger_provider, processor):
                logger.warning("This LoggerProvider has an unknown shape: processors on it run before ours "
                               "and export records unenriched and ungated")
                logger_provider.add_log_record_processor(processor)
        else:
            logger_provider, tracer_provider = current.logger_provider, current.tracer_provider
            attached, processor, actual = current.attached, current.processor, current.service_name
        exporter_name, built, inner, owned = _build_pipeline(exporter, actual, attached)
        old, old_owned = (current.processor.inner, current._owned) if current else (None, False)
        processor.inner = inner
        if old is not None:
            old.force_flush()
            if old_owned:
                old.shutdown()
        span_processor = _export_spans(exporter_name, actual)
        meter_provider = METRICS.setup(logger_provider.resource)
        metrics_name = metrics_asked or _follow_logs(exporter_name)
        if METRICS.attached:
            if metrics_asked not in (None, "none") and not _built.warned_metrics:
                _built.warned_metrics = True
                logger.warning("configure(metrics=%r) ignored: the host's MeterProvider exports this process's "
                               "metrics", metrics_asked)
            metrics_name = "none"
        _install_handler(logger_provider)
        _diagnostics.install()
        STATE.route_buffered = _stdlib.route_buffered
        STATE.start()
        _stdlib.install()
        _set_default_level(level, first)
        STATE.set_buffer(buffering)
        if live_url:
            from otel_session.live.plug import RedisLive

            STATE.plug(RedisLive(STATE, live_url, os.environ.get("OTEL_SESSION_REDIS_PREFIX", ""), actual))
        if name and name != actual and name not in _built.warned_names:
            _built.warned_names.add(name)  # once per name: a reloaded plugin calls this on every load
            logger.warning(
                "configure(service_name=%r) ignored: this process already logs as %r "
                "(the resource is fixed by the first configure() or the host's provider)", name, actual,
            )
        _built.telemetry = Telemetry(
            service_name=actual,
            exporter_name=exporter_name,
            logger_provider=logger_provider,
            tracer_provider=tracer_provider,
            processor=processor,
            exporter=built,
            memory_exporter=built if isinstance(built, InMemoryLogRecordExporter) else None,
            attached=attached,
            _owned=owned,
            span_processor=span_processor,
            meter_provider=meter_provider,
            metrics_exporter_name=metrics_name,
        )
        telemetry = _built.telemetry
    METRICS.point(metrics_name, actual)  # outside STATE.lock: flushing runs callbacks, which may log
    return telemetry


__all__ = ["DEFAULT_BAGGAGE_KEYS", "EXPORTERS", "Telemetry", "configure", "configured", "reset"]
