"""A real browser at the edge: Debian's Chromium runs the page in web/ (the OpenTelemetry JS web SDK, bundled
by `make web`) from its own origin, and joins the real bot platform on another origin.

The services export to a loopback OTLP receiver, so the tests read exactly what a Collector would get: the
gateway's spans, and every service's log records, the page's relayed ones included.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.helpers.bot_platform import Platform
from tests.helpers.support import wait_for

SERVER_TIMING = re.compile(r'(?:^|,)\s*trace\s*;\s*desc="?00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})"?')
DEBUG_MAX = 8  # severity numbers 1-8 are TRACE and DEBUG


@pytest.fixture
def deploy(tmp_path, otlp) -> Iterator[Callable[..., Platform]]:
    """Start the platform (gateway, warm runner, operator) exporting to `otlp`, with `BOT_CORS_ORIGINS`."""
    made: list[Platform] = []

    def make(origins: str, **env: str) -> Platform:
        platform = Platform(tmp_path / f"platform-{len(made)}", BOT_CORS_ORIGINS=origins, OTEL_LOGS_EXPORTER="otlp",
                            OTEL_EXPORTER_OTLP_ENDPOINT=otlp.url, OTEL_BSP_SCHEDULE_DELAY="100", **env)
        made.append(platform)
        platform.start_gateway()
        # At DEBUG, as the platform tests run: the OTLP exporter's own urllib3 records must not re-enter the
        # pipeline (they did, without end, until the library dropped what the SDK logs while it exports)
        platform.start_runner()
        platform.start_operator()
        return platform

    yield make
    for platform in made:
        platform.cleanup()


def ids() -> dict[str, str]:
    tag = uuid.uuid4().hex[:10]
    return {"room": f"https://rooms.example/browser-{tag}", "session": f"s-web-{tag}", "user": f"u-web-{tag}"}


def join_in(page: Any, page_server: Any, platform: Platform, **params: str) -> dict[str, Any]:
    """Open the page with `params` (and the gateway's URL) and join through it, as a user clicking Join."""
    page.goto(page_server.url(gateway=platform.gateway_url, **params))
    page.wait_for_function("window.__ready === true")
    result = page.evaluate("window.__join()")
    assert isinstance(result, dict), result
    return result


def texts(page: Any, *ids: str) -> dict[str, str]:
    return {name: page.text_content(f"#{name}") for name in ids}


def records_of(otlp: Any, service: str) -> list[dict[str, Any]]:
    return [r for r in otlp.log_records() if r["resource"].get("service.name") == service]


def gateway_root(otlp: Any, trace_id: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        roots = [s for s in otlp.spans() if s["name"] == "POST /join" and s["trace_id"] == trace_id]
        return roots[0] if roots else None

    return dict(wait_for(found, 15, what=f"the gateway's POST /join span in trace {trace_id}"))


def test_a_listed_origin_joins_from_the_browser_and_the_launch_runs(page, page_server, deploy):
    platform = deploy(page_server.origin)
    want = ids()
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url) if "/launches/" in request.url else None)
    result = join_in(page, page_server, platform, **want)

    assert result["ok"], (result, page.console_lines)
    assert result["status"] == "running", result
    assert result["sessionId"] == want["session"]
    assert platform.record(result["launchId"])["status"] == "running"
    assert platform.lock(want["room"])["session_id"] == want["session"]
    shown = texts(page, "launch-id", "session-id", "trace-id", "status", "error")
    assert shown == {"launch-id": result["launchId"], "session-id": want["session"], "trace-id": result["traceId"],
                     "status": "running", "error": ""}
    # the page follows its launch with long polls, one for each step (queued, starting, running), not a poll a tick
    queries = [parse_qs(urlsplit(url).query) for url in asked]
    assert 1 <= len(queries) <= 2, asked
    assert all(q["wait_s"] and q["seen"][0] in ("queued", "starting") for q in queries), asked


def test_an_unlisted_origin_is_refused_by_the_browser_and_never_reaches_redis(page, page_server, deploy):
    other = page_server.origin.replace("127.0.0.1", "localhost")  # same port, another origin
    platform = deploy(other)
    want = ids()
    posts: list[str] = []
    page.on("request", lambda request: posts.append(request.url) if request.method == "POST" else None)
    result = join_in(page, page_server, platform, **want)

    assert not result["ok"]
    assert result["errorName"] == "TypeError", result  # the preflight failed: fetch rejects, no answer to read
    assert posts == [f"{platform.gateway_url}/join"]  # the page did try
    wait_for(lambda: any("CORS" in line for line in page.console_lines), 5, what="Chromium's CORS message")
    time.sleep(1.0)  # an operator would have taken a queued job by now; nothing was queued
    keys = platform.keys
    assert platform.lock(want["room"]) is None
    assert platform.redis.llen(keys.launch_queue) == 0
    assert platform.redis.llen(keys.processing) == 0
    launches = [k for k in platform.redis.scan_iter(match=f"{keys.tag}launch:*")
                if re.fullmatch(r"[0-9a-f]{32}", k.rsplit(":", 1)[-1])]
    assert launches == []
    assert not platform.warm_bots()
    assert page.text_content("#error").startswith("TypeError")


def test_the_joins_root_span_links_the_browsers_fetch_span_and_server_timing_names_its_trace(
        page, page_server, deploy, otlp):
    platform = deploy(page_server.origin)
    result = join_in(page, page_server, platform, **ids())
    assert result["ok"], (result, page.console_lines)

    # the fetch instrumentation ends its span a little after the answer (it waits for the resource timing)
    page.wait_for_function("window.__spans.some(s => (s.url || '').endsWith('/join'))", timeout=10_000)
    joins = [s for s in page.evaluate("window.__spans") if (s["url"] or "").endswith("/join")]
    assert len(joins) == 1, page.evaluate("window.__spans")
    fetch = joins[0]
    root = gateway_root(otlp, result["traceId"])
    assert root["resource"]["service.name"] == "bot-gateway"
    assert root["parent_span_id"] == ""  # a new trace: the browser's is linked, not continued
    assert root["trace_id"] != fetch["traceId"]
    assert [(link["trace_id"], link["span_id"]) for link in root["links"]] == [(fetch["traceId"], fetch["spanId"])]
    assert root["links"][0]["attrs"] == {"otel_session.link": "client"}

    # Server-Timing, as the page read it: the join's trace, and the root span itself
    timing = page.evaluate("window.__serverTiming")
    match = SERVER_TIMING.search(timing or "")
    assert match, timing
    assert match.group(1) == result["traceId"] == root["trace_id"]
    assert match.group(2) == root["span_id"]
    assert page.text_content("#server-timing-trace") == result["traceId"]
    assert page.text_content("#server-timing") == timing


def test_the_pages_baggage_sets_nothing(page, page_server, deploy, otlp):
    platform = deploy(page_server.origin)
    want = ids()
    sent: list[str] = []
    page.on("request", lambda request: sent.append(request.headers.get("baggage", ""))
            if request.url.endswith("/join") and request.method == "POST" else None)
    result = join_in(page, page_server, platform, baggage="session.id=forged,user.id=mallory,"
                     "otel_session.log_level=DEBUG", **want)
    assert result["ok"] and result["status"] == "running", (result, page.console_lines)
    assert sent and "session.id=forged" in sent[0] and "otel_session.log_level=DEBUG" in sent[0], sent

    def launch_records() -> list[dict[str, Any]]:
        return [r for r in otlp.log_records() if r["attrs"].get("bot.launch_id") == result["launchId"]]

    wait_for(lambda: {"bot-gateway", "bot-runner"} <= {r["resource"].get("service.name") for r in launch_records()},
             15, what="the gateway's and the runner's records of the join")
    records = launch_records()
    gateway = [r for r in records if r["resource"]["service.name"] == "bot-gateway"]
    assert any(r["body"].startswith("Launch queued") for r in gateway), [r["body"] for r in gateway]
    assert {r["attrs"].get("session.id") for r in records} == {want["session"]}
    assert {r["attrs"].get("user.id") for r in records if "user.id" in r["attrs"]} == {want["user"]}
    assert [r["body"] for r in gateway if r["severity_number"] <= DEBUG_MAX] == []  # the gateway runs at INFO
    assert not [r for r in otlp.log_records() if "forged" in repr(r["attrs"]) or "mallory" in repr(r["attrs"])]


def test_the_browsers_log_records_reach_the_export_once_under_the_joined_session(page, page_server, deploy, otlp):
    platform = deploy(page_server.origin)
    want = ids()
    result = join_in(page, page_server, platform, claim="someone-else", **want)
    assert result["ok"] and result["status"] == "running", (result, page.console_lines)

    expected = {"joined", "status queued", "status running", "a record that claims another session"}
    wait_for(lambda: expected <= {r["body"] for r in records_of(otlp, "web-client")}, 15,
             what="the page's records at the receiver")
    time.sleep(0.5)  # a second export of the same records would land by now
    web = records_of(otlp, "web-client")
    bodies = [r["body"] for r in web]
    for body in expected:
        assert bodies.count(body) == 1, bodies
    for record in web:
        assert record["attrs"]["session.id"] == want["session"], record
        assert record["attrs"].get("user.id") == want["user"], record
        assert record["attrs"]["bot.launch_id"] == result["launchId"], record
        assert record["resource"]["otel_session.relayed_by"] == "bot-gateway", record
    by_body = {r["body"]: r for r in web}
    assert by_body["joined"]["attrs"]["web.event"] == "joined"
    assert by_body["a record that claims another session"]["attrs"]["web.event"] == "claim"
    assert by_body["status running"]["attrs"]["web.launch_status"] == "running"
    assert not [r for r in otlp.log_records() if r["attrs"].get("session.id") == "someone-else"]
    # the same session as the bot's own records
    runner = [r for r in records_of(otlp, "bot-runner") if r["attrs"].get("bot.launch_id") == result["launchId"]]
    assert runner and {r["attrs"]["session.id"] for r in runner} == {want["session"]}
