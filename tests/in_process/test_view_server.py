"""The view's HTTP app (`otel_session.view.server`) on a loopback port in this process: the JSON API and its
errors, the security headers, and requests that try to read files outside the package or the directory."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from otel_session.view.index import Index
from otel_session.view.server import SECURITY_HEADERS, ViewServer, is_loopback, load_static
from tests.helpers.view import line, record

HOSTILE = '<img src=x onerror="alert(1)">'


class Client:
    def __init__(self, server: ViewServer) -> None:
        self.host, self.port = server.server_address[:2]

    def request(self, path: str, *, method: str = "GET", headers: dict[str, str] | None = None
                ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection(str(self.host), int(self.port), timeout=10)
        try:
            connection.putrequest(method, path, skip_host=bool(headers and "Host" in headers))
            for name, value in (headers or {}).items():
                connection.putheader(name, value)
            connection.endheaders()
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def json(self, path: str) -> tuple[int, Any]:
        status, headers, body = self.request(path)
        assert headers["Content-Type"] == "application/json; charset=utf-8"
        return status, json.loads(body)


@pytest.fixture
def logs(tmp_path) -> Path:
    directory = tmp_path / "logs"
    directory.mkdir()
    (directory / "gw.1.jsonl").write_text(
        line(record("joined", session="s-1", user="u-1"), record(HOSTILE, at_ms=1, session="s-1", evil=HOSTILE),
             service="gateway")
        + "this line is not JSON\n"
        + line(record("other session", at_ms=5, session="s-2"), service="gateway"))
    (tmp_path / "secret.txt").write_text("outside the directory")
    return directory


@pytest.fixture
def client(logs) -> Iterator[Client]:
    index = Index(logs)
    server = ViewServer(("127.0.0.1", 0), index, refresh_s=0.0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield Client(server)
    server.shutdown()
    server.server_close()
    index.close()


def test_the_sessions_api(client):
    status, sessions = client.json("/api/sessions")
    assert status == 200
    assert [s["session_id"] for s in sessions] == ["s-2", "s-1"]
    assert set(sessions[0]) >= {"session_id", "user_id", "services", "records", "errors", "first", "last"}
    assert client.json("/api/sessions?q=u-1")[1][0]["session_id"] == "s-1"
    assert client.json("/api/sessions?limit=1")[1] == sessions[:1]
    assert client.json("/api/sessions?limit=x")[0] == 400


def test_one_session_and_an_unknown_one(client):
    status, answer = client.json("/api/sessions/s-1")
    assert status == 200
    assert [r["message"] for r in answer["records"]] == ["joined", HOSTILE]
    assert answer["records"][1]["attributes"] == {"evil": HOSTILE}
    assert answer["spans"] == [] and answer["events"] == []
    status, error = client.json("/api/sessions/no-such-session")
    assert status == 404 and error["error"]
    assert client.json("/api/sessions/s-1?after=x")[0] == 400
    status, later = client.json(f"/api/sessions/s-1?after={answer['generation']}")
    assert status == 200 and later["records"] == []


def test_a_session_id_is_taken_percent_decoded(logs, client):
    with (logs / "gw.1.jsonl").open("a") as out:
        out.write(line(record("odd id", session="a b/c?d"), service="gateway"))
    status, answer = client.json("/api/sessions/a%20b%2Fc%3Fd")
    assert status == 200 and answer["records"][0]["message"] == "odd id"


def test_the_status_says_which_files_were_read_and_which_lines_skipped(client):
    status, answer = client.json("/api/status")
    assert status == 200
    assert answer["skipped_lines"] == 1 and answer["records"] == 3
    [entry] = answer["files"]
    assert entry["path"] == "gw.1.jsonl" and entry["skipped_lines"] == 1
    assert entry["skipped"][0]["offset"] > 0 and entry["skipped"][0]["reason"]


def test_the_api_refreshes_before_it_answers(logs, client):
    assert client.json("/api/sessions/s-new")[0] == 404
    with (logs / "gw.1.jsonl").open("a") as out:
        out.write(line(record("appended", at_ms=9, session="s-new"), service="gateway"))
    status, answer = client.json("/api/sessions/s-new")
    assert status == 200 and answer["records"][0]["message"] == "appended"


@pytest.mark.parametrize("path", ["/", "/sessions/s-1", "/static/session.js", "/static/view.css", "/api/sessions",
                                  "/api/sessions/s-1", "/api/sessions/nope", "/api/status", "/nowhere"])
def test_every_answer_carries_the_security_headers(client, path):
    status, headers, _ = client.request(path)
    assert status in (200, 404)
    for name, value in SECURITY_HEADERS.items():
        assert headers[name] == value
    policy = headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_pages_and_static_files(client):
    status, headers, body = client.request("/")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert b'src="/static/list.js"' in body
    status, headers, body = client.request("/sessions/anything%3Cscript%3E")
    assert status == 200 and b"<script>" not in body.replace(b'<script src=', b"")  # one page for every id
    status, headers, body = client.request("/static/session.js")
    assert status == 200 and headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert client.request("/static/nope.js")[0] == 404
    assert client.request("/", method="HEAD")[2] == b""


def test_the_pages_have_no_inline_script_or_style_and_no_markup_sinks():
    static = load_static()
    assert set(static) >= {"index.html", "session.html", "common.js", "list.js", "session.js", "view.css"}
    for name, (body, _) in static.items():
        text = body.decode()
        if name.endswith(".html"):
            assert "<script>" not in text and "style=" not in text and " on" not in text.replace(" one", "")
        if name.endswith(".js"):
            for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
                assert sink not in text, (name, sink)


@pytest.mark.parametrize("path", [
    "/static/../index.py", "/static/..%2findex.py", "/static/%2e%2e/index.py", "/static/..%2f..%2fsecret.txt",
    "/../secret.txt", "/static/../../../../etc/passwd", "/static//etc/passwd", "/static/", "/gw.1.jsonl",
    "/logs/gw.1.jsonl", "/api/../static/index.html", "/sessions/../../secret.txt", "/static/static/view.css",
    "/static/%2fetc%2fpasswd", "//etc/passwd",
])
def test_no_request_reads_a_path_outside_the_package_static_folder(client, path):
    status, _, body = client.request(path)
    assert status == 404 or (status == 200 and body == load_static()["session.html"][0])
    for secret in (b"outside the directory", b"root:", b"import ", b"resourceLogs"):
        assert secret not in body


def test_only_get_and_head(client):
    status, headers, _ = client.request("/api/sessions", method="POST")
    assert status == 405 and headers["Allow"] == "GET, HEAD"
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_a_loopback_server_refuses_other_host_names(client):
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 cannot read the logs."""
    status, _, body = client.request("/api/sessions", headers={"Host": "evil.example:8321"})
    assert status == 421 and b"s-1" not in body
    assert client.request("/api/sessions", headers={"Host": f"localhost:{client.port}"})[0] == 200
    assert client.request("/api/sessions", headers={"Host": f"[::1]:{client.port}"})[0] == 200


def test_loopback_names():
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]", "app.localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.2", "example.com", ""))


def test_a_directory_that_goes_away_keeps_the_view_answering(logs, client):
    assert client.json("/api/sessions/s-1")[0] == 200
    for path in logs.iterdir():
        path.unlink()
    logs.rmdir()
    time.sleep(0.01)
    status, answer = client.json("/api/status")
    assert status == 200 and answer["error"]
    assert client.json("/api/sessions/s-1")[0] == 200  # what was indexed is still served
