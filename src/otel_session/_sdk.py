"""The one place that leans on OpenTelemetry SDK, API and instrumentation internals: record attributes,
processor order, derived records, the runtime context, `LoggingHandler`'s parts, and the batch queue's drops.
Each use has a public fallback or fails loudly in the SDK-internals tests when a release changes shape (why
each is needed: docs/internals.md).
"""

from __future__ import annotations

import collections
import contextlib
import copy
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor

try:  # public since SDK 1.44
    from opentelemetry.sdk._logs import SynchronousMultiLogRecordProcessor
except ImportError:  # 1.42 (Open WebUI 0.12's pin)
    from opentelemetry.sdk._logs._internal import SynchronousMultiLogRecordProcessor  # type: ignore[attr-defined,no-redef]


def add_attributes(log_record: Any, items: Sequence[tuple[str, str]], longest: int) -> bool:
    """Add attributes the caller did not set itself; never overwrite one it did, and never evict
    one of the caller's to make room (at a count limit ours are added only while there is room).
    True when the record's attributes are now exactly `items` (it had none, and no limit applied)."""
    attributes = log_record.attributes
    if type(attributes) is BoundedAttributes and not attributes._immutable:
        raw = attributes._dict
        maxlen, max_value_len = attributes.maxlen, attributes.max_value_len
        if (type(raw) is dict and (max_value_len is None or longest <= max_value_len)
                and (maxlen is None or len(raw) + len(items) <= maxlen)):
            if not raw:
                raw.update(items)
                return True
            for key, value in items:
                raw.setdefault(key, value)
            return False
    if attributes is None:
        log_record.attributes = dict(items)
        return True
    maxlen = getattr(attributes, "maxlen", None)
    for key, value in items:  # the public path applies the SDK's own value limits
        if key in attributes:
            continue
        if maxlen is not None and len(attributes) >= maxlen:
            break
        attributes[key] = value
    return False


def attributes_copy(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    """A plain dict copy of a record's attributes (without the mapping's lock and iterator copy)."""
    return {} if attributes is None else dict(raw_attributes(attributes))  # type: ignore[arg-type]


def raw_attributes(attributes: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The plain dict inside a record's attributes, to read them without the mapping's lock and
    iterator copy (the caller only reads)."""
    if type(attributes) is BoundedAttributes and type(attributes._dict) is dict:
        return attributes._dict
    return attributes


def derived_record(template: Any, body: str, severity_number: int, severity_text: str,
                   attributes: Mapping[str, Any]) -> Any:
    """A new SDK record like `template` (its time, trace, span, resource and scope) with this body,
    severity and attributes. `ReadWriteLogRecord` is a dataclass over the API `LogRecord` in every
    SDK we support; `dataclasses.replace` runs its `__post_init__`, which bounds the attributes."""
    from opentelemetry._logs import SeverityNumber

    lr = copy.copy(template.log_record)
    lr.body = body
    lr.severity_number = SeverityNumber(severity_number)
    lr.severity_text = severity_text
    lr.attributes = dict(attributes)
    return dataclasses.replace(template, log_record=lr)


# --- the stdlib bridge ---------------------------------------------------------------------------


def logging_handler_parts(handler: Any) -> tuple[Any, Callable[[Any], Any], Any]:
    """What `_handler.BridgeHandler` reuses of the instrumentation's `LoggingHandler`: its recursion
    guard (a ContextVar), its record translation and its provider. TypeError on another shape."""
    guard = getattr(handler, "_is_emitting", None)
    translate = getattr(handler, "_translate", None)
    provider = getattr(handler, "_logger_provider", None)
    if not all(hasattr(guard, name) for name in ("get", "set", "reset")) or not callable(translate) or provider is None:
        raise TypeError("this opentelemetry-instrumentation-logging release's LoggingHandler has an unknown shape "
                        "(_is_emitting, _translate, _logger_provider): otel-session does not support it yet")
    return guard, translate, provider


# --- processor order ---------------------------------------------------------------------------


def multi_processor(provider: LoggerProvider) -> SynchronousMultiLogRecordProcessor | None:
    """The provider's multi-processor, when it has the shape the SDK has had since 1.2x."""
    multi = getattr(provider, "_multi_log_record_processor", None)
    if multi is not None and isinstance(getattr(multi, "_log_record_processors", None), tuple):
        return multi  # type: ignore[no-any-return]
    return None


def put_first(provider: LoggerProvider, gate: Any) -> bool:
    """Make `gate` the only processor the provider calls, with the processors it had (and any
    added later) behind it in `gate.inner`. False when the provider has an unknown shape."""
    multi = multi_processor(provider)
    if multi is None:
        return False
    with multi._lock:
        current = multi._log_record_processors
        if gate in current:
            return True
        behind = SynchronousMultiLogRecordProcessor()  # type: ignore[no-untyped-call]
        for processor in current:
            behind.add_log_record_processor(processor)
        if current:
            gate.host_processors = behind
        multi._log_record_processors = (gate,)

    def add_behind(processor: LogRecordProcessor) -> None:
        behind.add_log_record_processor(processor)
        gate.host_processors = behind

    # Instance attribute: shadows the method for this provider's multi-processor only.
    multi.add_log_record_processor = add_behind  # type: ignore[method-assign, assignment]
    return True


# --- the runtime context -----------------------------------------------------------------------

# Set by the SDK's exporting processors while they export: what is logged then (urllib3 sending the batch)
# is the pipeline's own traffic, and exporting it would feed the export back into itself.
SUPPRESS_KEY: str | None = getattr(otel_context, "_SUPPRESS_INSTRUMENTATION_KEY", None)

_runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
_var = getattr(_runtime, "_current_context", None)
# The ContextVar behind `context.get_current()`, read directly: two Python calls fewer per check.
current_context: Callable[[], Context] = getattr(_var, "get", None) or otel_context.get_current


def watch_attach(on_attach: Callable[[Context], None]) -> bool:
    """Call `on_attach(ctx)` for every context attached by anyone (our scopes, OTel's
    `context.attach`, an instrumentation) before it becomes current. Idempotent."""
    runtime: Any = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    original = getattr(type(runtime), "attach", None) if runtime is not None else None
    if original is None:
        return False

    def attach(ctx: Context) -> Any:
        with contextlib.suppress(Exception):  # never into the caller's attach
            on_attach(ctx)
        return original(runtime, ctx)

    runtime.attach = attach  # an instance attribute: shadows the method, removable
    return True


def unwatch_attach() -> None:
    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    if runtime is not None and "attach" in vars(runtime):
        del runtime.attach


def detach(token: Any) -> bool:
    """Detach like `context.detach`, but say whether it worked: a token reset in another
    contextvars.Context (an async generator closed by another task) fails."""
    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    if runtime is None:
        otel_context.detach(token)
        return True
    try:
        runtime.detach(token)
    except Exception:
        return False
    return True


# --- the batch queue ---------------------------------------------------------------------------


class _CountingMetrics:
    """Stands in for a `BatchProcessor`'s metrics recorder: its queue-full drops are counted too, then passed on."""

    def __init__(self, metrics: Any, on_drop: Callable[[int], None]) -> None:
        self._metrics, self._on_drop = metrics, on_drop

    def drop_items(self, count: int, *args: Any, **kwargs: Any) -> None:
        reason = args[0] if args else kwargs.get("error_type", "queue_full")  # 1.42 passes no reason
        if reason == "queue_full":
            self._on_drop(count)
        self._metrics.drop_items(count, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_metrics", "_on_drop"):  # half-built (a copy): no recursion
            raise AttributeError(name)
        return getattr(self._metrics, name)


def count_queue_drops(processor: Any, on_drop: Callable[[int], None]) -> bool:
    """Call `on_drop(n)` whenever the SDK's `BatchLogRecordProcessor` drops records from its full queue (it has
    no hook of its own: it logs a warning filtered to one per 20 s, and records a metric only when the SDK's
    own metrics are on). False, and nothing changed, on another shape."""
    batch: Any = getattr(processor, "_batch_processor", None)
    metrics = getattr(batch, "_metrics", None)
    if metrics is None or not callable(getattr(metrics, "drop_items", None)):
        return False
    if not isinstance(metrics, _CountingMetrics):
        batch._metrics = _CountingMetrics(metrics, on_drop)
    return True


def queue_length(processor: Any) -> Callable[[], int] | None:
    """How many records wait in the SDK `BatchLogRecordProcessor`'s queue (None on another shape): what is
    left there when its shutdown gives up waiting is never exported."""
    queue = getattr(getattr(processor, "_batch_processor", None), "_queue", None)
    return queue.__len__ if isinstance(queue, collections.deque) else None


def otlp_credential_provider() -> str | None:
    """The credential provider the SDK's OTLP/HTTP log exporter loads its `requests.Session` from (its own
    environment variables, private names), if one is set: then the exporter keeps that session."""
    import os

    from opentelemetry.sdk.environment_variables import (  # type: ignore[attr-defined]
        _OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER,
        _OTEL_PYTHON_EXPORTER_OTLP_HTTP_LOGS_CREDENTIAL_PROVIDER,
    )

    return (os.environ.get(_OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER)
            or os.environ.get(_OTEL_PYTHON_EXPORTER_OTLP_HTTP_LOGS_CREDENTIAL_PROVIDER) or None)
