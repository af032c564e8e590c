"""Request limits every bot HTTP service shares: a body cap (413), validation errors without input (422),
JSON for every error.

`install_request_limits(app, settings)` is the one entry point; the gateway and the runner both call it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.settings import Settings

logger = logging.getLogger(__name__)

MAX_LOC_PART = 64  # a field name in a 422 is cut here: an unknown field's name is the caller's text
# An idle keep-alive connection: the services' servers close it after SERVER_KEEPALIVE_S (uvicorn's default), and
# a service's own client (the operator's, to the runners) drops it well before, so it never sends a request on
# a connection the server is closing at that moment (httpx's default expiry equals the server's: a `/start`
# then failed with a ReadError, and its launch went to the next runner or cold).
SERVER_KEEPALIVE_S = 5
CLIENT_KEEPALIVE_S = 2.0


@dataclass(frozen=True)
class PathLimit:
    """A path's own body cap. `refused`, when given, is called for each 413 instead of the warning the
    limit logs itself (the path counts and reports its refusals its own way)."""

    max_bytes: int
    refused: Callable[[], None] | None = None


class BodyLimit:
    """Pure ASGI: reads at most `max_bytes` of a request body before the app sees it, else answers 413.

    Reading the body up front is what makes a chunked body (no Content-Length) as bounded as a declared
    one; a declared length beyond the cap is refused before a byte of it is read. The app then gets the
    body replayed in one message, so it never buffers more than the cap. `paths` give some exact paths
    a cap of their own (the log relay takes bigger bodies than a join).
    """

    def __init__(self, app: ASGIApp, max_bytes: int, paths: Mapping[str, PathLimit] | None = None) -> None:
        self.app, self.max_bytes, self.paths = app, max_bytes, dict(paths or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.paths.get(scope.get("path", ""))
        max_bytes = self.max_bytes if limit is None else limit.max_bytes
        declared = _content_length(scope)
        if declared is not None and declared > max_bytes:
            await self._too_large(scope, send, max_bytes, limit)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away mid-body: nothing to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > max_bytes:
                await self._too_large(scope, send, max_bytes, limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: only http.disconnect comes

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, send: Send, max_bytes: int, limit: PathLimit | None) -> None:
        if limit is not None and limit.refused is not None:
            limit.refused()
        else:
            logger.warning("%s %s refused: the body is over %d bytes", scope.get("method", ""), scope.get("path", ""),
                           max_bytes)
        payload = json.dumps({"detail": f"the request body is larger than {max_bytes} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": payload})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a bad Content-Length itself
    return None


def validation_errors(errors: Any) -> list[dict[str, Any]]:
    """`loc`, `msg` and `type` of each error, never the input (it may hold a token) nor pydantic's ctx."""
    out = []
    for error in errors:
        loc = [part if isinstance(part, int) else str(part)[:MAX_LOC_PART] for part in error.get("loc", ())]
        out.append({"loc": loc, "msg": str(error.get("msg", "")), "type": str(error.get("type", ""))})
    return out


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    return JSONResponse({"detail": validation_errors(errors)}, status_code=422)


async def _crashed(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("Unhandled error in %s %s", request.method, request.url.path)
    return JSONResponse({"detail": "internal error"}, status_code=500)


def install_request_limits(app: FastAPI, settings: Settings, paths: Mapping[str, PathLimit] | None = None) -> None:
    """Body cap (`paths`: exact paths with caps of their own), input-free 422s and a JSON 500 on `app`.
    Call before the app starts serving."""
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, paths=paths)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(Exception, _crashed)
