"""The public edge facing a browser: CORS for listed origins, the caller's trace linked (not continued),
and `Server-Timing` naming the trace a request started.

`install_edge(app, settings)` wraps the gateway's app (call it after `install_request_limits`, so even a 413
carries the CORS headers); `root_span(tracer, request, name, mode)` starts a public route's root span.

- CORS (`BOT_CORS_ORIGINS`, off when unset): Starlette's `CORSMiddleware` answers preflights — `2xx` with
  the origin, `GET, POST` and the headers a browser's OpenTelemetry sends for a listed origin; `400` without
  `Access-Control-Allow-Origin` for any other — and adds the origin to a listed origin's responses. Around it,
  `EdgeHeaders` adds what Starlette does not: `Vary: Origin` on every response (a cache must never hand one
  origin's answer to another, nor an answer to a request without `Origin` to a page) and
  `Timing-Allow-Origin: <origin>` for a listed origin, so the page can read `serverTiming`.
- Trace (`BOT_EDGE_TRACE`): `link` (default) starts a new trace whose root span links to the caller's span
  (`otel_session.link=client`: the caller asserted it, nobody checked it); `continue` makes the root span a
  child of the caller's (only behind a trusted backend that authenticates callers: a caller then decides the
  sampling); `restart` ignores the caller's trace. Only W3C `traceparent`/`tracestate` are read; baggage a
  caller sends is never read here (the route's `session(edge=True)` starts from clean baggage).
- `Server-Timing: trace;desc="00-<trace id>-<span id>-<flags>"` on every answer of a route that started its
  root span with `root_span` (the W3C draft's successor of `traceresponse`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import FastAPI, Request
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Tracer
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.settings import Settings
from otel_session import extract_headers

LINK_ATTRIBUTE = "otel_session.link"  # on the link from an edge span to the caller's span
LINK_CLIENT = "client"  # its value: the caller asserted this span context; nobody vouches for it
ALLOW_METHODS = ("GET", "POST")
ALLOW_HEADERS = ("content-type", "traceparent", "tracestate", "baggage", "authorization")
EXPOSE_HEADERS = ("Server-Timing",)
MAX_AGE_S = 600  # how long a browser may cache a preflight's answer
_TIMING = "otel_session.server_timing"  # the scope's state key `root_span` leaves for `EdgeHeaders`


def server_timing(span: Span) -> str:
    """`trace;desc="00-<trace id>-<span id>-<flags>"` for `span`: the client can find the trace it started."""
    ctx = span.get_span_context()
    return f'trace;desc="00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"'


@contextmanager
def root_span(tracer: Tracer, request: Request, name: str, mode: str) -> Iterator[Span]:
    """A public route's root span, made current, per `BOT_EDGE_TRACE` (`mode`); its ids go out in
    `Server-Timing` on the route's answer (when `install_edge` wraps the app)."""
    context, links = Context(), None
    if mode != "restart":
        incoming = extract_headers(request.headers, trusted=False)  # trace context only; a bad one is dropped
        caller = trace.get_current_span(incoming).get_span_context()
        if mode == "continue":
            context = incoming
        elif caller.is_valid:  # link: the caller's ids and flags, not its tracestate
            links = [Link(SpanContext(caller.trace_id, caller.span_id, is_remote=True, trace_flags=caller.trace_flags),
                          {LINK_ATTRIBUTE: LINK_CLIENT})]
    with tracer.start_as_current_span(name, context=context, kind=SpanKind.SERVER, links=links) as span:
        request.scope.setdefault("state", {})[_TIMING] = server_timing(span)
        yield span


class EdgeHeaders:
    """Pure ASGI, outside CORS: `Vary: Origin` and `Timing-Allow-Origin` (when `origins` is set) and the
    `Server-Timing` a route's `root_span` left in the scope."""

    def __init__(self, app: ASGIApp, origins: tuple[str, ...]) -> None:
        self.app, self.origins = app, frozenset(origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = Headers(scope=scope).get("origin")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                timing = scope.get("state", {}).get(_TIMING)
                if timing:
                    headers.append("Server-Timing", timing)
                if self.origins:
                    if "origin" not in {v.strip().lower() for v in headers.get("vary", "").split(",")}:
                        headers.add_vary_header("Origin")
                    if origin in self.origins:
                        headers["Timing-Allow-Origin"] = origin
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install_edge(app: FastAPI, settings: Settings) -> None:
    """CORS for `settings.cors_origins` (none when empty) and the edge's response headers on `app`."""
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=list(ALLOW_METHODS), allow_headers=list(ALLOW_HEADERS),
                           expose_headers=list(EXPOSE_HEADERS), allow_credentials=False, max_age=MAX_AGE_S)
    app.add_middleware(EdgeHeaders, origins=settings.cors_origins)
