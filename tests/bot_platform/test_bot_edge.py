"""The browser at the edge: CORS for listed origins, the caller's trace linked (or continued, or ignored),
`Server-Timing` on the join's answer.

Real gateway processes on loopback against the real Redis; their spans and log records go over OTLP/HTTP to a
loopback receiver, so what is checked is what a Collector would get.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bot.edge import LINK_ATTRIBUTE, LINK_CLIENT
from bot.settings import Settings
from tests.helpers.bot_platform import Platform
from tests.helpers.otlp import OtlpReceiver
from tests.helpers.support import ROOT, free_port, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.processes]  # and the folder's (tests/conftest.py)

ORIGIN = "https://app.example.test"
OTHER_ORIGIN = "http://localhost:5173"
ADMIN_TOKEN = "edge-admin-token"
TIMING = re.compile(r'trace;desc="00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})"')
EDGE_HEADERS = {"content-type", "traceparent", "tracestate", "baggage", "authorization"}
HOSTILE_BAGGAGE = "session.id=evil-session,user.id=evil-user,bot.launch_id=evil-launch,otel_session.log_level=DEBUG"


def _room() -> str:
    return f"https://rooms.example.test/{uuid.uuid4().hex[:12]}"


def _client() -> tuple[str, str, str]:
    """A caller's fresh (trace id, span id, traceparent)."""
    trace_id, span_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    return trace_id, span_id, f"00-{trace_id}-{span_id}-01"


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    server = OtlpReceiver()
    yield server
    server.close()


def _gateway(tmp_path_factory: Any, receiver: OtlpReceiver, name: str, **env: str) -> Iterator[Platform]:
    platform = Platform(tmp_path_factory.mktemp(name), OTEL_LOGS_EXPORTER="otlp",
                        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url, OTEL_BSP_SCHEDULE_DELAY="100",
                        BOT_ADMIN_TOKEN=ADMIN_TOKEN, **env)
    platform.start_gateway()
    yield platform
    platform.cleanup()


@pytest.fixture(scope="module")
def edge(tmp_path_factory, receiver) -> Iterator[Platform]:
    """CORS for two origins (one written loosely: compared as a browser sends it); the default trace rule."""
    yield from _gateway(tmp_path_factory, receiver, "edge", BOT_CORS_ORIGINS=f" HTTPS://App.Example.Test:443, "
                                                                             f"{OTHER_ORIGIN} ")


@pytest.fixture(scope="module")
def continued(tmp_path_factory, receiver) -> Iterator[Platform]:
    """No CORS; behind a trusted backend: the caller's trace is continued."""
    yield from _gateway(tmp_path_factory, receiver, "continued", BOT_EDGE_TRACE="continue")


@pytest.fixture(scope="module")
def restarted(tmp_path_factory, receiver) -> Iterator[Platform]:
    yield from _gateway(tmp_path_factory, receiver, "restarted", BOT_EDGE_TRACE="restart")


def preflight(platform: Platform, path: str, origin: str, headers: str = "content-type,traceparent,tracestate,baggage",
              method: str = "POST") -> httpx.Response:
    return httpx.options(f"{platform.gateway_url}{path}", timeout=10, headers={
        "origin": origin, "access-control-request-method": method, "access-control-request-headers": headers})


def tokens(reply: httpx.Response, name: str) -> list[str]:
    """A comma-separated header's entries, lower case (every occurrence of the header)."""
    return [t.strip().lower() for value in reply.headers.get_list(name) for t in value.split(",") if t.strip()]


def cors_headers(reply: httpx.Response) -> set[str]:
    return {name for name in reply.headers if name.lower().startswith("access-control-") or
            name.lower() == "timing-allow-origin"}


def root_span(receiver: OtlpReceiver, trace_id: str, name: str = "POST /join") -> dict[str, Any]:
    (span,) = wait_for(lambda: [s for s in receiver.spans() if s["trace_id"] == trace_id and s["name"] == name],
                       what=f"the exported {name} span of trace {trace_id}")
    return dict(span)


def timing(reply: httpx.Response) -> tuple[str, str, str]:
    (value,) = reply.headers.get_list("server-timing")
    match = TIMING.fullmatch(value)
    assert match, value
    return match.group(1), match.group(2), match.group(3)


def join(platform: Platform, *header_pairs: tuple[str, str | bytes], **body: Any) -> httpx.Response:
    return httpx.post(f"{platform.gateway_url}/join", json={"room_url": _room(), **body}, headers=list(header_pairs),
                      timeout=10)


# -- CORS -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "origin"), [("/join", ORIGIN), ("/leave", ORIGIN), ("/launches/0123abcd", ORIGIN),
                                              ("/v1/logs", ORIGIN), ("/join", OTHER_ORIGIN)])
def test_a_preflight_from_a_listed_origin_is_allowed(edge, path, origin):
    reply = preflight(edge, path, origin, headers="content-type,traceparent,tracestate,baggage,authorization")
    assert 200 <= reply.status_code < 300, reply.text
    assert reply.headers.get_list("access-control-allow-origin") == [origin]
    assert {"get", "post"} <= set(tokens(reply, "access-control-allow-methods"))
    assert set(tokens(reply, "access-control-allow-headers")) >= EDGE_HEADERS
    assert tokens(reply, "vary").count("origin") == 1
    assert "*" not in reply.headers.get("access-control-allow-headers", "")


@pytest.mark.parametrize("origin", ["https://evil.example.test", "http://app.example.test", "https://app.example.test:8443",
                                    "https://app.example.test.evil.test", "https://APP.example.test", "null",
                                    "https://app.example.test/", "*"])
def test_a_preflight_from_any_other_origin_gets_no_allow_origin(edge, origin):
    reply = preflight(edge, "/join", origin)
    assert reply.status_code == 400  # Starlette's answer; the browser blocks on the missing origin anyway
    assert "access-control-allow-origin" not in reply.headers and "timing-allow-origin" not in reply.headers
    assert "origin" in tokens(reply, "vary")


@pytest.mark.parametrize(("headers", "method"), [("content-type,x-secret", "POST"), ("content-type", "DELETE")])
def test_a_preflight_for_a_header_or_method_not_listed_fails(edge, headers, method):
    assert preflight(edge, "/join", ORIGIN, headers=headers, method=method).status_code == 400


def test_a_join_from_a_listed_origin_can_read_its_answer_and_its_timing(edge):
    reply = join(edge, ("origin", ORIGIN))
    assert reply.status_code == 202
    assert reply.headers.get_list("access-control-allow-origin") == [ORIGIN]
    assert reply.headers["timing-allow-origin"] == ORIGIN
    assert "server-timing" in tokens(reply, "access-control-expose-headers")
    assert tokens(reply, "vary").count("origin") == 1
    assert timing(reply)[0] == reply.json()["traceId"]
    status = httpx.get(f"{edge.gateway_url}/launches/{reply.json()['launchId']}", headers={"origin": OTHER_ORIGIN})
    assert status.status_code == 200 and status.headers["access-control-allow-origin"] == OTHER_ORIGIN


def test_a_join_from_another_origin_gets_no_allow_origin(edge):
    # a client that is not a browser can still post: CORS only tells a browser what a page may read
    for headers in ([("origin", "https://evil.example.test")], []):
        reply = join(edge, *headers)
        assert reply.status_code == 202
        assert "access-control-allow-origin" not in reply.headers and "timing-allow-origin" not in reply.headers
        assert "origin" in tokens(reply, "vary")  # a cache keeps answers to different origins apart
    too_large = httpx.post(f"{edge.gateway_url}/join", content=b"x" * 70_000, timeout=10,
                           headers={"origin": ORIGIN, "content-type": "application/json"})
    assert too_large.status_code == 413 and too_large.headers["access-control-allow-origin"] == ORIGIN


def test_without_cors_origins_there_are_no_cors_headers(continued):
    reply = preflight(continued, "/join", ORIGIN)
    assert reply.status_code == 405  # as before: no route answers OPTIONS
    assert not cors_headers(reply)
    reply = join(continued, ("origin", ORIGIN))
    assert reply.status_code == 202 and not cors_headers(reply) and "origin" not in tokens(reply, "vary")


@pytest.mark.parametrize(("name", "value", "bad"), [
    ("BOT_CORS_ORIGINS", "*", "*"),
    ("BOT_CORS_ORIGINS", "https://app.example.test/", "https://app.example.test/"),
    ("BOT_CORS_ORIGINS", "https://app.example.test/path", "https://app.example.test/path"),
    ("BOT_CORS_ORIGINS", "https://app.example.test, null", "null"),
    ("BOT_CORS_ORIGINS", "app.example.test", "app.example.test"),
    ("BOT_CORS_ORIGINS", "ftp://app.example.test", "ftp://app.example.test"),
    ("BOT_CORS_ORIGINS", "https://app.example.test,,http://localhost:5173", ""),
    ("BOT_EDGE_TRACE", "follow", "follow"),
])
def test_a_bad_edge_knob_stops_the_gateway_naming_it(tmp_path, name, value, bad):
    platform = Platform(tmp_path)
    try:
        out = subprocess.run([sys.executable, "-m", "bot.gateway", "--port", str(free_port())], cwd=ROOT,
                             env={**platform.base_env, name: value}, capture_output=True, text=True, timeout=60)
    finally:
        platform.cleanup()
    assert out.returncode != 0
    assert name in out.stderr and repr(bad) in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_the_edge_knobs_are_read_as_a_browser_writes_origins():
    assert Settings.from_env({}).cors_origins == () and Settings.from_env({}).edge_trace == "link"
    origins = "HTTPS://App.Example:443,http://app.example:80, http://[::1]:8080,https://app.example"
    settings = Settings.from_env({"BOT_CORS_ORIGINS": origins, "BOT_EDGE_TRACE": "Restart"})
    assert settings.cors_origins == ("https://app.example", "http://app.example", "http://[::1]:8080")
    assert settings.edge_trace == "restart"
    with pytest.raises(ValueError, match=re.escape("BOT_CORS_ORIGINS: 'https://a.example:70000'")):
        Settings.from_env({"BOT_CORS_ORIGINS": "https://a.example:70000"})
    with pytest.raises(ValueError, match=re.escape("BOT_CORS_ORIGINS: 'https://user@a.example'")):
        Settings.from_env({"BOT_CORS_ORIGINS": "https://user@a.example"})


# -- the caller's trace -----------------------------------------------------------------------------


def test_the_join_links_the_callers_trace_and_names_its_own(edge, receiver):
    client_trace, client_span, traceparent = _client()
    reply = join(edge, ("traceparent", traceparent), ("tracestate", "vendor=opaque"), ("baggage", HOSTILE_BAGGAGE),
                 ("origin", ORIGIN), sessionId="s-linked", userId="u-linked")
    assert reply.status_code == 202
    body = reply.json()
    assert body["traceId"] != client_trace
    span = root_span(receiver, body["traceId"])
    assert span["parent_span_id"] == "" and span["resource"]["service.name"] == "bot-gateway"
    (link,) = span["links"]
    assert (link["trace_id"], link["span_id"]) == (client_trace, client_span)
    assert link["attrs"] == {LINK_ATTRIBUTE: LINK_CLIENT} and link["trace_state"] == ""
    trace_id, span_id, flags = timing(reply)
    assert (trace_id, span_id) == (body["traceId"], span["span_id"])
    # the caller's baggage set nothing: the join's records carry the ids of the body, and only those
    records = wait_for(lambda: [r for r in receiver.log_records() if r["trace_id"] == body["traceId"]
                                and r["body"].startswith("Launch queued")], what="the join's log record")
    assert records[0]["attrs"]["session.id"] == "s-linked" and records[0]["attrs"]["user.id"] == "u-linked"
    assert records[0]["attrs"]["bot.launch_id"] == body["launchId"]
    everything = [r for r in receiver.log_records() if r["trace_id"] == body["traceId"]]
    assert "evil" not in repr(everything) and "otel_session.log_level" not in repr(everything)
    (job,) = [j for j in map(json.loads, edge.redis.lrange(edge.keys.launch_queue, 0, -1))
              if j["launchId"] == body["launchId"]]
    assert job["otel"]["traceparent"].split("-")[1:] == [body["traceId"], span["span_id"], flags]  # sampled: 01/03
    assert int(flags, 16) & 1 and "evil" not in job["otel"]["baggage"]


def test_no_span_of_the_gateway_joins_the_callers_trace(edge, receiver):
    """FastAPI's own request spans (native telemetry) would continue the caller's trace: the gateway turns them off."""
    client_trace, _, traceparent = _client()
    for body in ({"room_url": _room()}, {"room_url": "not a url"}):  # a 202 and a 422
        httpx.post(f"{edge.gateway_url}/join", json=body, headers={"traceparent": traceparent}, timeout=10)
    root_span(receiver, join(edge).json()["traceId"])  # a later join's span exported: the earlier ones are too
    assert [s for s in receiver.spans() if s["trace_id"] == client_trace] == []


def test_no_record_of_a_request_carries_the_callers_baggage(edge, receiver):
    """Not even one written outside the route's session, such as FastAPI's own "Request validation failed"."""
    marker = f"evil-{uuid.uuid4().hex}"
    hostile = {"baggage": f"session.id={marker},user.id={marker}", "traceparent": _client()[2]}
    for body in ({"room_url": "not a url"}, {"room_url": _room(), "sessionId": "bad id!"}, {"room_url": _room()}):
        httpx.post(f"{edge.gateway_url}/join", json=body, headers=hostile, timeout=10)
    httpx.post(f"{edge.gateway_url}/leave", json={"launchId": uuid.uuid4().hex}, headers=hostile, timeout=10)
    later = join(edge, sessionId="s-later").json()
    wait_for(lambda: [r for r in receiver.log_records() if r["trace_id"] == later["traceId"]], what="a later record")
    assert marker not in repr(receiver.log_records())


def test_continue_makes_the_join_a_child_of_the_callers_span(continued, receiver):
    client_trace, client_span, traceparent = _client()
    reply = join(continued, ("traceparent", traceparent), ("baggage", HOSTILE_BAGGAGE), sessionId="s-continued")
    body = reply.json()
    assert body["traceId"] == client_trace
    span = root_span(receiver, client_trace)
    assert span["parent_span_id"] == client_span and span["links"] == []
    assert timing(reply)[:2] == (client_trace, span["span_id"])
    (record,) = wait_for(lambda: [r for r in receiver.log_records() if r["trace_id"] == client_trace
                                  and r["body"].startswith("Launch queued")], what="the join's log record")
    assert record["attrs"]["session.id"] == "s-continued" and "evil" not in repr(record)


def test_restart_neither_continues_nor_links(restarted, receiver):
    client_trace, _, traceparent = _client()
    reply = join(restarted, ("traceparent", traceparent))
    body = reply.json()
    assert body["traceId"] != client_trace
    span = root_span(receiver, body["traceId"])
    assert span["parent_span_id"] == "" and span["links"] == []
    assert timing(reply)[:2] == (body["traceId"], span["span_id"])


@pytest.mark.parametrize("headers", [
    [("traceparent", f"00-{'0' * 32}-00f067aa0ba902b7-01")],  # an all-zero trace id
    [("traceparent", f"00-{uuid.uuid4().hex}-{'0' * 16}-01")],  # an all-zero span id
    [("traceparent", f"ff-{uuid.uuid4().hex}-00f067aa0ba902b7-01")],  # the forbidden version
    [("traceparent", f"00-{uuid.uuid4().hex.upper()}-00F067AA0BA902B7-01")],  # upper case
    [("traceparent", "garbage")],
    [("traceparent", f"00-{uuid.uuid4().hex}-00f067aa0ba902b7-01-" + "a" * 8000)],  # far too long
    [("traceparent", f"00-{uuid.uuid4().hex}-00f067aa0ba902b7-01"),
     ("traceparent", f"00-{uuid.uuid4().hex}-00f067aa0ba902b7-01")],  # two of them
    [("traceparent", b"00-\xff\xfe-\x80-01")],  # not ASCII
])
def test_an_invalid_traceparent_is_ignored(edge, continued, receiver, headers):
    for platform in (edge, continued):
        reply = join(platform, *headers)
        assert reply.status_code == 202, reply.text
        span = root_span(receiver, reply.json()["traceId"])
        assert span["parent_span_id"] == "" and span["links"] == []
        assert timing(reply)[:2] == (reply.json()["traceId"], span["span_id"])
        assert platform.procs[-1].alive()


def test_admin_follows_the_same_rule(edge, continued, receiver):
    for platform in (edge, continued):
        launch_id = join(platform).json()["launchId"]
        client_trace, client_span, traceparent = _client()
        reply = httpx.post(f"{platform.gateway_url}/admin", json={"launchId": launch_id, "message": "hello"},
                           headers={"authorization": f"Bearer {ADMIN_TOKEN}", "traceparent": traceparent,
                                    "baggage": HOSTILE_BAGGAGE}, timeout=10)
        assert reply.status_code == 202
        trace_id, span_id, _ = timing(reply)
        span = root_span(receiver, trace_id, "POST /admin")
        assert span["span_id"] == span_id
        if platform is edge:
            assert trace_id != client_trace and span["parent_span_id"] == ""
            assert [(k["trace_id"], k["span_id"], k["attrs"]) for k in span["links"]] == [
                (client_trace, client_span, {LINK_ATTRIBUTE: LINK_CLIENT})]
        else:
            assert trace_id == client_trace and span["parent_span_id"] == client_span and span["links"] == []
