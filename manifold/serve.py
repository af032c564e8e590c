"""A small host that serves the pipe the way Open WebUI calls it: `python -m manifold.serve`.

An OpenAI-compatible `POST /v1/chat/completions` (SSE streaming and not). The pipe file is loaded as
Open WebUI loads it and called with the reserved arguments built from the request, so the platform's
last hop (the bot runner asking a question) is real locally. What the pipe emits — status and the
"Logs" citation — comes back as extra SSE events `data: {"event": {...}}` (Open WebUI's own
convention), or under `events` in a non-streaming reply. The host logs as service `manifold`.

Upstream: the real API when `OPENAI_API_KEY` is set, else the local stand-in (manifold/standin.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from opentelemetry import trace

import otel_session
from manifold.loader import load_function

logger = logging.getLogger(__name__)

PIPE_FILE = Path(__file__).resolve().parent / "openai_responses_manifold.py"
FUNCTION_ID = "openai_responses"
DEFAULT_MODEL = "gpt-4.1-mini"
KEEP_CITATIONS = 200


def _valves(pipe: Any, base_url: str | None) -> Any:
    trust = os.environ.get("MANIFOLD_TRUST_INCOMING_BAGGAGE", "true").lower() in ("1", "true", "yes")
    settings: dict[str, Any] = {
        "API_KEY": os.environ.get("OPENAI_API_KEY", ""),
        "MODELS": os.environ.get("MANIFOLD_MODELS", DEFAULT_MODEL),
        "TRUST_INCOMING_BAGGAGE": trust,  # this host sits behind the platform's own services
    }
    if base_url:
        settings["BASE_URL"] = base_url
    if os.environ.get("GLOBAL_LOG_LEVEL"):
        settings["LOG_LEVEL"] = os.environ["GLOBAL_LOG_LEVEL"]
    return pipe.Valves(**settings)


def create_app(*, telemetry: bool = True, base_url: str | None = None) -> FastAPI:
    """`base_url`: the Responses API to call; None picks the real one with a key, else a local stand-in."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # As Open WebUI does: its GLOBAL_LOG_LEVEL is the process's level (the library's default is INFO).
        level = os.environ.get("GLOBAL_LOG_LEVEL", "").strip() or None
        tel = otel_session.configure(service_name="manifold", level=level) if telemetry else None
        standin = None
        url = base_url or os.environ.get("OPENAI_BASE_URL")
        if not url and not os.environ.get("OPENAI_API_KEY"):
            from manifold.standin import FakeResponsesAPI

            standin = FakeResponsesAPI().start()
            url = standin.base_url
            logger.info("No OPENAI_API_KEY: answering from the local Responses API stand-in at %s", url)
        pipe, frontmatter = load_function(PIPE_FILE, FUNCTION_ID)
        pipe.valves = _valves(pipe, url)
        app.state.pipe = pipe
        app.state.citations = deque(maxlen=KEEP_CITATIONS)
        logger.info("Serving %s %s", frontmatter.get("title", FUNCTION_ID), frontmatter.get("version", ""))
        try:
            yield
        finally:
            if standin is not None:
                standin.stop()
            if tel is not None:
                tel.force_flush()

    app = FastAPI(title="manifold host", lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [
            {"id": f"{FUNCTION_ID}.{m['id']}", "object": "model", "owned_by": "manifold"}
            for m in app.state.pipe.pipes()]}

    @app.get("/citations")
    async def citations(session_id: str | None = None, trace_id: str | None = None) -> list[dict[str, Any]]:
        """The Logs citations of recent runs (what Open WebUI would have shown their users)."""
        return [c for c in app.state.citations
                if (session_id is None or c["session_id"] == session_id)
                and (trace_id is None or c["trace_id"] == trace_id)]

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        try:
            body = await request.json()
            if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
                raise ValueError("the body must be a JSON object with a 'messages' list")
        except ValueError as exc:
            return JSONResponse({"error": {"message": str(exc), "type": "invalid_request_error"}}, status_code=400)
        pipe = app.state.pipe
        model = str(body.get("model") or DEFAULT_MODEL)
        body["model"] = model if model.startswith(f"{FUNCTION_ID}.") else f"{FUNCTION_ID}.{model}"
        chat_id = request.headers.get("x-chat-id") or body.get("chat_id") or uuid.uuid4().hex
        user_id = str(body.get("user") or request.headers.get("x-user-id") or "anonymous")
        user: dict[str, Any] = {"id": user_id, "name": request.headers.get("x-user-name") or user_id,
                                "email": "", "role": "user"}
        if request.headers.get("x-user-log-level"):
            user["valves"] = pipe.UserValves(LOG_LEVEL=request.headers["x-user-log-level"])
        events: list[dict[str, Any]] = []

        async def emitter(event: dict[str, Any]) -> None:
            events.append(event)
            if event.get("type") == "citation":
                app.state.citations.append(_citation_record(event, chat_id))

        out = await pipe.pipe(
            body, __user__=user, __event_emitter__=emitter, __request__=request, __chat_id__=chat_id,
            __message_id__=uuid.uuid4().hex,
            __metadata__={"chat_id": chat_id, "session_id": None, "message_id": uuid.uuid4().hex},
        )
        completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if not body.get("stream"):
            return {"id": completion_id, "object": "chat.completion", "created": created, "model": body["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": out},
                                 "finish_reason": "stop"}],
                    "events": events}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            data = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": body["model"],
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            return f"data: {json.dumps(data)}\n\n"

        async def sse() -> AsyncIterator[str]:
            sent = 0
            async with contextlib.aclosing(out) as deltas:
                async for delta in deltas:
                    for event in events[sent:]:
                        yield f"data: {json.dumps({'event': event})}\n\n"
                    sent = len(events)
                    yield chunk({"content": delta})
            for event in events[sent:]:
                yield f"data: {json.dumps({'event': event})}\n\n"
            yield chunk({}, "stop")
            yield "data: [DONE]\n\n"

        return StreamingResponse(sse(), media_type="text/event-stream")

    return app


def _citation_record(event: dict[str, Any], chat_id: str) -> dict[str, Any]:
    """Called from the pipe's emitter, so inside the run's session and trace."""
    info = otel_session.current()
    span = trace.get_current_span().get_span_context()
    return {"session_id": info.session_id if info else None, "chat_id": chat_id,
            "trace_id": format(span.trace_id, "032x") if span.is_valid else None,
            "document": event["data"]["document"][0]}


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="host the Open WebUI pipe behind an OpenAI-compatible API")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args()
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    # `python -m manifold.serve` runs this file as `__main__`: call the module by its own name, so its loggers
    # are `manifold.serve`, not `__main__`.
    from manifold.serve import main as serve_main

    serve_main()
