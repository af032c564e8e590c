"""The Open WebUI pipe, loaded as Open WebUI loads it, against a fake Responses API on loopback."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

import otel_session
from manifold.loader import load_function
from otel_session import SessionLogProcessor, inject_headers, session
from tests.fake_openai import fake_openai  # noqa: F401 - the fixture

PIPE = Path(__file__).resolve().parent.parent / "manifold" / "openai_responses_manifold.py"
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


class WireExporter(LogRecordExporter):
    """What a collector receives: every batch encoded to OTLP protobuf at export time."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []

    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        self.requests.append(encode_logs(batch).SerializeToString())
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


class Wire:
    def __init__(self, telemetry: otel_session.Telemetry, exporter: WireExporter) -> None:
        self.telemetry, self.exporter = telemetry, exporter

    @property
    def records(self) -> list[Exported]:
        assert self.telemetry.force_flush()  # batched in the background
        out = []
        for data in self.exporter.requests:
            request = ExportLogsServiceRequest.FromString(data)
            for resource_logs in request.resource_logs:
                for scope_logs in resource_logs.scope_logs:
                    for lr in scope_logs.log_records:
                        attrs = {kv.key: getattr(kv.value, kv.value.WhichOneof("value") or "string_value")
                                 for kv in lr.attributes}
                        out.append(Exported(lr.body.string_value, lr.severity_number, scope_logs.scope.name,
                                            attrs, lr.trace_id.hex()))
        return out

    def for_session(self, session_id: str) -> list[Exported]:
        return [r for r in self.records if r.attributes.get("session.id") == session_id]


@pytest.fixture
def wire(otel_logs):
    """The pipeline re-pointed at an exporter that serialises what it is given, as the OTLP exporter does."""
    exporter = WireExporter()
    telemetry = otel_logs.configure(exporter=exporter)
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


def test_an_error_user_sees_no_info_lines(pipe):
    ok, failing = Events(), Events()
    run(_call(pipe, user_level="ERROR", emitter=ok))
    assert ok.citations == []  # nothing at ERROR in a good run: no records, no citation
    text = run(_call(pipe, user_level="ERROR", model="fail-500", emitter=failing))
    assert "HTTP 500" in text
    (doc,) = failing.citations
    lines = [line for line in doc.splitlines() if line[:4].isdigit()]
    assert lines and all(" ERROR " in line for line in lines)


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


def test_a_consumer_closing_the_stream_early_still_gets_the_citation(pipe):
    events = Events()

    async def main():
        gen = await pipe.pipe({"model": "openai_responses.slow", "stream": True,
                               "messages": [{"role": "user", "content": "long one"}]},
                              __user__={"id": "u", "name": "U"}, __metadata__={"chat_id": "c-close"},
                              __event_emitter__=events, __chat_id__="c-close")
        got = [await gen.__anext__(), await gen.__anext__()]
        await gen.aclose()
        return got

    assert len(run(main())) == 2
    (doc,) = events.citations
    assert "Run cancelled by the client" in doc
    assert events.statuses[-1] == {"description": "Cancelled", "done": True}


def test_a_cancelled_task_still_emits_the_citation_and_stays_cancelled(pipe):
    events = Events()

    async def consume():
        return await _call(pipe, model="slow", emitter=events)

    async def main():
        task = asyncio.create_task(consume())
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
    (doc,) = events.citations
    assert "Run cancelled by the client" in doc


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
    from opentelemetry import trace

    class Request:
        def __init__(self, headers):
            self.headers = headers

    tracer = trace.get_tracer("tests")
    with tracer.start_as_current_span("bot") as span, session(session_id="bot-session-9", user_id="caller"):
        headers = inject_headers({})
    caller_trace = span.get_span_context().trace_id
    run(_call(pipe, chat_id="chat-untrusted", request=Request(headers)))
    untrusted = otel_logs.for_session("chat-untrusted")
    assert untrusted and all(r.trace_id != caller_trace for r in untrusted)
    pipe.valves = pipe.valves.model_copy(update={"TRUST_INCOMING_BAGGAGE": True})
    run(_call(pipe, chat_id="chat-trusted", request=Request(headers)))
    trusted = otel_logs.for_session("bot-session-9")
    assert trusted and all(r.trace_id == caller_trace for r in trusted)
    assert {r.attributes["user.id"] for r in trusted} == {"user-1"}  # the user is Open WebUI's, not a header's
    assert otel_logs.for_session("chat-trusted") == []


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
