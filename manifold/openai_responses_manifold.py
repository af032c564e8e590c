"""
title: OpenAI Responses
id: openai_responses
author: otel-session
description: OpenAI Responses API models, streamed, with each run's logs shown to its user as a "Logs" citation.
version: 0.1.0
required_open_webui_version: 0.12.0
requirements: otel-session, openai>=2
license: Apache-2.0
"""

# An Open WebUI "manifold": one pipe exposing several models. Open WebUI executes this file in a
# fresh module on every (re)load, so nothing long-lived lives here: providers, processors and
# capture buffers belong to the `otel_session` package, configured once per process.
#
# Logging: every run is one trace, one `otel_session.session(...)` and one `otel_session.capture(level)`.
# Two levels, two owners. The capture's level is the user's choice (user valve, INHERIT = the pipe's
# valve): it decides what the "Logs" citation shows, DEBUG included, and nothing else. What is exported
# is not the user's to decide: the process's logging configuration, or a trusted caller's
# `otel_session.log_level` baggage (TRUST_INCOMING_BAGGAGE). Everything logged during the run — this
# module, the openai SDK, httpx — is captured for that run alone and always emitted as one citation,
# whether the run succeeded, failed or was cancelled. Secrets are redacted before anything is captured
# or exported.
#
# The run lives in its own asyncio task, which feeds deltas through a queue to the generator the host
# iterates; the generator attaches no context. So a client that stops reading leaves nothing of the run
# attached to the host's task, and however the consumer goes away (aclose, cancellation, garbage
# collection) the run is cancelled and still emits its citation.

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import re
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import httpx
import openai
from openai.types.responses import (
    ResponseCompletedEvent,
    ResponseErrorEvent,
    ResponseFailedEvent,
    ResponseIncompleteEvent,
    ResponseTextDeltaEvent,
)
from opentelemetry import trace
from opentelemetry.context import Context
from pydantic import BaseModel, Field, field_validator

import otel_session
from otel_session import SECRET_PATTERNS, parse_level

logger = logging.getLogger(__name__)
tracer = trace.get_tracer("openai_responses_manifold")

Emitter = Callable[[dict[str, Any]], Awaitable[Any]]
_ID = re.compile(r"[A-Za-z0-9._:@-]{1,128}")
QUEUE_HIGH_WATER = 64  # deltas read ahead of the consumer before the run waits for it
_RUNS: set[asyncio.Task[None]] = set()


INHERIT = "INHERIT"  # a user valve's "use the pipe's level"


def resolve_level(user: str | int | None = None, valve: str | int | None = None,
                  env: Mapping[str, str] | None = None) -> int:
    """Open WebUI's order: the user valve unless missing or INHERIT, else the pipe's valve, else
    `GLOBAL_LOG_LEVEL`, else INFO."""
    env_value = (os.environ if env is None else env).get("GLOBAL_LOG_LEVEL")
    for candidate in (user, valve, env_value):
        if candidate is not None and not (isinstance(candidate, str) and candidate.strip().upper() in ("", INHERIT)):
            return parse_level(candidate)
    return logging.INFO


class UpstreamError(Exception):
    """What went wrong upstream, worded for the user who sees it in the reply."""


def _level_name(value: str, allow_inherit: bool) -> str:
    text = (value or "").strip().upper()
    if allow_inherit and text in ("", INHERIT):
        return INHERIT
    parse_level(text)  # raises ValueError naming the valid levels
    return text


class Pipe:
    class Valves(BaseModel):
        BASE_URL: str = Field(default="https://api.openai.com/v1", description="Responses API base URL")
        API_KEY: str = Field(default="", description="API key", json_schema_extra={"input": {"type": "password"}})
        MODELS: str = Field(default="gpt-4.1-mini,gpt-4.1", description="Model ids, comma-separated")
        LOG_LEVEL: str = Field(
            default_factory=lambda: os.environ.get("GLOBAL_LOG_LEVEL", "INFO").upper() or "INFO",
            description="Level of the logs shown in the Logs citation (DEBUG, INFO, WARNING, ERROR, CRITICAL); "
                        "what is exported is the platform's logging configuration, not this",
        )
        TRUST_INCOMING_BAGGAGE: bool = Field(
            default=False, description="Continue the caller's trace and session id (only behind a trusted proxy)"
        )
        REQUEST_TIMEOUT_S: float = Field(default=120.0, gt=0)
        EMIT_TIMEOUT_S: float = Field(default=5.0, gt=0, description="Longest wait for one UI event")

        @field_validator("LOG_LEVEL")
        @classmethod
        def _level(cls, value: str) -> str:
            return _level_name(value, allow_inherit=False)

    class UserValves(BaseModel):
        LOG_LEVEL: str = Field(default=INHERIT, description="Level of your Logs citation; INHERIT uses the pipe's")

        @field_validator("LOG_LEVEL")
        @classmethod
        def _level(cls, value: str) -> str:
            return _level_name(value, allow_inherit=True)

    def __init__(self) -> None:
        self.type = "manifold"
        self.valves = self.Valves()
        if otel_session.configured() is None:  # a host (or an earlier load) may have configured it
            otel_session.configure(service_name=os.environ.get("OTEL_SERVICE_NAME") or "manifold")
        otel_session.add_redaction(*SECRET_PATTERNS)

    def pipes(self) -> list[dict[str, str]]:
        return [{"id": m, "name": f"OpenAI: {m}"} for m in (x.strip() for x in self.valves.MODELS.split(",")) if m]

    async def pipe(
        self,
        body: dict[str, Any],
        __user__: dict[str, Any] | None = None,
        __metadata__: dict[str, Any] | None = None,
        __event_emitter__: Emitter | None = None,
        __request__: Any = None,
        __chat_id__: str | None = None,
        __message_id__: str | None = None,
    ) -> str | AsyncIterator[str]:
        run = _Run(self.valves, body, __user__ or {}, __metadata__ or {}, __event_emitter__, __request__,
                   __chat_id__)
        if body.get("stream"):
            return run.stream()
        return await run.complete()


class _Run:
    """One call of `pipe()`: one task, one trace, one session, one capture, one citation."""

    def __init__(self, valves: Pipe.Valves, body: dict[str, Any], user: dict[str, Any], metadata: dict[str, Any],
                 emitter: Emitter | None, request: Any, chat_id: str | None) -> None:
        self.valves, self.body, self.user, self.metadata = valves, body, user, metadata
        self.emitter, self.request, self.chat_id = emitter, request, chat_id
        self.finishing = False  # the run is emitting its status and citation: not to be cancelled

    async def complete(self) -> str:
        parts = [part async for part in self.stream()]
        return "".join(parts)

    async def stream(self) -> AsyncIterator[str]:
        """What the host iterates: the deltas `_work` produces in its own task. Attaches nothing."""
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        worker = asyncio.create_task(self._work(queue), name="openai_responses.run")
        _RUNS.add(worker)  # the loop keeps only a weak reference to a task
        worker.add_done_callback(_RUNS.discard)
        try:
            while True:
                delta = await queue.get()
                queue.task_done()
                if delta is None:
                    break
                yield delta
            await asyncio.wait({worker})  # the end marker is its last step
            if not worker.cancelled() and (exc := worker.exception()) is not None:
                raise exc
        finally:  # the consumer is done: by the end, aclose(), cancellation, or the GC's aclose()
            if not worker.done():
                if not self.finishing:  # once the run is emitting its citation, let it
                    worker.cancel()
                await asyncio.wait({worker}, timeout=2 * self.valves.EMIT_TIMEOUT_S + 5)

    async def _work(self, queue: asyncio.Queue[str | None]) -> None:
        """The run, in its own task (so in its own copy of the context): whatever it attaches is
        attached here and detached here, never in the host's task."""
        try:
            with contextlib.ExitStack() as scope:
                logs = self._open(scope)
                error: str | None = None
                try:
                    try:
                        await self._emit({"type": "status", "data": {"description": "Thinking…", "done": False}})
                        async with contextlib.aclosing(self._deltas()) as deltas:  # closed now, not by the GC
                            async for delta in deltas:
                                queue.put_nowait(delta)
                                if queue.qsize() >= QUEUE_HIGH_WATER:  # a slow consumer holds the upstream back
                                    await queue.join()
                    except UpstreamError as exc:
                        error = str(exc)
                        queue.put_nowait(f"\n\n**Error:** {error}")
                    except Exception as exc:  # a bug here must still reach the user, with its logs
                        logger.exception("Run failed unexpectedly")
                        error = f"{type(exc).__name__}: {exc}"
                        queue.put_nowait(f"\n\n**Error:** {error}")
                    await queue.join()  # done when the consumer has taken everything
                except asyncio.CancelledError:
                    logger.warning("Run cancelled by the client before it finished")
                    error = "cancelled"
                    raise
                finally:
                    self.finishing = True
                    await self._finish(logs, error)
        finally:
            queue.put_nowait(None)  # always: the consumer never waits for an end that does not come

    def _open(self, scope: contextlib.ExitStack) -> otel_session.Capture:
        """Trace, session and capture of the run, entered on `scope`; returns the capture."""
        trusted = self.valves.TRUST_INCOMING_BAGGAGE and self.request is not None
        if trusted:  # the caller's trace and baggage as they came, its export level included
            scope.enter_context(otel_session.attach(otel_session.extract_headers(self.request.headers)))
        # Untrusted: a new trace, and (edge) no baggage anything upstream of us put in the context.
        scope.enter_context(tracer.start_as_current_span("openai_responses.pipe",
                                                         context=None if trusted else Context()))
        scope.enter_context(otel_session.session(
            session_id=self._session_id(trusted), user_id=self._user_id(), user_name=self._user_name(),
            edge=not trusted))
        # The user's level is the citation's, never the export's.
        return scope.enter_context(otel_session.capture(level=resolve_level(self._user_level(),
                                                                            self.valves.LOG_LEVEL)))

    async def _deltas(self) -> AsyncGenerator[str, None]:
        model = _model_id(str(self.body.get("model", "")), self.valves.MODELS)
        if not model:
            raise UpstreamError("no model was selected")
        logger.info("Calling %s with %d messages", model, len(self.body.get("messages") or []))
        logger.debug("Request body keys: %s", sorted(self.body))
        if len(self.valves.API_KEY) >= 8:  # whatever its shape, the key itself never reaches a record
            otel_session.add_redaction(re.escape(self.valves.API_KEY))
        client = openai.AsyncOpenAI(base_url=self.valves.BASE_URL, api_key=self.valves.API_KEY or "unset",
                                    max_retries=1, timeout=self.valves.REQUEST_TIMEOUT_S)
        chars = 0
        stream: Any = None
        try:
            stream = await client.responses.create(model=model, input=_input(self.body), stream=True)
            async for event in stream:
                if isinstance(event, ResponseTextDeltaEvent):
                    chars += len(event.delta)
                    yield event.delta
                elif isinstance(event, ResponseCompletedEvent):
                    usage = event.response.usage
                    logger.info("Response completed: %d characters, %s tokens", chars,
                                usage.total_tokens if usage else "unknown")
                    return
                elif isinstance(event, ResponseFailedEvent):
                    err = event.response.error
                    detail = f"{err.message} ({err.code})" if err else "no reason given"
                    logger.error("Response failed: %s", detail)
                    raise UpstreamError(f"the model's response failed: {detail}")
                elif isinstance(event, ResponseIncompleteEvent):
                    details = event.response.incomplete_details
                    reason = details.reason if details and details.reason else "no reason given"
                    logger.error("Response incomplete: %s", reason)
                    raise UpstreamError(f"the response stopped early: {reason}")
                elif isinstance(event, ResponseErrorEvent):
                    logger.error("Error event from the API: %s (%s)", event.message, event.code)
                    raise UpstreamError(f"the API reported an error: {event.message} ({event.code})")
                else:
                    logger.debug("Event %s", event.type)
            logger.error("The stream ended without a final event after %d characters", chars)
            raise UpstreamError("the connection to the API dropped before the response completed")
        except openai.APIStatusError as exc:
            message = _api_message(exc)
            logger.error("API answered HTTP %d: %s", exc.status_code, message)
            raise UpstreamError(f"the API answered HTTP {exc.status_code}: {message}") from exc
        except (openai.APIConnectionError, httpx.TransportError) as exc:
            logger.error("Connection to the API failed: %s: %s", type(exc).__name__, exc)
            raise UpstreamError(f"the connection to the API dropped ({type(exc).__name__}: {exc})") from exc
        except openai.APIError as exc:  # an SSE payload with a top-level "error" object
            logger.error("Error from the API stream: %s", exc.message)
            raise UpstreamError(f"the API reported an error: {exc.message}") from exc
        finally:
            with contextlib.suppress(Exception):
                if stream is not None:
                    await stream.close()
                await client.close()

    async def _finish(self, logs: otel_session.Capture, error: str | None) -> None:
        """Status done, then the Logs citation: always, and neither may raise or hang."""
        description = "Done" if error is None else ("Cancelled" if error == "cancelled" else "Failed")
        await self._emit({"type": "status", "data": {"description": description, "done": True}})
        if not logs.records:
            return
        # Open WebUI names this module `function_<id>_<uuid>` anew on every load; show the user a stable name.
        text = logs.render().replace(f" {__name__}: ", " openai_responses: ").replace("```", "ˋˋˋ")
        # The header names the run's session (an id: letters, digits and . _ : @ -), so an operator can paste it
        # into `otel-session logs --session` or `otel-session view` and see the platform's records of this run.
        ids = otel_session.current()
        if ids is not None and ids.session_id:
            text = f"session {ids.session_id}\n{text}"
        await self._emit({
            "type": "citation",
            "data": {
                "source": {"name": "Logs"},
                "document": [f"```text\n{text}\n```"],
                "metadata": [{"source": "Logs", "date_accessed": datetime.datetime.now(datetime.UTC).isoformat()}],
            },
        })

    async def _emit(self, event: dict[str, Any]) -> None:
        if self.emitter is None:
            return
        try:
            await asyncio.wait_for(self.emitter(event), self.valves.EMIT_TIMEOUT_S)
        except TimeoutError:
            logger.warning("The UI did not take the %s event within %.0f s; skipped", event["type"],
                           self.valves.EMIT_TIMEOUT_S)
        except Exception as exc:
            logger.warning("The UI refused the %s event: %s: %s", event["type"], type(exc).__name__, exc)

    def _session_id(self, trusted: bool) -> str | None:
        """The chat, else the browser tab's socket, else a new id; a trusted caller's id wins."""
        if trusted and (incoming := otel_session.current()) and incoming.session_id:
            return None  # keep the caller's session.id from the attached baggage
        for candidate in (self.chat_id, self.metadata.get("chat_id"), self.metadata.get("session_id")):
            if isinstance(candidate, str) and _ID.fullmatch(candidate):
                return candidate
        return uuid.uuid4().hex

    def _user_id(self) -> str | None:
        value = self.user.get("id")
        return value if isinstance(value, str) and _ID.fullmatch(value) else None

    def _user_name(self) -> str | None:
        value = self.user.get("name")
        if not isinstance(value, str) or not value.strip():
            return None
        clean = "".join(ch for ch in value if ch.isprintable())[:256]
        return clean or None

    def _user_level(self) -> str | None:
        valves = self.user.get("valves")
        value = valves.get("LOG_LEVEL") if isinstance(valves, dict) else getattr(valves, "LOG_LEVEL", None)
        return value if isinstance(value, str) else None


def _model_id(requested: str, models: str) -> str:
    """Open WebUI sends `<function id>.<model id>`; model ids have dots of their own (gpt-4.1)."""
    if requested in {m.strip() for m in models.split(",")}:
        return requested
    return requested.split(".", 1)[1] if "." in requested else requested


def _input(body: dict[str, Any]) -> Any:
    """Open WebUI's chat messages as Responses API input items (text parts only)."""
    items: list[dict[str, str]] = []
    for message in body.get("messages") or []:
        role = message.get("role")
        if role not in ("user", "assistant", "system", "developer"):
            continue
        content = message.get("content")
        if isinstance(content, list):
            content = "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
        if isinstance(content, str) and content:
            items.append({"role": role, "content": content})
    return items


def _api_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    return exc.message
