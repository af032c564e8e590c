"""The manifold host over real HTTP, and the platform's last hop: runner -> manifold."""

from __future__ import annotations

import json

import httpx
from opentelemetry import trace

from otel_session import inject_headers, session
from tests.helpers.support import wait_for

ROOM = "https://rooms.example.test/last-hop"


def _sse(reply: httpx.Response) -> tuple[str, list[dict]]:
    text, events = [], []
    for line in reply.text.splitlines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        data = json.loads(line[6:])
        if "event" in data:
            events.append(data["event"])
        for choice in data.get("choices", []):
            text.append(choice["delta"].get("content") or "")
    return "".join(text), events


def test_the_host_serves_the_pipe_streaming_and_not(platform, otel_logs):
    url = platform.start_manifold()
    body = {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "hello host"}]}
    plain = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30).json()
    assert plain["choices"][0]["message"]["content"] == "Echo: hello host"
    assert [e["type"] for e in plain["events"]] == ["status", "status", "citation"]

    tracer = trace.get_tracer("tests")
    with tracer.start_as_current_span("caller") as span, session(session_id="sess-hop", user_id="u-hop"):
        headers = inject_headers({"x-chat-id": "chat-hop"})
    reply = httpx.post(f"{url}/v1/chat/completions", json={**body, "stream": True}, headers=headers, timeout=30)
    assert reply.headers["content-type"].startswith("text/event-stream")
    text, events = _sse(reply)
    assert text == "Echo: hello host"
    citation = next(e for e in events if e["type"] == "citation")
    assert "Calling gpt-4.1-mini" in citation["data"]["document"][0]
    trace_id = format(span.get_span_context().trace_id, "032x")
    (kept,) = httpx.get(f"{url}/citations", params={"session_id": "sess-hop"}, timeout=10).json()
    assert kept["trace_id"] == trace_id and kept["chat_id"] == "chat-hop"
    assert httpx.post(f"{url}/v1/chat/completions", json={"messages": "nope"}, timeout=10).status_code == 400
    platform.stop_all()
    hop = [r for r in platform.records() if r["attrs"].get("session.id") == "sess-hop"]
    assert hop and {r["service"] for r in hop} == {"manifold"} and {r["trace_id"] for r in hop} == {trace_id}


def test_each_bot_asks_the_manifold_within_its_session_and_trace(platform):
    platform.start_manifold()
    runner = platform.start_runner()
    platform.start_operator()
    platform.start_gateway()
    body = platform.join(room_url=ROOM, sessionId="sess-last-hop", userId="user-lh").json()
    platform.wait_running(ROOM)
    wait_for(lambda: httpx.get(f"{platform.manifold_url}/citations", params={"session_id": "sess-last-hop"},
                               timeout=5).json(), timeout=30, what="the manifold's citation for the session")
    httpx.post(f"{runner}/sessions/{body['launchId']}/leave", timeout=10)
    platform.stop_all()
    records = [r for r in platform.records() if r["attrs"].get("session.id") == "sess-last-hop"]
    services = {r["service"] for r in records}
    assert services == {"bot-gateway", "bot-operator", "bot-runner", "manifold"}
    assert {r["trace_id"] for r in records} == {body["traceId"]}
    manifold = [r for r in records if r["service"] == "manifold"]
    assert any(r["message"].startswith("Calling gpt-4.1-mini") for r in manifold)
    assert {r["attrs"]["user.id"] for r in manifold} == {"user-lh"}
    assert any(r["message"].startswith("The manifold answered") for r in records if r["service"] == "bot-runner")


def test_a_users_level_is_the_citations_not_the_exports_and_a_client_may_leave_mid_stream(platform):
    url = platform.start_manifold()
    manifold = platform.procs[-1]

    def ask(chat: str, level: str, model: str = "gpt-4.1-mini") -> list[dict]:
        body = {"model": model, "stream": True, "messages": [{"role": "user", "content": f"hello {chat}"}]}
        reply = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30,
                           headers={"x-chat-id": chat, "x-user-log-level": level})
        return [e for e in _sse(reply)[1] if e["type"] == "citation"]

    (debug,) = ask("chat-debug", "DEBUG")
    assert " DEBUG openai_responses: Request body keys" in debug["data"]["document"][0]
    assert ask("chat-quiet", "ERROR") == []  # nothing at ERROR in a good run
    (failed,) = ask("chat-quiet-fail", "ERROR", model="fail-500")
    assert " INFO " not in failed["data"]["document"][0] and " ERROR " in failed["data"]["document"][0]

    body = {"model": "slow", "stream": True, "messages": [{"role": "user", "content": "a long one"}]}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, headers={"x-chat-id": "chat-left"},
                      timeout=30) as reply:
        chunks = 0
        for line in reply.iter_lines():
            chunks += '"content"' in line
            if chunks == 3:
                break  # the client goes away mid-stream
    (left,) = wait_for(lambda: httpx.get(f"{url}/citations", params={"session_id": "chat-left"}, timeout=5).json(),
                       timeout=20, what="the citation of the run whose client left")
    assert "Run cancelled by the client" in left["document"]

    platform.stop_all()
    records = platform.records()

    def of(chat: str) -> list[dict]:
        return [r for r in records if r["attrs"].get("session.id") == chat]

    assert [r for r in records if r["level"] == "DEBUG"] == []  # the user's DEBUG went to their citation only
    assert any(r["message"].startswith("Calling gpt-4.1-mini") for r in of("chat-debug"))
    for chat in ("chat-quiet", "chat-quiet-fail"):  # a user at ERROR does not silence the platform's INFO
        assert any(r["level"] == "INFO" and r["message"].startswith("Calling ") for r in of(chat)), chat
    assert any(r["message"].startswith("Run cancelled by the client") for r in of("chat-left"))
    output = manifold.output()
    assert "Failed to detach" not in output and "could not detach" not in output, output
