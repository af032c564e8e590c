"""The log relay: `POST /v1/logs` takes a page's own OTLP/HTTP log export and exports its records through
this gateway's pipeline, under the session its telemetry token names (`bot.telemetry_token`).

What a page sends is what `@opentelemetry/exporter-logs-otlp-http` sends (OTLP JSON, hex ids) or the
protobuf exporter (`application/x-protobuf`, an `ExportLogsServiceRequest`), gzip-compressed or not, with
`Authorization: Bearer <telemetryToken>` from its `POST /join` answer. Each record keeps the page's resource
(its `service.name`, `web-client` when it set none; other attributes kept, bounded), its scope name,
attributes, time, severity, body, trace and span ids; `session.id`, `user.id` and `bot.launch_id` are the
token's, whatever the record said. The records then go through `otel_session`'s processor (the session's
export level, redaction) to the same exporters as the gateway's own records.

Refusals, none of which exports anything: 401 without a valid token (missing, malformed, signed with
another key or tampered, expired), 413 for a body over `BOT_MAX_TELEMETRY_BYTES` (`bot.http.BodyLimit`,
chunked bodies too), 400 for anything that is not an OTLP logs export, 429 with `Retry-After` beyond
`BOT_TELEMETRY_RATE` records a second per token. Each kind is counted and logged at most once a minute,
never with the body or the token.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import zlib
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import DecodeError
from opentelemetry import trace
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.context import Context, get_current
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.sdk._logs import ReadWriteLogRecord
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import INVALID_SPAN, NonRecordingSpan, SpanContext, TraceFlags
from starlette.concurrency import run_in_threadpool

import otel_session
from bot.http import PathLimit
from bot.metrics import GatewayMetrics
from bot.settings import Settings
from bot.telemetry_token import Claims, TokenError, TokenSigner
from otel_session import attach, session
from otel_session.log_reader import Record, decode_request

logger = logging.getLogger(__name__)

RELAY_PATH = "/v1/logs"
DEFAULT_SERVICE = "web-client"
RELAYED_BY = "otel_session.relayed_by"  # resource attribute: the gateway that vouched for the session id
NO_TELEMETRY_RETRY_S = 60  # a gateway without telemetry stays so until it is restarted configured
JSON_TYPES = frozenset({"application/json"})
PROTOBUF_TYPES = frozenset({"application/x-protobuf", "application/protobuf"})

MAX_RESOURCE_ATTRIBUTES = 32
MAX_RECORD_ATTRIBUTES = 128  # the SDK's default LogRecordLimits
MAX_KEY_CHARS = 256
MAX_RESOURCE_VALUE_CHARS = 1024
MAX_SEVERITY_TEXT = 32
MAX_SERVICE_NAME = 256
MAX_BUCKETS = 10_000  # tokens whose rate is tracked at once; the least recently seen is forgotten first
REPORT_EVERY_S = 60.0
INT64 = 2**63

# What the token's claims overwrite on every record, whatever the page said.
SESSION_ID, USER_ID, LAUNCH_ID = "session.id", "user.id", "bot.launch_id"


class NotOtlpBodyError(ValueError):
    """A body that is not an OTLP logs export (400)."""


class TooLargeError(ValueError):
    """A body that is over the cap once decompressed (413)."""


# --- refusals ------------------------------------------------------------------------------------


class Refusals:
    """Counts refusals by kind; logs each kind at most once every `REPORT_EVERY_S`, with the count."""

    WHAT: ClassVar[dict[str, str]] = {
        "missing": "no telemetry token", "malformed": "a malformed telemetry token",
        "signature": "a telemetry token with a bad signature (another key, or tampered)",
        "expired": "an expired telemetry token", "too_large": "a body over the cap",
        "not_otlp": "a body that is not an OTLP logs export", "rate": "over the rate limit",
    }

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._reported: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def refused(self, kind: str, status: int) -> None:
        with self._lock:
            self.counts[kind] += 1
            total = self.counts[kind]
            last = self._reported.get(kind)
            now = time.monotonic()
            if last is not None and now - last[0] < REPORT_EVERY_S:
                return
            self._reported[kind] = (now, total)
            since = total - (last[1] if last else 0)
        # in an empty context: FastAPI attaches the request's own traceparent and baggage, which are the caller's
        with attach(Context()):
            logger.warning("Browser log export refused (%d): %s; %d such refusals since the last report, %d in all",
                           status, self.WHAT.get(kind, kind), since, total)


# --- the rate limit ------------------------------------------------------------------------------


class RateLimit:
    """A token bucket per telemetry token: `rate` records a second, bursts of up to a second's worth.

    A batch bigger than a whole bucket is let through when the bucket is full (and empties it below
    zero), so an exporter's large batch is never refused forever while the average stays at `rate`.
    At most `max_buckets` tokens are tracked; the least recently seen is forgotten first (it starts
    again with a full bucket), so memory stays bounded whatever the number of tokens.
    """

    def __init__(self, rate: float, max_buckets: int = MAX_BUCKETS) -> None:
        self.rate, self.max_buckets = rate, max_buckets
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (level, at)

    def take(self, key: str, count: int, now: float | None = None) -> float:
        """0 when `count` records may go now (and they are taken), else the seconds to wait."""
        now = time.monotonic() if now is None else now
        level, at = self._buckets.pop(key, (self.rate, now))
        level = min(self.rate, level + (now - at) * self.rate)
        needed = min(float(count), self.rate)
        if level >= needed:
            level -= count
            wait = 0.0
        else:
            wait = (needed - level) / self.rate
        self._buckets[key] = (level, now)
        while len(self._buckets) > self.max_buckets:
            self._buckets.popitem(last=False)
        return wait

    def __len__(self) -> int:
        return len(self._buckets)


# --- decoding ------------------------------------------------------------------------------------


def _media_type(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def _gunzip(body: bytes, max_bytes: int) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, max_bytes + 1)
    except zlib.error:
        raise NotOtlpBodyError("the gzip body does not decompress") from None
    if len(out) > max_bytes or inflater.unconsumed_tail:
        raise TooLargeError(f"the body is over {max_bytes} bytes once decompressed")
    if not inflater.eof:
        raise NotOtlpBodyError("the gzip body is truncated")
    return out


def decode(body: bytes, content_type: str, content_encoding: str, max_bytes: int) -> list[Record]:
    """The records of one export, or `NotOtlpBodyError` / `TooLargeError`. Both forms go through the one decoder
    `otel-session logs` reads files with (`decode_request`): protobuf by way of its JSON mapping."""
    encoding = content_encoding.strip().lower()
    if encoding == "gzip":
        body = _gunzip(body, max_bytes)
    elif encoding not in ("", "identity"):
        raise NotOtlpBodyError(f"unsupported Content-Encoding {encoding[:32]!r}")
    media = _media_type(content_type)
    try:
        if media in JSON_TYPES:
            return decode_request(body)
        if media in PROTOBUF_TYPES:
            message = ExportLogsServiceRequest.FromString(body)
            return decode_request(json.dumps(MessageToDict(message, use_integers_for_enums=True)))
    except (ValueError, DecodeError, RecursionError, TypeError) as exc:  # NotOtlpError, json errors: ValueError
        raise NotOtlpBodyError(type(exc).__name__) from None
    raise NotOtlpBodyError(f"unsupported Content-Type {media[:64]!r}: send application/json or application/x-protobuf")


# --- the records ---------------------------------------------------------------------------------


def _text(value: str, limit: int | None = None) -> str:
    """Text that encodes as UTF-8 (JSON may carry lone surrogates), cut at `limit` characters."""
    if limit is not None and len(value) > limit:
        value = value[:limit]
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


def _scalar(value: Any, limit: int | None) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if -INT64 <= value < INT64 else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return _text(value, limit)
    return None


def _value(value: Any, limit: int | None = None) -> Any:
    """An attribute value the SDK keeps and the OTLP encoder writes, at every SDK release we support:
    a scalar, or a list of one scalar type; anything else (a map, a mixed list) as its JSON text."""
    if value is None:
        return None
    if isinstance(value, list):
        items = [_scalar(item, limit) for item in value]
        kinds = {type(item) for item in items}
        if len(kinds) <= 1 and None not in kinds:
            return items
    elif (scalar := _scalar(value, limit)) is not None:
        return scalar
    return _text(json.dumps(value, ensure_ascii=False, default=str), limit)


def _attributes(items: Mapping[str, Any], max_items: int, limit: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, raw in items.items():
        if len(out) >= max_items:
            break
        value = _value(raw, limit)
        if key and value is not None:
            out[_text(key, MAX_KEY_CHARS)] = value
    return out


def _service_name(resource: Mapping[str, Any]) -> str:
    name = resource.get("service.name")
    if not isinstance(name, str) or not name.strip() or name.startswith("unknown_service"):
        return DEFAULT_SERVICE  # the JS SDK's default is `unknown_service`
    if len(name) > MAX_SERVICE_NAME or otel_session.text_error(name):
        return DEFAULT_SERVICE
    return _text(name)


def _severity(number: int) -> SeverityNumber:
    try:
        return SeverityNumber(number)
    except ValueError:
        return SeverityNumber.UNSPECIFIED


def _context(base: Any, record: Record) -> Any:
    """`base` (the token's session, no span) with the record's own trace and span as a remote parent, so
    the record carries the page's ids, and only those."""
    if not record.trace_id:
        return base
    span = SpanContext(int(record.trace_id, 16), int(record.span_id or "0", 16), is_remote=True,
                       trace_flags=TraceFlags(TraceFlags.DEFAULT))
    return trace.set_span_in_context(NonRecordingSpan(span), base)


class Records:
    """Builds SDK records from decoded ones, one resource and one scope object per distinct value."""

    def __init__(self, claims: Claims, relayed_by: str) -> None:
        self.claims, self.relayed_by = claims, relayed_by
        self._resources: dict[tuple[tuple[str, Any], ...], Resource] = {}
        self._scopes: dict[str, InstrumentationScope] = {}

    def resource(self, raw: Mapping[str, Any]) -> Resource:
        key = tuple(sorted((str(k), json.dumps(v, sort_keys=True, default=str)) for k, v in raw.items()))
        found = self._resources.get(key)
        if found is None:
            attributes = _attributes({k: v for k, v in raw.items() if k != "service.name"},
                                     MAX_RESOURCE_ATTRIBUTES - 2, MAX_RESOURCE_VALUE_CHARS)
            attributes.update({"service.name": _service_name(raw), RELAYED_BY: self.relayed_by})
            found = self._resources[key] = Resource(attributes)
        return found

    def scope(self, name: str) -> InstrumentationScope:
        found = self._scopes.get(name)
        if found is None:
            found = self._scopes[name] = InstrumentationScope(_text(name, MAX_KEY_CHARS))
        return found

    def build(self, record: Record, base: Any) -> ReadWriteLogRecord:
        claims = self.claims
        attributes = _attributes(record.attributes, MAX_RECORD_ATTRIBUTES - 3)
        attributes[SESSION_ID] = claims.session_id
        attributes[LAUNCH_ID] = claims.launch_id
        if claims.user_id is not None:
            attributes[USER_ID] = claims.user_id
        else:
            attributes.pop(USER_ID, None)
        now = time.time_ns()
        timestamp = record.time_unix_nano if 0 < record.time_unix_nano < INT64 else now
        api = LogRecord(timestamp=timestamp, observed_timestamp=now, context=_context(base, record),
                        severity_text=_text(record.level, MAX_SEVERITY_TEXT) or None,
                        severity_number=_severity(record.severity_number), body=_text(record.message),
                        attributes=attributes)
        return ReadWriteLogRecord(api, resource=self.resource(record.resource),
                                  instrumentation_scope=self.scope(record.logger))


# --- the endpoint --------------------------------------------------------------------------------


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class LogRelay:
    """`POST /v1/logs` on a gateway. `body_limit` goes to `install_request_limits` (a cap of its own);
    `install(app)` adds the route. The token signer is `app.state.tokens` (set at the app's start). Records
    exported and refusals by kind go to the gateway's metrics (`bot.relay.records`, `bot.relay.refusals`)."""

    path = RELAY_PATH

    def __init__(self, settings: Settings, metrics: GatewayMetrics) -> None:
        self.settings, self.metrics = settings, metrics
        self.refusals = Refusals()
        self.rate = RateLimit(settings.telemetry_rate)
        self.body_limit = PathLimit(settings.max_telemetry_bytes, lambda: self._refused("too_large", 413))

    def _refused(self, kind: str, status: int) -> None:
        self.refusals.refused(kind, status)
        self.metrics.relay_refused(kind)

    def _refuse(self, kind: str, status: int, detail: str, **headers: str) -> JSONResponse:
        self._refused(kind, status)
        return JSONResponse({"detail": detail}, status_code=status, headers=headers or None)

    def _over_rate(self, wait_s: float) -> JSONResponse:
        return self._refuse("rate", 429, f"over {self.settings.telemetry_rate:g} log records a second",
                            **{"Retry-After": str(max(1, math.ceil(wait_s)))})

    def authorize(self, request: Request) -> Claims | JSONResponse:
        token = _bearer(request)
        if token is None:
            return self._refuse("missing", 401, "a telemetry token is required (Authorization: Bearer)",
                                **{"WWW-Authenticate": "Bearer"})
        tokens: TokenSigner = request.app.state.tokens
        try:
            return tokens.verify(token)
        except TokenError as exc:
            return self._refuse(exc.kind, 401, "the telemetry token is not valid" if exc.kind != "expired"
                                else "the telemetry token has expired", **{"WWW-Authenticate": "Bearer"})

    def export(self, records: Iterable[Record], claims: Claims) -> int:
        """Builds the SDK records and hands them to the pipeline's processor (which redacts and applies the
        session's export level); the number handed over."""
        telemetry = otel_session.configured()
        if telemetry is None:
            return 0
        processor = telemetry.processor
        builder = Records(claims, telemetry.service_name or "")
        count = 0
        # the token's session as the records' context: a debug grant for it applies to the page's records too
        with session(session_id=claims.session_id, user_id=claims.user_id, edge=True,
                     extra={LAUNCH_ID: claims.launch_id}):
            # no span of the gateway's own (FastAPI traces each request): a record without the page's trace has none
            ctx = trace.set_span_in_context(INVALID_SPAN, get_current())
            for record in records:
                processor.on_emit(builder.build(record, ctx))
                count += 1
        return count

    def install(self, app: FastAPI) -> None:
        @app.post(RELAY_PATH)
        async def export_logs(request: Request) -> Response:
            claims = self.authorize(request)
            if isinstance(claims, JSONResponse):
                return claims
            # one token per launch: the launch id names the token's bucket. A token in debt is refused before
            # its body is decoded.
            if (wait := self.rate.take(claims.launch_id, 0)) > 0:
                return self._over_rate(wait)
            headers = request.headers
            protobuf = _media_type(headers.get("content-type", "")) in PROTOBUF_TYPES
            body = await request.body()  # bounded already: `body_limit`
            try:
                records = await run_in_threadpool(decode, body, headers.get("content-type", ""),
                                                  headers.get("content-encoding", ""),
                                                  self.settings.max_telemetry_bytes)
            except TooLargeError:
                return self._refuse("too_large", 413, f"the request body is larger than "
                                    f"{self.settings.max_telemetry_bytes} bytes")
            except NotOtlpBodyError:
                return self._refuse("not_otlp", 400, "not an OTLP logs export (application/json or "
                                    "application/x-protobuf ExportLogsServiceRequest)")
            if records and (wait := self.rate.take(claims.launch_id, len(records))) > 0:
                return self._over_rate(wait)
            if otel_session.configured() is None:
                return JSONResponse({"detail": "this gateway exports no telemetry"}, status_code=503,
                                    headers={"Retry-After": str(NO_TELEMETRY_RETRY_S)})
            self.metrics.relay_accepted(await run_in_threadpool(self.export, records, claims))
            if protobuf:
                return Response(ExportLogsServiceResponse().SerializeToString(),
                                media_type="application/x-protobuf")
            return JSONResponse({"partialSuccess": {}})
