"""The view's HTTP app on the standard library's `ThreadingHTTPServer`: two pages, their script and style,
and the JSON API the pages use, over an `Index`.

| path | answer |
| --- | --- |
| `/` | the sessions page |
| `/sessions/{session_id}` | one session's page (the same file for every id: the script reads the id) |
| `/static/{name}` | the pages' scripts and styles: only the files shipped in the package's `static` folder |
| `/api/sessions?q=&limit=` | the sessions, newest first (`Index.sessions`) |
| `/api/sessions/{session_id}?after=` | one session (`Index.session`), 404 when no record carries the id |
| `/api/status` | which files were read, which lines were skipped (`Index.status`) |

Safety: no request names a file (static files are looked up by name in a table built from the package at
start, and the log directory is only ever read by the index); every answer carries a strict
Content-Security-Policy (no inline script or style, nothing from another origin) and `nosniff`; the pages
put every value from the logs into the document as text. On a loopback address, a request whose `Host` is
not a loopback name is refused, so a web page elsewhere cannot read the logs through DNS rebinding.
"""

from __future__ import annotations

import ipaddress
import json
import sys
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, TextIO
from urllib.parse import parse_qs, unquote, urlsplit

from otel_session.view.index import Index

REFRESH_S = 0.1  # an API answer refreshes the index first when the last refresh is older than this
WAIT_S = 0.25  # how long an answer waits for a refresh another thread is running (a long build: not at all)
BACKGROUND_S = 1.0  # the index also refreshes on its own this often while the server runs

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
PAGES = {"list": "index.html", "session": "session.html"}
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address) is this machine only."""
    name = host.strip("[]").lower()
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def load_static() -> dict[str, tuple[bytes, str]]:
    """The files of the package's `static` folder: name -> (content, content type). Read once."""
    files: dict[str, tuple[bytes, str]] = {}
    folder = resources.files("otel_session.view").joinpath("static")
    for item in folder.iterdir():
        suffix = "." + item.name.rsplit(".", 1)[-1] if "." in item.name else ""
        if item.is_file() and suffix in CONTENT_TYPES:
            files[item.name] = (item.read_bytes(), CONTENT_TYPES[suffix])
    return files


class ViewServer(ThreadingHTTPServer):
    """The view over one `Index`. `refresh_s`: how stale the index may be when an API request comes."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], index: Index, *, refresh_s: float = REFRESH_S) -> None:
        self.index = index
        self.refresh_s = refresh_s
        self.static = load_static()
        self.refresh_error: str | None = None
        self._refreshed = 0.0
        self._refresh_lock = threading.Lock()
        self._stopping = threading.Event()
        self.loopback_only = is_loopback(address[0])
        super().__init__(address, Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = str(host)
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"

    def refresh(self, *, force: bool = False, wait: bool = True) -> None:
        """Bring the index up to date, unless it was less than `refresh_s` ago. Another thread at it right
        now: wait for it, or with `wait=False` (a request) for `WAIT_S` at most, then answer from what is
        committed (a long first build of a large directory answers with what it has so far)."""
        if not self._refresh_lock.acquire(timeout=-1 if wait else WAIT_S):
            return
        try:
            if not force and time.monotonic() - self._refreshed < self.refresh_s:
                return
            try:
                self.index.refresh()
                self.refresh_error = None
            except FileNotFoundError as exc:  # the directory went away: keep serving what was indexed
                self.refresh_error = str(exc)
            self._refreshed = time.monotonic()
        finally:
            self._refresh_lock.release()

    def start_background_refresh(self, interval_s: float = BACKGROUND_S) -> threading.Thread:
        """Index the directory now and then every `interval_s`, in a daemon thread."""

        def run() -> None:
            while not self._stopping.is_set():
                self.refresh(force=True)
                self._stopping.wait(interval_s)

        thread = threading.Thread(target=run, name="otel-session-view-index", daemon=True)
        thread.start()
        return thread

    def server_close(self) -> None:
        self._stopping.set()
        super().server_close()


class Handler(BaseHTTPRequestHandler):
    server: ViewServer
    server_version = "otel-session-view"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the page polls every second: no line per request

    # --- answers -----------------------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, content_type: str, *, cache: str = "no-store",
              extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, value: Any) -> None:
        body = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        self._send(status, body, "application/json; charset=utf-8",
                   extra={"X-Index-Generation": str(self.server.index.generation)})

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._json(status, {"error": message, "status": int(status)})

    def _static(self, name: str) -> None:
        found = self.server.static.get(name)
        if found is None:
            self._error(HTTPStatus.NOT_FOUND, "no such file")
            return
        body, content_type = found
        self._send(HTTPStatus.OK, body, content_type, cache="no-cache")

    # --- routing -----------------------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        if not self._host_allowed():
            self._error(HTTPStatus.MISDIRECTED_REQUEST, "this view answers on its loopback address only")
            return
        url = urlsplit(self.path)
        parts = url.path.split("/")[1:]  # "/a/b" -> ["a", "b"]; never joined into a file path
        query = parse_qs(url.query, keep_blank_values=True)
        try:
            route = self._route(parts)
            if route is None:
                self._error(HTTPStatus.NOT_FOUND, "not found")
            else:
                route(query)
        except BrokenPipeError:
            pass
        except Exception as exc:  # an answer, never a dropped connection
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(exc).__name__}: {exc}")

    def _not_allowed(self) -> None:
        self.send_response(HTTPStatus.METHOD_NOT_ALLOWED)
        self.send_header("Allow", "GET, HEAD")
        self.send_header("Content-Length", "0")
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed  # noqa: N815 - the stdlib's names

    def _host_allowed(self) -> bool:
        if not self.server.loopback_only:
            return True
        host = self.headers.get("Host", "")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return is_loopback(name)

    def _route(self, parts: list[str]) -> Callable[[dict[str, list[str]]], None] | None:
        if parts == [""]:
            return lambda q: self._static(PAGES["list"])
        if len(parts) == 2 and parts[0] == "sessions" and parts[1]:
            return lambda q: self._static(PAGES["session"])
        if len(parts) == 2 and parts[0] == "static":
            name = parts[1]
            return lambda q: self._static(name)
        if parts[0] != "api":
            return None
        if parts == ["api", "sessions"]:
            return self._api_sessions
        if len(parts) == 3 and parts[:2] == ["api", "sessions"] and parts[2]:
            session_id = unquote(parts[2])
            return lambda q: self._api_session(session_id, q)
        if parts == ["api", "status"]:
            return self._api_status
        return None

    def _api_sessions(self, query: dict[str, list[str]]) -> None:
        text = query.get("q", [""])[-1]
        limit = _int_param(query, "limit", 500)
        if limit is None or limit < 0:
            self._error(HTTPStatus.BAD_REQUEST, "limit: a whole number, 0 or more")
            return
        self.server.refresh(wait=False)
        self._json(HTTPStatus.OK, self.server.index.sessions(text or None, limit=min(limit, 100_000)))

    def _api_session(self, session_id: str, query: dict[str, list[str]]) -> None:
        after = _int_param(query, "after", None)
        if "after" in query and after is None:
            self._error(HTTPStatus.BAD_REQUEST, "after: a generation number from an earlier answer")
            return
        self.server.refresh(wait=False)
        answer = self.server.index.session(session_id, after=after)
        if answer is None:
            self._error(HTTPStatus.NOT_FOUND, "no record carries this session id")
            return
        self._json(HTTPStatus.OK, answer)

    def _api_status(self, query: dict[str, list[str]]) -> None:
        self.server.refresh(wait=False)
        status = self.server.index.status()
        status["error"] = self.server.refresh_error
        self._json(HTTPStatus.OK, status)


def _int_param(query: dict[str, list[str]], name: str, default: int | None) -> int | None:
    values = query.get(name)
    if not values:
        return default
    try:
        return int(values[-1])
    except ValueError:
        return None


def serve(index: Index, host: str = "127.0.0.1", port: int = 8321, *, open_browser: bool = False,
          out: TextIO | None = None, ready: Callable[[ViewServer], None] | None = None) -> None:
    """Serve the view until interrupted: index in the background, print the URL, answer requests."""
    out = out if out is not None else sys.stdout
    server = ViewServer((host, port), index)
    try:
        server.start_background_refresh()
        print(f"otel-session view: {server.url}  (reading {index.directory}; Ctrl-C to stop)", file=out, flush=True)
        if open_browser:
            import webbrowser

            webbrowser.open(server.url)
        if ready is not None:
            ready(server)
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


__all__ = ["SECURITY_HEADERS", "ViewServer", "is_loopback", "load_static", "serve"]
