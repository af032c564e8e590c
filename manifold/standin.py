"""A local stand-in for the OpenAI Responses API, speaking the real wire protocol.

The manifold's upstream when no ``OPENAI_API_KEY`` is set (so the demo runs offline), and the tests'
fake remote service: special model names inject the faults a real API shows (below).
Run it alone with ``python -m manifold.standin --port 8099``.

``FakeResponsesAPI`` is a real HTTP/1.1 server (stdlib ``ThreadingHTTPServer`` in a daemon thread) bound to
127.0.0.1 on a free port. It serves ``POST /v1/responses`` the way the real API does, so the official SDK
consumes it for real — nothing in the ``openai`` package is mocked::

    api = FakeResponsesAPI().start()
    client = openai.AsyncOpenAI(base_url=api.base_url, api_key="sk-test", max_retries=1)
    stream = await client.responses.create(model="gpt-test", input="hi", stream=True)
    async for ev in stream: ...
    api.stop()

or, in pytest, use the ``fake_openai`` fixture of ``tests/helpers/fake_openai.py`` (started, stopped after the test).

Every request is recorded in ``api.requests`` as ``{"path", "headers", "body"}`` — ``headers`` is a dict with
lower-case keys exactly as received (``headers["authorization"] == "Bearer sk-test"``), ``body`` the parsed JSON.

Streams are ``text/event-stream`` sent with ``Transfer-Encoding: chunked``, one SSE event per chunk:
``event: <type>\\ndata: <json>\\n\\n``, the JSON carrying ``type`` and a ``sequence_number`` counting from 0.
Like the real Responses API, there is no ``data: [DONE]`` sentinel; the stream ends after the terminal event.

The scenario is chosen by the requested **model name** (SDK behaviour measured with openai 3.54.0 / httpx2):

``<any other name>`` (e.g. ``"gpt-test"``)
    ``response.created``, ``response.in_progress``, ``response.output_item.added``,
    ``response.content_part.added``, N × ``response.output_text.delta``, ``response.output_text.done``,
    ``response.content_part.done``, ``response.output_item.done``, ``response.completed`` (the message in
    ``response.output``, ``response.usage`` filled in). The text is ``"Echo: <last user input text>"`` in
    deltas of ``DELTA_SIZE`` characters. The SDK yields the typed models (``ResponseTextDeltaEvent``, …,
    ``ResponseCompletedEvent``) and ``ev.response.output_text`` is the whole text.
``"fail-500"``
    HTTP 500 ``{"error": {"message": "The server had an error ...", "type": "server_error", ...}}``. The SDK
    retries 5xx, so with ``max_retries=1`` the server sees **2** requests (≈0.4–0.5 s apart: the SDK's own
    backoff; set ``api.retry_after_ms`` to have the server send a ``retry-after-ms`` header and go faster).
    ``create()`` then raises ``openai.InternalServerError`` (an ``APIStatusError``), ``status_code == 500``,
    ``body`` == the *inner* ``error`` dict, ``message == "Error code: 500 - <error.message>"``, ``code`` ==
    ``"server_error"``, ``request_id`` == the ``x-request-id`` header the fake sends (``req_…``).
``"fail-401"``
    HTTP 401 ``invalid_api_key``. Not retried (1 request). ``create()`` raises ``openai.AuthenticationError``
    (an ``APIStatusError``), ``status_code == 401``, ``body["code"] == "invalid_api_key"``.
``"response-failed"``
    created/in_progress/item+part added, 2 deltas, then ``response.failed`` with ``status == "failed"`` and
    ``response.error == {"code": "server_error", "message": "The model crashed mid-answer (fake)."}``.
    The SDK yields a ``ResponseFailedEvent`` and ends the iteration normally — it does **not** raise.
``"response-incomplete"``
    3 deltas, ``output_text.done``/``content_part.done``/``output_item.done`` (item status ``incomplete``),
    then ``response.incomplete`` with ``status == "incomplete"`` and
    ``incomplete_details == {"reason": "max_output_tokens"}``. Yielded as ``ResponseIncompleteEvent``; no raise.
``"error-event"``
    1 delta, then the flat error event the API reference documents: ``{"type": "error", "code":
    "rate_limit_exceeded", "message": "Rate limit reached (fake).", "param": null, "sequence_number": n}``, and
    the stream ends. The SDK yields a ``ResponseErrorEvent`` (``ev.code``, ``ev.message``); no raise.
``"error-event-nested"``
    (extra) the same, but in the shape the live API has been seen to send at runtime, the fields nested under
    ``"error"``: ``{"type": "error", "sequence_number": n, "error": {"type": "tokens", "code":
    "rate_limit_exceeded", "message": "Rate limit reached (fake).", "param": null}}``. For this shape the SDK
    does **not** yield an event: its legacy stream loop sees ``data["error"]`` and raises ``openai.APIError``
    (not an ``APIStatusError``) with ``message == "Rate limit reached (fake)."``, ``body`` == the inner dict,
    ``code == "rate_limit_exceeded"``.
``"drop"``
    created/in_progress/item+part added and 3 deltas, then the server closes the TCP connection without the
    terminating zero-length chunk (no terminal event). httpx2 notices the truncated chunked body
    (``RemoteProtocolError: peer closed connection without sending complete message body (incomplete chunked
    read)``) and the SDK re-raises it from the ``async for`` as ``openai.APIConnectionError`` with message
    ``"Connection error."`` (the httpx2 error is its ``__cause__``). Mid-stream errors are never retried:
    the server sees 1 request. (A non-streaming "drop" sends a ``Content-Length`` larger than the body; there
    the SDK does retry — 2 requests — then raises the same ``APIConnectionError``.)
``"slow"``
    ``SLOW_DELTAS`` (50) deltas ``"0 "``, ``"1 "``, … with ``SLOW_PAUSE`` (0.2 s) between them, then the normal
    ending. The first delta comes at once. A client that goes away mid-stream is handled quietly (the writer
    thread stops at its next write); ``stop()`` also ends such streams promptly.

A request with ``"stream": false`` (or none) gets a plain ``Response`` JSON object instead — for the normal,
"slow", "response-failed" and "response-incomplete" models the object the terminal event would carry; the
HTTP error models answer as above; the error-event models answer HTTP 429 with the error body and
``x-should-retry: false`` (the SDK raises ``openai.RateLimitError`` without retrying).

Other paths get a 404 with an OpenAI-style error body. Unexpected exceptions in the fake itself are kept in
``api.errors`` (and printed); client disconnects are swallowed.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import sys
import threading
import time
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeResponsesAPI", "last_user_text"]

_DISCONNECT_ERRORS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)

FAIL_500_BODY = {
    "error": {
        "message": "The server had an error while processing your request (fake).",
        "type": "server_error",
        "param": None,
        "code": "server_error",
    }
}
FAIL_401_BODY = {
    "error": {
        "message": "Incorrect API key provided: sk-te****test.",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    }
}
RESPONSE_FAILED_ERROR = {"code": "server_error", "message": "The model crashed mid-answer (fake)."}
RATE_LIMIT_MESSAGE = "Rate limit reached (fake)."


class _DroppedError(Exception):
    """Raised inside a handler to end the connection without finishing the response."""


def last_user_text(input_: Any) -> str:
    """The text of the last user input: ``input`` as a string, or a list of ``{"role", "content"}`` items."""
    if isinstance(input_, str):
        return input_
    if not isinstance(input_, list):
        return ""
    for item in reversed(input_):
        if not isinstance(item, dict) or item.get("role", "user") != "user":
            continue
        if item.get("type", "message") != "message":
            continue
        content = item.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return "".join(
                str(part.get("text", ""))
                for part in content
                if isinstance(part, dict) and part.get("type") in ("input_text", "output_text", "text")
            )
    return ""


def _tokens(text: str) -> int:
    return max(1, len(text) // 4) if text else 0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, api: FakeResponsesAPI, port: int = 0) -> None:
        self.api = api
        super().__init__(("127.0.0.1", port), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if exc is None or isinstance(exc, (*_DISCONNECT_ERRORS, _DroppedError)) or self.api.stopping.is_set():
            return
        self.api.errors.append(exc)  # a bug in the fake: make it visible
        traceback.print_exc()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked streaming, like the real API
    server_version = "fake-openai/1.0"
    sys_version = ""
    server: _Server

    # -- plumbing ---------------------------------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:  # no access log on stderr
        pass

    def setup(self) -> None:
        super().setup()
        self.server.api._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        except _DISCONNECT_ERRORS:
            pass
        finally:
            self.server.api._track(self.connection, add=False)

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except _DroppedError:
            self.close_connection = True
        except _DISCONNECT_ERRORS:
            self.close_connection = True
        except OSError:
            if not self.server.api.stopping.is_set():
                raise
            self.close_connection = True

    def _common_headers(self, content_type: str) -> None:
        self.send_header("Content-Type", content_type)
        self.send_header("x-request-id", f"req_{uuid.uuid4().hex}")
        self.send_header("openai-processing-ms", "1")
        self.send_header("openai-version", "2020-10-01")

    def _send_json(self, status: int, payload: Any, *, extra: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self._common_headers("application/json")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _send_error(self, status: int, message: str, type_: str, code: str | None) -> None:
        self._send_json(status, {"error": {"message": message, "type": type_, "param": None, "code": code}})

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    # -- requests ---------------------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._read_body()
        self._send_error(404, f"Unknown request URL: GET {self.path}.", "invalid_request_error", "unknown_url")

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_POST(self) -> None:
        raw = self._read_body()
        try:
            body: Any = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        api = self.server.api
        api._record({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})

        if self.path.split("?", 1)[0].rstrip("/") != "/v1/responses":
            self._send_error(404, f"Unknown request URL: POST {self.path}.", "invalid_request_error", "unknown_url")
            return
        if not isinstance(body, dict):
            self._send_error(400, "We could not parse the JSON body of your request.", "invalid_request_error", None)
            return
        model = body.get("model")
        if not isinstance(model, str) or not model:
            self._send_error(
                400, "Missing required parameter: 'model'.", "invalid_request_error", "missing_required_parameter"
            )
            return

        if model == "fail-500":
            extra = {"retry-after-ms": str(api.retry_after_ms)} if api.retry_after_ms is not None else None
            self._send_json(500, FAIL_500_BODY, extra=extra)
            return
        if model == "fail-401":
            self._send_json(401, FAIL_401_BODY)
            return

        scenario = _Scenario(api, body)
        if body.get("stream"):
            self._stream(scenario)
        else:
            self._non_stream(scenario)

    def _non_stream(self, sc: _Scenario) -> None:
        if sc.model in ("error-event", "error-event-nested"):
            self._send_json(429, {"error": {"message": RATE_LIMIT_MESSAGE, "type": "tokens", "param": None,
                                            "code": "rate_limit_exceeded"}}, extra={"x-should-retry": "false"})
            return
        if sc.model == "drop":
            data = json.dumps(sc.response("completed", sc.text)).encode()
            self.send_response(200)
            self._common_headers("application/json")
            self.send_header("Content-Length", str(len(data) + 100))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            raise _DroppedError
        if sc.model == "response-failed":
            payload = sc.response("failed", "")
        elif sc.model == "response-incomplete":
            payload = sc.response("incomplete", "".join(sc.deltas()[:3]))
        else:
            payload = sc.response("completed", sc.text)
        self._send_json(200, payload)

    def _stream(self, sc: _Scenario) -> None:
        self.send_response(200)
        self._common_headers("text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        seq = itertools.count()
        stopping = self.server.api.stopping

        def emit(type_: str, **fields: Any) -> None:
            if stopping.is_set():
                raise _DroppedError
            event = {"type": type_, "sequence_number": next(seq), **fields}
            self._chunk(f"event: {type_}\ndata: {json.dumps(event)}\n\n".encode())

        in_progress = sc.response("in_progress", None)
        emit("response.created", response=in_progress)
        emit("response.in_progress", response=in_progress)
        where = {"item_id": sc.item_id, "output_index": 0}
        emit("response.output_item.added", output_index=0, item=sc.message("", "in_progress"))
        emit("response.content_part.added", **where, content_index=0, part=_text_part(""))

        deltas = sc.deltas()
        sent = ""
        if sc.model == "response-failed":
            deltas = deltas[:2]
        elif sc.model == "response-incomplete":
            deltas = deltas[:3]
        elif sc.model in ("error-event", "error-event-nested"):
            deltas = deltas[:1]
        elif sc.model == "drop":
            deltas = deltas[:3]
        for i, delta in enumerate(deltas):
            if i and sc.model == "slow" and stopping.wait(self.server.api.SLOW_PAUSE):
                raise _DroppedError
            emit("response.output_text.delta", **where, content_index=0, delta=delta, logprobs=[])
            sent += delta

        if sc.model == "drop":
            raise _DroppedError  # close without the terminating zero-length chunk
        if sc.model == "response-failed":
            emit("response.failed", response=sc.response("failed", None))
        elif sc.model == "error-event":
            emit("error", code="rate_limit_exceeded", message=RATE_LIMIT_MESSAGE, param=None)
        elif sc.model == "error-event-nested":
            emit("error", error={"type": "tokens", "code": "rate_limit_exceeded", "message": RATE_LIMIT_MESSAGE,
                                 "param": None})
        else:
            status = "incomplete" if sc.model == "response-incomplete" else "completed"
            emit("response.output_text.done", **where, content_index=0, text=sent, logprobs=[])
            emit("response.content_part.done", **where, content_index=0, part=_text_part(sent))
            emit("response.output_item.done", output_index=0, item=sc.message(sent, status))
            emit(f"response.{status}", response=sc.response(status, sent))
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


class _Scenario:
    """What one request gets: ids, the reply text and the Response objects at each stage."""

    def __init__(self, api: FakeResponsesAPI, body: dict[str, Any]) -> None:
        self.api = api
        self.body = body
        self.model: str = body["model"]
        self.response_id = f"resp_{uuid.uuid4().hex}"
        self.item_id = f"msg_{uuid.uuid4().hex}"
        self.created_at = int(time.time())
        self.text = "Echo: " + last_user_text(body.get("input"))
        self.input_tokens = _tokens(json.dumps(body.get("input", "")))

    def deltas(self) -> list[str]:
        if self.model == "slow":
            return [f"{i} " for i in range(self.api.SLOW_DELTAS)]
        size = self.api.DELTA_SIZE
        return [self.text[i : i + size] for i in range(0, len(self.text), size)] or [""]

    def message(self, text: str, status: str) -> dict[str, Any]:
        content = [_text_part(text)] if status != "in_progress" else []
        return {"id": self.item_id, "type": "message", "status": status, "role": "assistant", "content": content}

    def response(self, status: str, text: str | None) -> dict[str, Any]:
        """The Response object; ``text=None`` means no output (in progress / failed)."""
        body = self.body
        output = [] if text is None else [self.message(text, "completed" if status == "completed" else "incomplete")]
        usage = None
        if status in ("completed", "incomplete"):
            out = _tokens(text or "")
            usage = {
                "input_tokens": self.input_tokens,
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens": out,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": self.input_tokens + out,
            }
        return {
            "id": self.response_id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": False,
            "completed_at": int(time.time()) if status == "completed" else None,
            "error": RESPONSE_FAILED_ERROR if status == "failed" else None,
            "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "metadata": body.get("metadata") or {},
            "model": self.model,
            "output": output,
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": body.get("previous_response_id"),
            "reasoning": {"effort": None, "summary": None},
            "service_tier": "default",
            "store": body.get("store", True),
            "temperature": body.get("temperature", 1.0),
            "text": {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools", []),
            "top_p": body.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": usage,
            "user": None,
        }


class FakeResponsesAPI:
    """A fake OpenAI Responses API server on 127.0.0.1; see the module docstring for the scenarios."""

    DELTA_SIZE = 4  # characters per output_text delta
    SLOW_DELTAS = 50
    SLOW_PAUSE = 0.2  # seconds between "slow" deltas

    def __init__(self, port: int = 0) -> None:
        self.requests: list[dict[str, Any]] = []
        self.errors: list[BaseException] = []  # unexpected exceptions in the fake (not client disconnects)
        self.retry_after_ms: int | None = None  # if set, "fail-500" answers carry a retry-after-ms header
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeResponsesAPI:
        if self._server is not None:
            raise RuntimeError("already started")
        self.stopping.clear()
        self._server = _Server(self, self.port)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-openai", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self.stopping.set()  # streaming handlers stop at their next event
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:  # wake handlers blocked reading the next keep-alive request
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeResponsesAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def open_connections(self) -> int:
        """How many client connections a handler thread is still serving (0 once every client has gone)."""
        with self._lock:
            return len(self._connections)

    def requests_for(self, model: str) -> list[dict[str, Any]]:
        """The recorded requests whose body asked for ``model``."""
        with self._lock:
            return [r for r in self.requests if isinstance(r["body"], dict) and r["body"].get("model") == model]

    def _record(self, request: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(request)

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="a local stand-in for the OpenAI Responses API")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    args = parser.parse_args()
    api = FakeResponsesAPI(port=args.port).start()
    print(api.base_url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        api.stop()


if __name__ == "__main__":
    main()
