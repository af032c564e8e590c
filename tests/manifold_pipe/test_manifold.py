"""The Open WebUI pipe, loaded as Open WebUI loads it, against a fake Responses API on loopback."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.logging.handler import LoggingHandler

import otel_session
from manifold.loader import load_function
from manifold.openai_responses_manifold import INHERIT, resolve_level
from otel_session import SessionLogProcessor, inject_headers, session
from tests.helpers.fake_openai import fake_openai  # noqa: F401 - the fixture
from tests.helpers.wire import SerialisingExporter, attributes

PIPE = Path(__file__).resolve().parents[2] / "manifold" / "openai_responses_manifold.py"
KEY = "sk-test-abcdefghijklmnop0123"


@pytest.fixture
def pipe(fake_openai, otel_logs):  # noqa: F811
    loaded, _ = load_function(PIPE, "openai_responses")
    loaded.valves = loaded.Valves(BASE_URL=fake_openai.base_url, API_KEY=KEY, MODELS="gpt-test,gpt-4.1",
                                  EMIT_TIMEOUT_S=0.3)
    return loaded


class Exported(NamedTuple):
    message: str
    severity: int  # OTel severity number: DEBUG 5, INFO 9, WARN 13, ERROR 17
    logger: str
    attributes: dict[str, Any]
    trace_id: str


class Wire:
    def __init__(self, telemetry: otel_session.Telemetry, exporter: SerialisingExporter) -> None:
        self.telemetry, self.exporter = telemetry, exporter

    @property
    def records(self) -> list[Exported]:
        assert self.telemetry.force_flush()  # batched in the background
        return [Exported(lr.body.string_value, lr.severity_number, scope.name, attributes(lr), lr.trace_id.hex())
                for scope, lr, _ in self.exporter.decoded()]

    def for_session(self, session_id: str) -> list[Exported]:
        return [r for r in self.records if r.attributes.get("session.id") == session_id]


@pytest.fixture
def wire(otel_logs):
    """The pipeline re-pointed at an exporter that serialises what it is given, as the OTLP exporter does
    (instead of the `otel_logs` fixture's in-memory one, which keeps live SDK records)."""
    exporter = SerialisingExporter()
    telemetry = otel_session.configure(exporter=exporter)
    yield Wire(telemetry, exporter)
    telemetry.shutdown()


class Request:
    """What the pipe reads of Open WebUI's `__request__`: its headers."""

    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = headers


def _caller_headers(**ids: Any) -> tuple[dict[str, str], str]:
    """The W3C headers a caller inside the platform sends, and its trace id (hex)."""
    with trace.get_tracer("tests").start_as_current_span("caller") as span, session(**ids):
        headers = dict(inject_headers({}))
    return headers, format(span.get_span_context().trace_id, "032x")


def _lines(doc: str) -> list[str]:
    """The record lines of a citation (without the fence and any continuation lines)."""
    return [line for line in doc.splitlines() if line[:4].isdigit()]


class Events:
    def __init__(self, behaviour: str = "ok") -> None:
        self.events: list[dict[str, Any]] = []
        self.behaviour = behaviour

    async def __call__(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        if self.behaviour == "raise":
            raise ConnectionResetError("socket.io went away")
        if self.behaviour == "hang":
            await asyncio.sleep(3600)

    @property
    def citations(self) -> list[str]:
        return [e["data"]["document"][0] for e in self.events if e["type"] == "citation"]

    @property
    def statuses(self) -> list[dict[str, Any]]:
        return [e["data"] for e in self.events if e["type"] == "status"]


async def _call(pipe, *, model="gpt-test", stream=True, user_level=None, chat_id="chat-1", socket="sock-1",
                user_id="user-1", name="Ada", messages=None, emitter=None, request=None) -> str:
    user: dict[str, Any] = {"id": user_id, "name": name, "email": "a@example.test", "role": "user"}
    if user_level is not None:
        user["valves"] = pipe.UserValves(LOG_LEVEL=user_level)
    body = {"model": f"openai_responses.{model}", "stream": stream,
            "messages": messages or [{"role": "user", "content": "hi there"}]}
    metadata = {"chat_id": chat_id, "session_id": socket, "message_id": "m-1"}
    out = await pipe.pipe(body, __user__=user, __metadata__=metadata, __event_emitter__=emitter,
                          __request__=request, __chat_id__=chat_id)
    if stream:
        return "".join([delta async for delta in out])
    assert isinstance(out, str)
    return out


def run(coro):
    return asyncio.run(coro)


@pytest.mark.parametrize("stream", [True, False])
def test_success_returns_the_text_then_one_logs_citation(pipe, fake_openai, otel_logs, stream):  # noqa: F811
    events = Events()
    text = run(_call(pipe, stream=stream, emitter=events))
    assert text == "Echo: hi there"
    assert [e["type"] for e in events.events] == ["status", "status", "citation"]
    assert events.statuses[0]["done"] is False and events.statuses[-1] == {"description": "Done", "done": True}
    citation = events.events[-1]["data"]
    assert citation["source"] == {"name": "Logs"} and citation["metadata"][0]["source"] == "Logs"
    (doc,) = events.citations
    assert doc.startswith("```text\n") and doc.endswith("\n```")
    assert doc.splitlines()[1] == "session chat-1"  # the header names the run's session, for an operator to paste
    assert "INFO  openai_responses: Calling gpt-test with 1 messages" in doc and "Response completed" in doc
    assert "function_openai_responses_" not in doc  # the per-load module name is not shown
    assert "HTTP Request: POST" in doc  # the HTTP client's records are the run's records too
    assert "DEBUG" not in doc
    assert fake_openai.requests[-1]["body"]["model"] == "gpt-test"
    exported = otel_logs.for_session("chat-1")
    assert exported and {r.attributes["user.id"] for r in exported} == {"user-1"}


def test_a_model_id_with_dots_is_passed_whole(pipe, fake_openai):  # noqa: F811
    run(_call(pipe, model="gpt-4.1"))
    assert fake_openai.requests[-1]["body"]["model"] == "gpt-4.1"


def test_inherit_uses_the_valve_level_and_a_debug_user_sees_debug_lines(pipe):
    pipe.valves = pipe.valves.model_copy(update={"LOG_LEVEL": "DEBUG"})
    inherit = Events()
    run(_call(pipe, user_level="INHERIT", emitter=inherit))
    assert "DEBUG" in inherit.citations[0] and "Request body keys" in inherit.citations[0]
    pipe.valves = pipe.valves.model_copy(update={"LOG_LEVEL": "INFO"})
    debug_user = Events()
    run(_call(pipe, user_level="debug", emitter=debug_user))
    assert "Request body keys" in debug_user.citations[0]
    assert " DEBUG openai._base_client: " in debug_user.citations[0]  # the SDK's own debug lines


def test_a_debug_user_sees_debug_lines_that_are_never_exported(pipe, wire):
    events = Events()
    run(_call(pipe, user_level="DEBUG", chat_id="chat-debug", emitter=events))
    (doc,) = events.citations
    debug = [line for line in _lines(doc) if " DEBUG " in line]
    assert any("Request body keys" in line for line in debug)
    assert any(" DEBUG openai._base_client: " in line for line in debug)
    exported = wire.records
    run_records = [r for r in exported if r.attributes.get("session.id") == "chat-debug"]
    assert {r.message.split(" with ")[0] for r in run_records} >= {"Calling gpt-test"}
    assert [r for r in exported if r.severity < 9] == []  # not the run's, not anyone's
    assert not any("Request body keys" in r.message for r in exported)
    assert logging.getLogger().level == logging.INFO and logging.getLogger("openai").level == logging.NOTSET


def test_an_error_user_sees_no_info_lines_but_cannot_silence_the_export(pipe, wire):
    ok, failing = Events(), Events()
    run(_call(pipe, user_level="ERROR", chat_id="chat-quiet", emitter=ok))
    assert ok.citations == []  # nothing at ERROR in a good run: no records, no citation
    text = run(_call(pipe, user_level="ERROR", chat_id="chat-quiet-fail", model="fail-500", emitter=failing))
    assert "HTTP 500" in text
    (doc,) = failing.citations
    lines = _lines(doc)
    assert lines and all(" ERROR " in line for line in lines)
    for chat in ("chat-quiet", "chat-quiet-fail"):  # the platform's INFO records of both runs
        info = [r.message for r in wire.for_session(chat) if r.severity == 9]
        assert any(m.startswith("Calling gpt-test" if chat == "chat-quiet" else "Calling fail-500") for m in info)
        assert any(m.startswith("HTTP Request: POST") for m in info)
    assert any(m.message.startswith("Response completed") for m in wire.for_session("chat-quiet"))


def test_a_trusted_callers_export_level_is_kept_and_the_users_level_stays_the_citations(pipe, wire):
    headers, trace_id = _caller_headers(session_id="sess-grant", user_id="caller", log_level="DEBUG")
    assert "otel_session.log_level=DEBUG" in headers["baggage"]
    untrusted = Events()
    run(_call(pipe, chat_id="chat-no-trust", request=Request(headers), emitter=untrusted))
    assert [r for r in wire.records if r.severity < 9] == []  # an untrusted caller's level is nobody's
    pipe.valves = pipe.valves.model_copy(update={"TRUST_INCOMING_BAGGAGE": True})
    granted = Events()
    run(_call(pipe, request=Request(headers), emitter=granted))  # the user INHERITs the valve: INFO
    exported = wire.for_session("sess-grant")
    assert {r.trace_id for r in exported} == {trace_id}
    assert any(r.severity < 9 and r.message.startswith("Request body keys") for r in exported)
    assert " DEBUG " not in granted.citations[0] and "Calling gpt-test" in granted.citations[0]
    assert untrusted.citations[0].splitlines()[1] == "session chat-no-trust"
    assert granted.citations[0].splitlines()[1] == "session sess-grant"  # the trusted caller's session, not the chat

    headers, _ = _caller_headers(session_id="sess-errors-only", log_level="ERROR")
    debug_user = Events()
    run(_call(pipe, model="fail-500", user_level="DEBUG", request=Request(headers), emitter=debug_user))
    assert {r.severity for r in wire.for_session("sess-errors-only")} == {17}
    assert "Request body keys" in debug_user.citations[0]  # the user still sees everything they asked for


def test_invalid_levels_are_refused_when_the_valves_are_saved(pipe):
    with pytest.raises(ValueError, match="invalid log level"):
        pipe.Valves(LOG_LEVEL="LOUD")
    with pytest.raises(ValueError, match="invalid log level"):
        pipe.UserValves(LOG_LEVEL="chatty")
    assert pipe.UserValves().LOG_LEVEL == "INHERIT"


def test_twenty_concurrent_runs_each_get_only_their_own_records(pipe, otel_logs):
    levels = ["DEBUG", "INFO", "ERROR", "INHERIT"]

    async def one(i: int):
        events = Events()
        chat = None if i in (3, 4) else f"chat-{i}"  # 3 and 4: one browser tab, no chat id
        messages = [{"role": "user", "content": f"question {i}"}] * (i + 1)
        model = "fail-500" if i % 5 == 0 else "gpt-test"
        await _call(pipe, chat_id=chat, socket="tab-shared" if chat is None else f"sock-{i}", user_id=f"user-{i}",
                    user_level=levels[i % 4], messages=messages, emitter=events, model=model)
        return i, events

    async def main():
        return await asyncio.gather(*(one(i) for i in range(20)))

    for i, events in run(main()):
        level = levels[i % 4]
        if level == "ERROR" and i % 5:
            assert events.citations == []
            continue
        (doc,) = events.citations
        calls = [line for line in doc.splitlines() if "Calling " in line]
        if level == "ERROR":
            assert calls == [] and "HTTP 500" in doc
            continue
        assert len(calls) == 1 and calls[0].endswith(f"with {i + 1} messages"), doc
        assert ("DEBUG" in doc) == (level == "DEBUG")
    shared = otel_logs.for_session("tab-shared")
    assert {r.attributes["user.id"] for r in shared} == {"user-3", "user-4"}
    assert len({r.trace_id for r in shared}) == 2  # same session, two runs, two traces


@pytest.mark.parametrize(
    ("model", "shown"),
    [
        ("fail-500", "the API answered HTTP 500: The server had an error while processing your request (fake)."),
        ("fail-401", "the API answered HTTP 401: Incorrect API key provided"),
        ("response-failed", "the model's response failed: The model crashed mid-answer (fake). (server_error)"),
        ("response-incomplete", "the response stopped early: max_output_tokens"),
        ("error-event", "the API reported an error: Rate limit reached (fake). (rate_limit_exceeded)"),
        ("error-event-nested", "the API reported an error: "),
        ("drop", "the connection to the API dropped"),
    ],
)
@pytest.mark.parametrize("stream", [True, False])
def test_upstream_faults_are_shown_in_the_reply_with_one_citation(pipe, model, shown, stream):
    events = Events()
    text = run(_call(pipe, model=model, stream=stream, emitter=events))
    assert f"**Error:** {shown}" in text
    (doc,) = events.citations
    assert " ERROR " in doc
    assert events.statuses[-1] == {"description": "Failed", "done": True}
    assert events.events[-1]["type"] == "citation"


async def _until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {predicate}"
        await asyncio.sleep(0.02)


def _no_failed_detach(capsys, caplog) -> None:
    text = capsys.readouterr().err + caplog.text
    assert "could not detach" not in text and "Failed to detach" not in text, text


@pytest.mark.parametrize("leave", ["abandon", "aclose"])
def test_a_consumer_that_goes_away_mid_stream_leaves_nothing_attached_and_gets_the_citation(
        pipe, fake_openai, wire, capsys, caplog, leave):  # noqa: F811
    fake_openai.SLOW_PAUSE = 0.05
    events = Events()
    host = logging.getLogger("tests.host")

    async def main() -> list[str]:
        gen = await pipe.pipe({"model": "openai_responses.slow", "stream": True,
                               "messages": [{"role": "user", "content": "long one"}]},
                              __user__={"id": "user-gone", "name": "Gone"}, __metadata__={"chat_id": "chat-gone"},
                              __event_emitter__=events, __chat_id__="chat-gone")
        got = [await gen.__anext__() for _ in range(3)]
        host.warning("between deltas")  # the host's own record, in the task that iterates the stream
        if leave == "abandon":  # no aclose(): the generator is simply dropped
            del gen
            gc.collect()
        else:
            await gen.aclose()
        await _until(lambda: events.citations)
        host.warning("after the run")
        await _until(lambda: fake_openai.open_connections() == 0)  # the upstream call was stopped too
        return got

    assert run(main()) == ["0 ", "1 ", "2 "]
    (doc,) = events.citations
    assert "Calling slow" in doc and "Run cancelled by the client" in doc
    assert "between deltas" not in doc and "after the run" not in doc
    assert events.statuses[-1] == {"description": "Cancelled", "done": True}
    hosts = [r for r in wire.records if r.logger == "tests.host"]
    assert [r.message for r in hosts] == ["between deltas", "after the run"]
    assert all("session.id" not in r.attributes and "user.id" not in r.attributes for r in hosts), hosts
    assert {r.attributes.get("user.id") for r in wire.for_session("chat-gone")} == {"user-gone"}
    assert len(fake_openai.requests_for("slow")) == 1
    _no_failed_detach(capsys, caplog)


def test_a_cancelled_task_still_emits_the_citation_and_stays_cancelled(pipe, fake_openai, capsys, caplog):  # noqa: F811
    fake_openai.SLOW_PAUSE = 0.05
    events = Events()

    async def consume():
        return await _call(pipe, model="slow", emitter=events)

    async def main():
        task = asyncio.create_task(consume())
        await _until(lambda: fake_openai.requests_for("slow"))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert events.citations  # emitted before the consumer's cancellation went on

    run(main())
    (doc,) = events.citations
    assert "Run cancelled by the client" in doc
    assert events.statuses[-1] == {"description": "Cancelled", "done": True}
    _no_failed_detach(capsys, caplog)


def test_the_consumers_context_is_never_the_runs(pipe, otel_logs):
    """What the host logs while it iterates the stream is its own, not the run's."""
    events = Events()

    async def main():
        out = await pipe.pipe({"model": "openai_responses.gpt-test", "stream": True,
                               "messages": [{"role": "user", "content": "hi"}]},
                              __user__={"id": "user-ctx"}, __event_emitter__=events, __chat_id__="chat-ctx")
        async for delta in out:
            assert otel_session.current() is None
            logging.getLogger("tests.host").warning("host record while streaming %r", delta)
        assert otel_session.current() is None

    run(main())
    assert "host record while streaming" not in events.citations[0]
    host = [r for r in otel_logs.records if r.logger == "tests.host"]
    assert host and all("session.id" not in r.attributes for r in host)


@pytest.mark.parametrize("stream", [True, False])
def test_a_bug_in_the_run_is_shown_with_its_citation(pipe, stream):
    events = Events()
    text = run(_call(pipe, stream=stream, emitter=events, messages=["not a message object"]))
    assert "**Error:** AttributeError: " in text
    (doc,) = events.citations
    assert "ERROR openai_responses: Run failed unexpectedly" in doc and "Traceback" in doc
    assert events.statuses[-1] == {"description": "Failed", "done": True}


@pytest.mark.parametrize("behaviour", ["raise", "hang"])
def test_an_emitter_that_raises_or_hangs_never_breaks_the_pipe(pipe, behaviour):
    events = Events(behaviour)
    started = time.monotonic()
    text = run(_call(pipe, model="fail-500", emitter=events))
    assert "**Error:** the API answered HTTP 500" in text  # the original error is still what the user sees
    assert time.monotonic() - started < 5
    assert len(events.citations) == 1  # attempted once
    assert [e["type"] for e in events.events] == ["status", "status", "citation"]


def test_no_emitter_at_all(pipe):
    assert run(_call(pipe, emitter=None)) == "Echo: hi there"


def test_secrets_never_reach_a_record_or_a_citation(pipe, fake_openai, otel_logs):  # noqa: F811
    pipe.valves = pipe.valves.model_copy(update={"LOG_LEVEL": "DEBUG"})
    events = Events()
    run(_call(pipe, model="fail-401", emitter=events))
    assert fake_openai.requests[-1]["headers"]["authorization"] == f"Bearer {KEY}"  # it did reach the API
    everything = events.citations[0] + "".join(
        r.message + str(r.attributes) for r in otel_logs.records)
    assert KEY not in everything and "Bearer sk-" not in everything


def test_trusted_incoming_baggage_continues_the_callers_session_and_trace(pipe, otel_logs):
    headers, caller_trace = _caller_headers(session_id="bot-session-9", user_id="caller")
    run(_call(pipe, chat_id="chat-untrusted", request=Request(headers)))
    untrusted = otel_logs.for_session("chat-untrusted")
    assert untrusted and all(r.trace_id != caller_trace for r in untrusted)
    assert otel_logs.for_session("bot-session-9") == []
    pipe.valves = pipe.valves.model_copy(update={"TRUST_INCOMING_BAGGAGE": True})
    run(_call(pipe, chat_id="chat-trusted", request=Request(headers)))
    trusted = otel_logs.for_session("bot-session-9")
    assert trusted and all(r.trace_id == caller_trace for r in trusted)
    assert {r.attributes["user.id"] for r in trusted} == {"user-1"}  # the user is Open WebUI's, not a header's
    assert otel_logs.for_session("chat-trusted") == []


def test_two_runs_in_one_trace_keep_their_own_citations(pipe, fake_openai, otel_logs):  # noqa: F811
    pipe.valves = pipe.valves.model_copy(update={"TRUST_INCOMING_BAGGAGE": True})
    headers, trace_id = _caller_headers(session_id="sess-both")
    a, b = Events(), Events()

    async def main():
        await asyncio.gather(
            _call(pipe, chat_id="chat-a", user_id="user-a", user_level="DEBUG", request=Request(headers), emitter=a,
                  messages=[{"role": "user", "content": "from a"}]),
            _call(pipe, chat_id="chat-b", user_id="user-b", user_level="DEBUG", request=Request(headers), emitter=b,
                  messages=[{"role": "user", "content": "from b"}] * 2),
        )

    run(main())
    for events, own, other in ((a, "with 1 messages", "with 2 messages"), (b, "with 2 messages", "with 1 messages")):
        (doc,) = events.citations
        assert own in doc and other not in doc, doc
        assert len([line for line in _lines(doc) if ": HTTP Request: POST http" in line]) == 1, doc
        assert len([line for line in _lines(doc) if "Response completed" in line]) == 1, doc
    exported = otel_logs.for_session("sess-both")
    assert {r.trace_id for r in exported} == {trace_id}
    assert {r.attributes["user.id"] for r in exported} == {"user-a", "user-b"}


def test_a_client_resending_another_runs_traceparent_gets_its_own_citation(pipe, fake_openai, otel_logs):  # noqa: F811
    fake_openai.SLOW_DELTAS, fake_openai.SLOW_PAUSE = 20, 0.05
    pipe.valves = pipe.valves.model_copy(update={"TRUST_INCOMING_BAGGAGE": True})
    headers, trace_id = _caller_headers(session_id="sess-original", user_id="owner")
    copied = {"traceparent": headers["traceparent"]}  # what another client saw of the first run
    original, copycat = Events(), Events()

    async def main():
        first = asyncio.create_task(_call(pipe, model="slow", user_id="owner", request=Request(headers),
                                          emitter=original))
        while not fake_openai.requests_for("slow"):
            await asyncio.sleep(0.01)
        await _call(pipe, chat_id="chat-copycat", user_id="copycat", request=Request(copied), emitter=copycat)
        assert not first.done()  # the two ran at the same time
        await first

    run(main())
    (mine,) = original.citations
    (theirs,) = copycat.citations
    assert "Calling slow" in mine and "Calling gpt-test" not in mine
    assert "Calling gpt-test" in theirs and "Calling slow" not in theirs
    assert {r.trace_id for r in otel_logs.records if r.message.startswith("Calling ")} == {trace_id}
    assert {r.attributes["user.id"] for r in otel_logs.for_session("sess-original")} == {"owner"}
    assert {r.attributes["user.id"] for r in otel_logs.for_session("chat-copycat")} == {"copycat"}


def test_loading_the_file_like_open_webui_again_and_again_adds_nothing_twice(otel_logs):
    frontmatter = {}
    for _ in range(10):
        loaded, frontmatter = load_function(PIPE, "openai_responses")
        assert [m["id"] for m in loaded.pipes()] == ["gpt-4.1-mini", "gpt-4.1"]
    root = logging.getLogger()
    assert len([h for h in root.handlers if isinstance(h, LoggingHandler)]) == 1
    provider = otel_logs.telemetry.logger_provider
    ours = [p for p in provider._multi_log_record_processor._log_record_processors
            if isinstance(p, SessionLogProcessor)]
    assert len(ours) == 1
    assert frontmatter["title"] == "OpenAI Responses" and frontmatter["id"] == "openai_responses"
    assert [r.strip() for r in frontmatter["requirements"].split(",")] == ["otel-session", "openai>=2"]


# Open WebUI's level words live in the pipe: a user valve, INHERIT, the pipe's valve, GLOBAL_LOG_LEVEL.
@pytest.mark.parametrize(
    ("user", "valve", "env", "expected"),
    [
        ("DEBUG", "ERROR", {"GLOBAL_LOG_LEVEL": "WARNING"}, logging.DEBUG),  # user wins
        (INHERIT, "ERROR", {"GLOBAL_LOG_LEVEL": "WARNING"}, logging.ERROR),  # INHERIT -> valve
        ("inherit", "warn", {}, logging.WARNING),  # any case
        (None, None, {"GLOBAL_LOG_LEVEL": "debug"}, logging.DEBUG),  # env override
        (None, INHERIT, {"GLOBAL_LOG_LEVEL": "ERROR"}, logging.ERROR),
        ("", "", {}, logging.INFO),  # nothing set -> INFO
        (None, None, {}, logging.INFO),
        (35, None, {}, 35),  # ints
        (None, 5, {}, 5),
    ],
)
def test_resolve_level_order(user, valve, env, expected):
    assert resolve_level(user, valve, env=env) == expected


def test_resolve_level_reads_the_process_environment_by_default(monkeypatch):
    monkeypatch.setenv("GLOBAL_LOG_LEVEL", "ERROR")
    assert resolve_level() == logging.ERROR
    monkeypatch.delenv("GLOBAL_LOG_LEVEL")
    assert resolve_level() == logging.INFO


@pytest.mark.parametrize(
    ("user", "valve", "env"), [("loud", None, {}), (None, "quiet", {}), (None, None, {"GLOBAL_LOG_LEVEL": "x"})]
)
def test_resolve_level_rejects_invalid_names(user, valve, env):
    with pytest.raises(ValueError, match="invalid log level"):
        resolve_level(user, valve, env=env)
