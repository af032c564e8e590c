"""`otel-session view` in a real browser (Debian's Chromium under Playwright): the sessions page, one session
written by three real service processes (the session handed on through the environment), hostile text shown
as text, and a record appended while the page is open appearing without a reload. Screenshots go to the
test's tmp dir. Chromium and its Playwright driver come from tests/browser/conftest.py."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SESSION = "s-view-42"
OTHER = "s-view-other"
HOSTILE_BODY = '<img src=x onerror="window.__pwned=1;alert(1)">'
HOSTILE_ATTRIBUTE = '<script>window.__pwned=2</script><img src=y onerror="window.__pwned=3">'

# A service process: configured with the file exporter under its own name; it continues the session (and the
# trace) it was handed in its environment (TRACEPARENT, BAGGAGE), and hands them on to the next service.
SERVICE = textwrap.dedent(
    """
    import logging, os, subprocess, sys
    from opentelemetry import trace
    import otel_session

    service, rest = sys.argv[1], sys.argv[2:]
    telemetry = otel_session.configure(service_name=service, exporter="file", level="INFO")
    log = logging.getLogger(service + ".work")
    tracer = trace.get_tracer(service)
    incoming = otel_session.extract_env()
    context, links = incoming, ()
    if service == "gateway":  # the public edge: a new trace, the caller's span only linked (docs/bot-platform.md)
        links = (trace.Link(trace.get_current_span(incoming).get_span_context()),)
        context = trace.set_span_in_context(trace.INVALID_SPAN, incoming)
    with otel_session.attach(incoming):
        with tracer.start_as_current_span(service + " handles the join", context=context, links=links):
            log.info("%s starts its part", service)
            if service == "operator":
                log.warning("%s", HOSTILE_BODY, extra={"evil.attribute": HOSTILE_ATTRIBUTE})
            with tracer.start_as_current_span(service + " inner step"):
                if rest:
                    env = dict(os.environ)
                    otel_session.inject_env(env)
                    subprocess.run([sys.executable, "-c", os.environ["SERVICE_SCRIPT"], *rest], env=env, check=True)
            if service == "runner":
                try:
                    1 / 0
                except ZeroDivisionError:
                    log.exception("runner failed on purpose")
            log.info("%s done", service)
    telemetry.shutdown()
    """
).replace("HOSTILE_BODY", repr(HOSTILE_BODY)).replace("HOSTILE_ATTRIBUTE", repr(HOSTILE_ATTRIBUTE))

# The caller: a page in a browser, say, with a trace of its own and the session in its baggage; it logs
# nothing, so its trace belongs to the session only through the gateway's link to it.
EDGE = textwrap.dedent(
    """
    import os, subprocess, sys
    from opentelemetry import trace
    import otel_session

    session_id = sys.argv[1]
    telemetry = otel_session.configure(service_name="browser", exporter="file", level="INFO")
    with otel_session.session(session_id=session_id, user_id="u-view", edge=True):
        with trace.get_tracer("browser").start_as_current_span("fetch POST /join"):
            env = dict(os.environ)
            otel_session.inject_env(env)
            subprocess.run([sys.executable, "-c", os.environ["SERVICE_SCRIPT"], *sys.argv[2:]], env=env, check=True)
    telemetry.shutdown()
    """
)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OTEL_SESSION_LOG_DIR", "PYTHONPATH", "TRACEPARENT",
                                                             "BAGGAGE", "TRACESTATE")}
    return {**env, "SERVICE_SCRIPT": SERVICE, **extra}


def run_services(logs: Path, session_id: str, *services: str) -> None:
    subprocess.run([sys.executable, "-c", EDGE, session_id, *services], env=_env(OTEL_SESSION_LOG_DIR=str(logs)),
                   check=True, timeout=120)


@pytest.fixture
def view(tmp_path) -> Iterator[tuple[str, Path]]:
    logs = tmp_path / "logs"
    run_services(logs, SESSION, "gateway", "operator", "runner")
    run_services(logs, OTHER, "other-service")
    proc = subprocess.Popen([sys.executable, "-m", "otel_session", "view", "--dir", str(logs), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    assert proc.stdout is not None
    match = re.search(r"(http://\S+/)", proc.stdout.readline())
    assert match
    yield match.group(1), logs
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)


@pytest.fixture
def page(chromium_browser: Any) -> Iterator[Any]:
    """A fresh context with a wide window; dialogs (dismissed), page errors and console errors recorded."""
    context = chromium_browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.dialogs = []
    page.errors = []
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("console", lambda message: message.type == "error" and page.errors.append(message.text))
    yield page
    context.close()


def record_messages(page: Any) -> list[str]:
    return page.eval_on_selector_all("#record-rows tr.record td.message > span:first-child",
                                     "cells => cells.map(c => c.textContent)")


def test_the_sessions_page_lists_the_sessions(view, page, tmp_path):
    url, _ = view
    page.goto(url)
    page.wait_for_function("() => document.querySelectorAll('#rows tr').length >= 2")
    rows = page.eval_on_selector_all("#rows tr", "rows => rows.map(r => Array.from(r.cells).map(c => c.textContent))")
    by_id = {row[0]: row for row in rows}
    assert set(by_id) == {SESSION, OTHER}
    assert by_id[SESSION][1] == "u-view"
    assert by_id[SESSION][2] == "gatewayoperatorrunner"  # three tags, in name order
    assert by_id[SESSION][5] == "1"  # one error: the runner's failure
    page.fill("#search", "other-service")
    page.wait_for_function("() => document.querySelectorAll('#rows tr').length === 1")
    assert page.text_content("#rows tr td a") == OTHER
    page.screenshot(path=str(tmp_path / "view-sessions.png"), full_page=True)
    assert page.errors == []


def test_a_session_page_shows_three_services_and_nothing_of_another_session(view, page, tmp_path):
    url, _ = view
    page.goto(url)
    page.wait_for_selector("#rows tr a")
    page.click(f"#rows a:text-is('{SESSION}')")
    page.wait_for_url(re.compile(r"/sessions/"))
    page.wait_for_function("() => document.querySelectorAll('#record-rows tr.record').length >= 8")
    messages = record_messages(page)
    assert messages[0] == "gateway starts its part"
    assert {"operator starts its part", "runner starts its part", "runner failed on purpose", HOSTILE_BODY,
            "gateway done"} <= set(messages)
    assert len(messages) == 8
    services = page.eval_on_selector_all("#record-rows tr.record td.service", "cells => cells.map(c => c.textContent)")
    assert set(services) == {"gateway", "operator", "runner"}
    lanes = page.eval_on_selector_all("svg .lane.service .lane-label", "labels => labels.map(l => l.firstChild.data)")
    assert lanes == ["browser", "gateway", "operator", "runner"]  # the page's linked trace first
    assert page.locator("svg .mark").count() == 8
    # the spans of the three processes (one trace, nested in each), and the page's linked trace with its link
    bars = page.eval_on_selector_all("svg .span", "bars => bars.map(b => [b.getAttribute('class'), "
                                     "b.querySelector('title').textContent])")
    assert len(bars) == 7
    assert sum("linked" in cls for cls, _ in bars) == 1
    assert any("fetch POST /join" in title and "linked" in cls for cls, title in bars)
    assert {title.split(" · ")[0] for _, title in bars} == {
        "fetch POST /join", *(f"{s} {what}" for s in ("gateway", "operator", "runner")
                              for what in ("handles the join", "inner step"))}
    assert page.locator("svg path.link").count() == 1
    inner = page.eval_on_selector_all("svg .span rect", "rects => rects.map(r => Number(r.getAttribute('y')))")
    assert len(set(inner)) > 4  # inner steps drawn a row below their parents
    body = page.text_content("body")
    assert "other-service" not in body and OTHER not in body
    # the exception's text on demand, and a record's trace one click away
    page.click("#record-rows tr.record.error")
    assert "ZeroDivisionError" in page.text_content("#record-rows tr.details pre.exception")
    page.click("#record-rows tr.details button.id >> nth=0")
    page.wait_for_selector("#f-trace:not([hidden])")
    assert len(record_messages(page)) == 8  # one trace across the three processes
    assert page.locator("svg .span.in-trace").count() == 6
    # a span one click away: its details, and only its records
    page.click("#f-trace button.clear")
    page.locator("svg .span", has_text="runner handles the join").dispatch_event("click")
    page.wait_for_selector("#detail:not([hidden])")
    assert "runner handles the join" in page.text_content("#detail")
    assert set(record_messages(page)) == {"runner starts its part", "runner failed on purpose", "runner done"}
    page.screenshot(path=str(tmp_path / "view-session.png"), full_page=True)
    assert page.errors == []


def test_hostile_text_is_shown_as_text_and_runs_nothing(view, page, tmp_path):
    url, _ = view
    page.goto(url + "sessions/" + SESSION)
    page.wait_for_function("() => document.querySelectorAll('#record-rows tr.record').length >= 8")
    scripts = page.evaluate("document.querySelectorAll('script').length")
    row = page.locator("#record-rows tr.record", has_text="onerror").first
    row.click()  # its attributes, on demand
    page.wait_for_selector("#record-rows tr.details table.attributes")
    cells = page.eval_on_selector_all("#record-rows tr.details table.attributes td",
                                      "cells => cells.map(c => c.textContent)")
    assert HOSTILE_ATTRIBUTE in cells
    assert HOSTILE_BODY in record_messages(page)
    page.hover("svg .mark.warn rect")  # its tooltip: an SVG <title>, text
    page.wait_for_timeout(300)
    assert page.evaluate("document.querySelectorAll('img').length") == 0
    assert page.evaluate("document.querySelectorAll('script').length") == scripts == 2
    assert page.evaluate("document.querySelectorAll('[onerror]').length") == 0
    assert page.evaluate("window.__pwned === undefined")
    assert page.dialogs == []
    page.screenshot(path=str(tmp_path / "view-hostile.png"), full_page=True)
    assert page.errors == []


def test_a_record_appended_while_the_page_is_open_appears_without_a_reload(view, page, tmp_path):
    url, logs = view
    page.goto(url + "sessions/" + SESSION)
    page.wait_for_function("() => document.querySelectorAll('#record-rows tr.record').length >= 8")
    page.evaluate("window.__same_page = true")
    run_services(logs, SESSION, "late-service")  # a fourth process joins the session
    written = time.monotonic()
    page.wait_for_function("() => document.querySelectorAll('#record-rows tr.record').length >= 10", timeout=10_000)
    seen_after = time.monotonic() - written
    assert "late-service starts its part" in record_messages(page)
    page.wait_for_function("() => Array.from(document.querySelectorAll('svg .span title'))"
                           ".some(t => t.textContent.startsWith('late-service handles the join'))", timeout=5_000)
    assert page.evaluate("window.__same_page === true")  # no reload
    lanes = page.eval_on_selector_all("svg .lane.service .lane-label", "labels => labels.map(l => l.firstChild.data)")
    assert lanes[-1] == "late-service"
    assert seen_after < 2.0, f"the appended records took {seen_after:.2f} s to appear"
    page.screenshot(path=str(tmp_path / "view-live.png"), full_page=True)
    assert page.errors == []


def test_an_unknown_session_says_so(view, page):
    url, _ = view
    page.goto(url + "sessions/" + "no-such%3Cb%3Esession")
    page.wait_for_selector("#missing:not([hidden])")
    assert 'no-such<b>session' in page.text_content("#missing")
    assert page.evaluate("document.querySelectorAll('b').length") == 0


def test_the_timeline_zooms_to_a_dragged_stretch(view, page, tmp_path):
    url, _ = view
    page.goto(url + "sessions/" + SESSION)
    page.wait_for_function("() => document.querySelectorAll('svg .span').length >= 7")
    axis = lambda: page.eval_on_selector_all("svg .axis text", "ts => ts.map(t => t.textContent)")  # noqa: E731
    whole = axis()
    assert page.is_hidden("#zoom-reset")
    box = page.locator("svg.chart").bounding_box()
    y = box["y"] + 30
    page.mouse.move(box["x"] + box["width"] * 0.55, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.7, y, steps=5)
    page.mouse.up()
    page.wait_for_selector("#zoom-reset:not([hidden])")
    zoomed = axis()
    assert zoomed != whole and zoomed[0] != "+0 µs"  # starts later than the session
    page.screenshot(path=str(tmp_path / "view-zoomed.png"), full_page=True)
    page.click("#zoom-reset")
    page.wait_for_selector("#zoom-reset", state="hidden")
    assert axis() == whole
    assert page.errors == []
