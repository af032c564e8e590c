"""The fake Responses API, exercised with the real ``openai.AsyncOpenAI`` over loopback HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import openai
import pydantic
import pytest
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseErrorEvent,
    ResponseFailedEvent,
    ResponseIncompleteEvent,
    ResponseStreamEvent,
    ResponseTextDeltaEvent,
)

from tests.helpers.fake_openai import FakeResponsesAPI, fake_openai, last_user_text

__all__ = ["fake_openai"]  # the fixture, imported so pytest finds it

T = TypeVar("T")
API_KEY = "sk-test-0123456789"
NORMAL_TYPES = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]
STRICT_EVENT = pydantic.TypeAdapter(ResponseStreamEvent)


def run(api: FakeResponsesAPI, body: Callable[[openai.AsyncOpenAI], Awaitable[T]]) -> T:
    async def main() -> T:
        async with openai.AsyncOpenAI(base_url=api.base_url, api_key=API_KEY, max_retries=1) as client:
            return await body(client)

    return asyncio.run(main())


def collect(api: FakeResponsesAPI, model: str, input: Any = "hello there") -> list[Any]:
    """Every event the SDK yields for one streamed request (raises whatever the SDK raises)."""

    async def body(client: openai.AsyncOpenAI) -> list[Any]:
        stream = await client.responses.create(model=model, input=input, stream=True)
        return [ev async for ev in stream]

    return run(api, body)


# A stream cut short: openai 3 wraps the transport error (from httpx2) in APIConnectionError;
# openai 2 (Open WebUI 0.12's pin) lets httpx's RemoteProtocolError through.
STREAM_CUT = (openai.APIConnectionError, httpx.RemoteProtocolError)


def collect_until_error(api: FakeResponsesAPI, model: str) -> tuple[list[Any], BaseException]:
    events: list[Any] = []

    async def body(client: openai.AsyncOpenAI) -> BaseException:
        stream = await client.responses.create(model=model, input="hello there", stream=True)
        try:
            async for ev in stream:
                events.append(ev)
        except (openai.OpenAIError, httpx.TransportError) as exc:
            return exc
        raise AssertionError("the stream ended without an error")

    return events, run(api, body)


def strictly_valid(ev: Any) -> None:
    """The SDK builds models leniently; validating what it received catches a field the fake left out."""
    STRICT_EVENT.validate_python(ev.to_dict())


def deltas(events: list[Any]) -> list[str]:
    return [ev.delta for ev in events if isinstance(ev, ResponseTextDeltaEvent)]


# -- the normal stream ------------------------------------------------------------------------------------------


def test_normal_stream_parses_into_typed_events(fake_openai: FakeResponsesAPI) -> None:
    events = collect(fake_openai, "gpt-test", input="hello there")
    types = [ev.type for ev in events]
    assert [t for i, t in enumerate(types) if i == 0 or t != types[i - 1]] == NORMAL_TYPES
    assert [ev.sequence_number for ev in events] == list(range(len(events)))
    for ev in events:
        strictly_valid(ev)

    parts = deltas(events)
    assert len(parts) > 2 and all(0 < len(p) <= FakeResponsesAPI.DELTA_SIZE for p in parts)
    assert "".join(parts) == "Echo: hello there"
    assert events[-4].text == "Echo: hello there"  # response.output_text.done

    done = events[-1]
    assert isinstance(done, ResponseCompletedEvent)
    assert done.response.status == "completed"
    assert done.response.output_text == "Echo: hello there"
    assert done.response.model == "gpt-test"
    assert done.response.id.startswith("resp_") and done.response.id == events[0].response.id
    usage = done.response.usage
    assert usage is not None and usage.output_tokens > 0 and usage.input_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens


def test_echoes_the_last_user_message_of_a_list_input(fake_openai: FakeResponsesAPI) -> None:
    conversation = [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": [{"type": "output_text", "text": "first answer"}]},
        {"role": "user", "content": [{"type": "input_text", "text": "second "}, {"type": "input_text", "text": "one"}]},
    ]
    events = collect(fake_openai, "gpt-test", input=conversation)
    assert events[-1].response.output_text == "Echo: second one"
    assert last_user_text([{"role": "user", "content": "only"}]) == "only"
    assert last_user_text([{"role": "system", "content": "x"}]) == ""


def test_requests_are_recorded_with_the_key_as_sent(fake_openai: FakeResponsesAPI) -> None:
    collect(fake_openai, "gpt-test", input="hi")
    [request] = fake_openai.requests
    assert request["path"] == "/v1/responses"
    assert request["headers"]["authorization"] == f"Bearer {API_KEY}"
    assert request["headers"]["content-type"] == "application/json"
    assert request["body"] == {"model": "gpt-test", "input": "hi", "stream": True}


def test_non_streaming_request_gets_a_response_object(fake_openai: FakeResponsesAPI) -> None:
    async def body(client: openai.AsyncOpenAI) -> Any:
        return await client.responses.create(model="gpt-test", input="plain")

    response = run(fake_openai, body)
    assert isinstance(response, Response)
    Response.model_validate(response.to_dict())
    assert response.status == "completed"
    assert response.output_text == "Echo: plain"
    assert fake_openai.requests[0]["body"].get("stream") in (None, False)


# -- HTTP errors ------------------------------------------------------------------------------------------------


def test_fail_500_raises_internal_server_error_after_one_retry(fake_openai: FakeResponsesAPI) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        collect(fake_openai, "fail-500")
    err = info.value
    assert isinstance(err, openai.InternalServerError)
    assert err.status_code == 500
    assert err.body == {
        "message": "The server had an error while processing your request (fake).",
        "type": "server_error",
        "param": None,
        "code": "server_error",
    }
    assert err.code == "server_error"
    assert "The server had an error while processing your request (fake)." in err.message
    assert err.request_id is not None and err.request_id.startswith("req_")
    assert len(fake_openai.requests_for("fail-500")) == 2  # max_retries=1: the first try and one retry


def test_fail_500_retry_delay_can_be_shortened(fake_openai: FakeResponsesAPI) -> None:
    """The stand-in asks for a short retry the way the real API does (`retry-after-ms`, which the SDK honours);
    how long the SDK then waits is the SDK's timing, not asserted here."""
    fake_openai.retry_after_ms = 10
    with pytest.raises(openai.InternalServerError) as info:
        collect(fake_openai, "fail-500")
    assert info.value.response.headers["retry-after-ms"] == "10"
    assert len(fake_openai.requests) == 2
    fake_openai.retry_after_ms = None
    with pytest.raises(openai.InternalServerError) as info:
        collect(fake_openai, "fail-500")
    assert "retry-after-ms" not in info.value.response.headers


def test_fail_401_raises_authentication_error_without_retry(fake_openai: FakeResponsesAPI) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        collect(fake_openai, "fail-401")
    err = info.value
    assert isinstance(err, openai.AuthenticationError)
    assert err.status_code == 401
    assert isinstance(err.body, dict)
    assert err.body["code"] == "invalid_api_key"
    assert err.body["message"] == "Incorrect API key provided: sk-te****test."
    assert err.body["type"] == "invalid_request_error"
    assert len(fake_openai.requests) == 1


# -- errors inside the stream -----------------------------------------------------------------------------------


def test_response_failed_is_yielded_not_raised(fake_openai: FakeResponsesAPI) -> None:
    events = collect(fake_openai, "response-failed")
    assert len(deltas(events)) == 2
    last = events[-1]
    assert isinstance(last, ResponseFailedEvent)
    assert last.type == "response.failed"
    assert last.response.status == "failed"
    assert last.response.error is not None
    assert last.response.error.code == "server_error"
    assert last.response.error.message == "The model crashed mid-answer (fake)."
    for ev in events:
        strictly_valid(ev)


def test_response_incomplete_is_yielded_not_raised(fake_openai: FakeResponsesAPI) -> None:
    events = collect(fake_openai, "response-incomplete")
    assert len(deltas(events)) == 3
    last = events[-1]
    assert isinstance(last, ResponseIncompleteEvent)
    assert last.response.status == "incomplete"
    assert last.response.incomplete_details is not None
    assert last.response.incomplete_details.reason == "max_output_tokens"
    assert last.response.output_text == "".join(deltas(events))
    for ev in events:
        strictly_valid(ev)


def test_flat_error_event_is_yielded_as_response_error_event(fake_openai: FakeResponsesAPI) -> None:
    events = collect(fake_openai, "error-event")
    assert len(deltas(events)) == 1
    last = events[-1]
    assert isinstance(last, ResponseErrorEvent)
    assert last.type == "error"
    assert last.code == "rate_limit_exceeded"
    assert last.message == "Rate limit reached (fake)."
    assert last.param is None
    assert last.sequence_number == len(events) - 1
    strictly_valid(last)


def test_nested_error_event_makes_the_sdk_raise_api_error(fake_openai: FakeResponsesAPI) -> None:
    events, err = collect_until_error(fake_openai, "error-event-nested")
    assert len(deltas(events)) == 1
    assert type(err) is openai.APIError  # not an APIStatusError: the HTTP status was 200
    assert err.message == "Rate limit reached (fake)."
    assert err.code == "rate_limit_exceeded"
    assert isinstance(err.body, dict) and err.body["type"] == "tokens"


def test_drop_raises_api_connection_error(fake_openai: FakeResponsesAPI) -> None:
    events, err = collect_until_error(fake_openai, "drop")
    assert [ev.type for ev in events][-1] == "response.output_text.delta"
    assert len(deltas(events)) == 3
    assert isinstance(err, STREAM_CUT)
    transport = err.__cause__ if isinstance(err, openai.APIConnectionError) else err
    assert type(transport).__name__ == "RemoteProtocolError"
    assert "incomplete chunked read" in str(transport)
    assert len(fake_openai.requests) == 1  # a broken stream is not retried


# -- slow streams, cancellation and shutdown ---------------------------------------------------------------------


def test_slow_stream_can_be_cancelled_mid_way(fake_openai: FakeResponsesAPI, capfd: pytest.CaptureFixture[str]) -> None:
    async def body(client: openai.AsyncOpenAI) -> list[str]:
        got: list[str] = []

        async def consume() -> None:
            stream = await client.responses.create(model="slow", input="x", stream=True)
            async for ev in stream:
                if isinstance(ev, ResponseTextDeltaEvent):
                    got.append(ev.delta)

        task = asyncio.create_task(consume())
        started = time.monotonic()
        while len(got) < 2 and time.monotonic() - started < 2:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return got

    started = time.monotonic()
    got = run(fake_openai, body)
    assert got[:2] == ["0 ", "1 "]
    assert time.monotonic() - started < 1.5
    # the server notices the client went away at its next write, quietly, and its handler thread ends
    deadline = time.monotonic() + 2
    while fake_openai.open_connections() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fake_openai.open_connections() == 0
    assert fake_openai.errors == []
    assert capfd.readouterr().err == ""


def test_stop_is_prompt_while_a_slow_stream_is_open() -> None:
    api = FakeResponsesAPI().start()

    async def body(client: openai.AsyncOpenAI) -> BaseException | None:
        stream = await client.responses.create(model="slow", input="x", stream=True)
        try:
            async for ev in stream:
                if isinstance(ev, ResponseTextDeltaEvent):
                    await asyncio.to_thread(api.stop)
        except STREAM_CUT as exc:
            return exc
        return None

    started = time.monotonic()
    err = run(api, body)
    assert time.monotonic() - started < 1.0
    assert isinstance(err, STREAM_CUT)  # the stream was cut short, as a dropped one
    assert api.errors == []


def test_no_output_on_stderr(fake_openai: FakeResponsesAPI, capfd: pytest.CaptureFixture[str]) -> None:
    collect(fake_openai, "gpt-test")
    collect_until_error(fake_openai, "drop")
    with pytest.raises(openai.AuthenticationError):
        collect(fake_openai, "fail-401")
    fake_openai.stop()
    assert capfd.readouterr().err == ""
    assert fake_openai.errors == []
