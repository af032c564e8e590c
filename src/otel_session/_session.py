"""The session context: ids and level in OTel baggage, attached for a block of sync or async code."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from opentelemetry import baggage, context
from opentelemetry.context import Context

from otel_session import _validation as v
from otel_session._context import baggage_level
from otel_session._flush import flush_on_error
from otel_session._keys import LOG_LEVEL, SESSION_ID, USER_ID, USER_NAME
from otel_session._levels import level_name, parse_level
from otel_session._scope import Scope, detach
from otel_session._signing import signer, ttl_error


@dataclass(frozen=True)
class SessionInfo:
    session_id: str | None
    user_id: str | None
    user_name: str | None
    log_level: int | None


def info_from(ctx: Context | None = None) -> SessionInfo | None:
    """The session carried by `ctx` (default: the current context), or None outside any session."""
    values = baggage.get_all(ctx)
    ids = [values.get(k) for k in (SESSION_ID, USER_ID, USER_NAME)]
    level = baggage_level(values)
    if level is None and all(x is None for x in ids):
        return None
    sid, uid, name = (x if isinstance(x, str) else None for x in ids)
    return SessionInfo(session_id=sid, user_id=uid, user_name=name, log_level=level)


def current() -> SessionInfo | None:
    """The active session's ids and level, or None outside any session."""
    return info_from()


class _Attached(Scope["SessionInfo | None"]):
    """Attach a context for a block. Its level needs nothing else: levels follow the record's own
    context (`_stdlib`, `_processor`), whoever attached it."""

    _token: object | None = None
    _attached: Context | None = None

    def _context(self) -> Context:
        raise NotImplementedError

    def __enter__(self) -> SessionInfo | None:
        if self._token is not None:
            raise RuntimeError("this context manager is already in use; create a new one")
        ctx = self._attached = self._context()
        self._token = context.attach(ctx)
        return info_from(ctx)

    def __exit__(self, *exc_info: object) -> None:
        token, self._token = self._token, None
        ctx, self._attached = self._attached, None
        if ctx is not None:
            flush_on_error(ctx, exc_info[1])
        if token is not None:
            detach(token, "session")


class attach(_Attached):  # noqa: N801 - used like a function: `with attach(ctx):`
    """Attach an extracted context (after a hop); its session level applies as in `session()`."""

    def __init__(self, ctx: Context) -> None:
        if not isinstance(ctx, Context):
            raise TypeError(f"attach() takes an OpenTelemetry Context, not {type(ctx).__name__}")
        self._ctx = ctx

    def _context(self) -> Context:
        return self._ctx


class session(_Attached):  # noqa: N801 - used like a function: `with session(...):`
    """Put the session's ids and level into baggage for the block.

    `None` keeps what the current context already has; `edge=True` starts from empty baggage, so
    nothing a client sent survives. Invalid values raise ValueError before anything is attached.

    With a signing key (`configure(signing_key=)`, `OTEL_SESSION_SIGNING_KEY`) the level is signed
    for this session id, valid for `log_level_ttl_s` (default 24 h) from the block's start; a level
    kept from the outer context under a new session id is signed again for it, if it counted.
    """

    def __init__(
        self,
        session_id: str | None = None,
        user_id: str | None = None,
        user_name: str | None = None,
        log_level: str | int | None = None,
        edge: bool = False,
        extra: Mapping[str, str] | None = None,
        *,
        log_level_ttl_s: float | None = None,
    ) -> None:
        if log_level_ttl_s is not None:
            error = "is only for a session that sets log_level" if log_level is None else ttl_error(log_level_ttl_s)
            if error:
                raise ValueError(f"log_level_ttl_s: {error}")
        entries: dict[str, str] = {}
        for key, value, check in (
            (SESSION_ID, session_id, v.id_error),
            (USER_ID, user_id, v.id_error),
            (USER_NAME, user_name, v.text_error),
        ):
            if value is not None:
                error = check(value)
                if error:
                    raise ValueError(f"{key}: {error}")
                entries[key] = value
        if log_level is not None:
            entries[LOG_LEVEL] = level_name(parse_level(log_level))
        for key, value in (extra or {}).items():
            error = v.extra_key_error(key)
            if error is None and value is not None:
                error = (v.id_error if v.is_id_key(key) else v.text_error)(value)
            if error:
                raise ValueError(f"extra {key}: {error}")
            if value is not None:
                entries[key] = value
        self._entries = entries
        self._edge = edge
        self._ttl_s = log_level_ttl_s

    def _context(self) -> Context:
        outer = ctx = baggage.clear() if self._edge else context.get_current()
        for key, value in self._entries.items():
            ctx = baggage.set_baggage(key, value, ctx)
        if LOG_LEVEL in self._entries or SESSION_ID in self._entries:
            ctx = signer.stamp(outer, ctx, self._ttl_s, new_level=LOG_LEVEL in self._entries)
        return ctx
