"""W3C `traceparent` + `baggage` over HTTP headers, job payloads and environment variables.

Extraction never raises: it starts from an empty Context, enforces the W3C baggage limits,
validates the values this package gives meaning to, and says what it dropped in one warning.
Baggage is parsed here rather than by OTel's propagator so that a hostile header costs one
warning, not one per member, and a property (`;k=v`) never sticks to an id.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from typing import Any, Protocol
from urllib.parse import quote, unquote_plus

from opentelemetry import baggage
from opentelemetry.context import Context
from opentelemetry.trace import get_current_span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from otel_session._validation import entry_error

logger = logging.getLogger(__name__)

MAX_ENTRIES = 180
MAX_ENTRY_BYTES = 4096
MAX_BAGGAGE_BYTES = 8192
MAX_RAW_BYTES = 65536  # beyond this a header is not even split
MAX_TRACESTATE_BYTES = 512

TRACEPARENT, TRACESTATE, BAGGAGE = "traceparent", "tracestate", "baggage"
PAYLOAD_FIELD = "otel"

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# baggage-octet minus '%' (the escape) and '+' (OTel Python decodes it as a space)
_SAFE = "".join(
    chr(c) for c in range(0x21, 0x7F) if chr(c) not in ' ",;\\%+'
)
_trace = TraceContextTextMapPropagator()


# -- inject ---------------------------------------------------------------------------------


def _encode_baggage(ctx: Context | None) -> str:
    members = []
    for key, value in baggage.get_all(ctx).items():
        if _TOKEN.fullmatch(key):
            members.append(f"{key}={quote(str(value), safe=_SAFE)}")
    return ",".join(members)


def _fields(ctx: Context | None) -> dict[str, str]:
    out: dict[str, str] = {}
    _trace.inject(out, context=ctx)
    encoded = _encode_baggage(ctx)
    if encoded:
        out[BAGGAGE] = encoded
    return {k: v for k, v in out.items() if v}


def _fill(carrier: MutableMapping[str, str], fields: Mapping[str, str], names: Iterable[str]) -> None:
    for name in names:  # a stale value from an earlier hop must not survive
        carrier.pop(name, None)
    carrier.update(fields)


def inject_headers(
    headers: MutableMapping[str, str], context: Context | None = None
) -> MutableMapping[str, str]:
    """Write `traceparent`, `tracestate` and `baggage` of `context` (default: current) into headers."""
    _fill(headers, _fields(context), (TRACEPARENT, TRACESTATE, BAGGAGE))
    return headers


def inject_env(
    env: MutableMapping[str, str], context: Context | None = None
) -> MutableMapping[str, str]:
    """Write `TRACEPARENT`, `TRACESTATE` and `BAGGAGE` into a child process's environment dict.

    Names follow the OpenTelemetry environment-carrier spec; an absent value is an absent
    variable, never an empty string.
    """
    fields = {k.upper(): v for k, v in _fields(context).items()}
    _fill(env, fields, (TRACEPARENT.upper(), TRACESTATE.upper(), BAGGAGE.upper()))
    return env


def inject_payload(payload: Mapping[str, Any], context: Context | None = None) -> dict[str, Any]:
    """A copy of a job payload with an `otel` field holding the W3C fields."""
    if not isinstance(payload, Mapping):
        raise TypeError(f"inject_payload() takes a mapping, not {type(payload).__name__}")
    return {**payload, PAYLOAD_FIELD: _fields(context)}


# -- extract --------------------------------------------------------------------------------


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(x, (str, bytes)) for x in value):
        parts = [_text(x) for x in value]
        return ",".join(p for p in parts if p)
    return None


class HeadersWithItems(Protocol):
    """Anything with `items()`: Mappings, Starlette's `Headers`, `http.client.HTTPMessage`."""

    def items(self) -> Iterable[Any]: ...


# What `extract_headers` reads; anything else is refused with a warning, never an exception.
Headers = HeadersWithItems | Sequence[tuple[Any, Any]]

_FIELDS = (TRACEPARENT, TRACESTATE, BAGGAGE)
# Every value of a repeated header: Starlette/werkzeug/Django, email.message/HTTPMessage, multidict.
_MULTI_GETTERS = ("getlist", "get_all", "getall")


def _multi_get(headers: object, name: str) -> list[object]:
    for attr in _MULTI_GETTERS:
        getter = getattr(headers, attr, None)
        if callable(getter):
            try:
                values = getter(name)
            except Exception:  # multidict's getall raises KeyError; a getter with another signature
                return []
            if isinstance(values, (str, bytes)):
                return [values]
            return list(values) if isinstance(values, (list, tuple)) else []
    return []


def _header_values(headers: object, problems: list[str]) -> dict[str, list[object]] | None:
    """Every value of each field, names matched case-insensitively; None when `headers` is not headers.

    A multi-valued getter comes first because some multi-dicts show one value per name in `items()`;
    the scan of pairs then finds what a case-sensitive getter missed (and reads ASGI's raw list).
    """
    found: dict[str, list[object]] = {name: [] for name in _FIELDS}
    pairs: Iterable[Any]
    if isinstance(headers, (list, tuple)):
        pairs = headers
    elif not isinstance(headers, (str, bytes)) and callable(getattr(headers, "items", None)):
        for name in _FIELDS:
            found[name] = _multi_get(headers, name)
        if all(found.values()):
            return found
        pairs = headers.items()  # type: ignore[attr-defined]
    else:
        return None
    missing = {name for name, values in found.items() if not values}
    malformed = 0
    try:
        for pair in pairs:
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                malformed += 1
                continue
            key = pair[0]
            if isinstance(key, bytes):
                key = key.decode("latin-1")
            if isinstance(key, str) and (name := key.lower()) in missing:
                found[name].append(pair[1])
    except Exception as exc:  # a headers object whose items() fails part-way
        problems.append(f"headers not readable ({type(exc).__name__})")
    if malformed:
        problems.append(f"{malformed} header entries that are not (name, value) pairs")
    return found


def _joined(name: str, values: list[object], problems: list[str]) -> str | None:
    """All values of one field joined with commas, as W3C says repeated headers combine."""
    texts = []
    for value in values:
        text = _text(value)
        if text is None:
            problems.append(f"{name} is a {type(value).__name__}, not text")
        elif text:
            texts.append(text)
    return ",".join(texts) if texts else None


def _parse_baggage(raw: str, problems: list[str]) -> dict[str, str]:
    if len(raw) > MAX_RAW_BYTES:
        problems.append(f"baggage header of {len(raw)} bytes (limit {MAX_BAGGAGE_BYTES}) ignored")
        return {}
    entries: dict[str, str] = {}
    total = 0
    over_count = over_total = 0
    for member in raw.split(","):
        member = member.strip()
        if not member:
            continue
        if len(entries) >= MAX_ENTRIES:
            over_count += 1
            continue
        size = len(member.encode("utf-8", "replace"))
        if size > MAX_ENTRY_BYTES:
            problems.append(f"an entry of {size} bytes (limit {MAX_ENTRY_BYTES})")
            continue
        if total + size + (1 if entries else 0) > MAX_BAGGAGE_BYTES:
            over_total += 1
            continue
        key, sep, rest = member.partition("=")
        key = key.strip()
        if not sep or not _TOKEN.fullmatch(key):
            problems.append(f"a malformed entry {member[:40]!r}")
            continue
        try:
            value = unquote_plus(rest.split(";", 1)[0].strip(), errors="strict")
        except UnicodeDecodeError:
            problems.append(f"{key} (not UTF-8)")
            continue
        error = entry_error(key, value)
        if error:
            problems.append(f"{key} ({error})")
            continue
        total += size + (1 if entries else 0)
        entries[key] = value
    if over_count:
        problems.append(f"{over_count} entries over the {MAX_ENTRIES}-entry limit")
    if over_total:
        problems.append(f"{over_total} entries over the {MAX_BAGGAGE_BYTES}-byte limit")
    return entries


def _extract(fields: Mapping[str, str | None], trusted: bool, source: str, problems: list[str]) -> Context:
    ctx = Context()
    traceparent = fields.get(TRACEPARENT)
    if traceparent:
        carrier = {TRACEPARENT: traceparent}
        state = fields.get(TRACESTATE)
        if state and len(state) <= MAX_TRACESTATE_BYTES:
            carrier[TRACESTATE] = state
        elif state:
            problems.append(f"tracestate of {len(state)} bytes (limit {MAX_TRACESTATE_BYTES})")
        if len(traceparent) <= 256:
            ctx = _trace.extract(carrier, context=ctx)
        if not get_current_span(ctx).get_span_context().is_valid:
            problems.append(f"malformed traceparent {traceparent[:60]!r}")
    raw = fields.get(BAGGAGE)
    if raw:
        if trusted:
            for key, value in _parse_baggage(raw, problems).items():
                ctx = baggage.set_baggage(key, value, ctx)
        else:
            logger.debug("baggage from %s not trusted; dropped", source)
    if problems:
        logger.warning("Dropped from incoming %s context: %s", source, "; ".join(problems))
    return ctx


def extract_headers(headers: Headers, trusted: bool = True) -> Context:
    """A Context from HTTP headers; `trusted=False` keeps the trace but drops all baggage.

    Takes any headers object a Python server hands out: a Mapping (case-insensitive or not),
    Starlette's `Headers`, `http.client.HTTPMessage` (http.server, urllib), a multidict, or a list
    of (name, value) pairs such as an ASGI scope's `headers` (bytes are decoded as latin-1).
    """
    problems: list[str] = []
    values = _header_values(headers, problems)
    if values is None:
        logger.warning("Dropped incoming headers context: a %s is not a headers mapping", type(headers).__name__)
        return Context()
    fields = {name: _joined(name, found, problems) for name, found in values.items()}
    return _extract(fields, trusted, "headers", problems)


def extract_payload(payload: object, trusted: bool = True) -> Context:
    """A Context from a job payload's `otel` field (see `inject_payload`)."""
    problems: list[str] = []
    carrier = payload.get(PAYLOAD_FIELD) if isinstance(payload, Mapping) else None
    if not isinstance(carrier, Mapping):
        what = type(payload).__name__ if not isinstance(payload, Mapping) else "payload without an otel object"
        logger.warning("No trace context in job %s; starting a new one", what)
        return Context()
    fields: dict[str, str | None] = {}
    for name in (TRACEPARENT, TRACESTATE, BAGGAGE):
        value = carrier.get(name)
        if value is not None and not isinstance(value, str):
            problems.append(f"{name} is a {type(value).__name__}, not text")
            value = None
        fields[name] = value
    return _extract(fields, trusted, "payload", problems)


def extract_env(env: Mapping[str, str] | None = None, trusted: bool = True) -> Context:
    """A Context from `TRACEPARENT`, `TRACESTATE` and `BAGGAGE` (default: this process's env)."""
    source = os.environ if env is None else env
    fields = {name: source.get(name.upper()) or None for name in (TRACEPARENT, TRACESTATE, BAGGAGE)}
    return _extract(fields, trusted, "environment", [])

