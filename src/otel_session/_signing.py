"""Signed levels: with a key, a level travelling in baggage counts only when it carries a valid
HMAC-SHA256 signature (`otel_session.log_level_sig`) for its session; anything else is ignored with
one rate-limited warning. The format and the threat model: docs/levels-and-captures.md.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import threading
import time
from collections.abc import Mapping

from opentelemetry import baggage
from opentelemetry.context import Context

from otel_session._diagnostics import _RateLimit
from otel_session._keys import LOG_LEVEL, LOG_LEVEL_SIG, SESSION_ID
from otel_session._levels import level_name, parse_level
from otel_session._validation import SIGNATURE, _short, id_error

ENV_KEY = "OTEL_SESSION_SIGNING_KEY"
DOMAIN = "otel_session.log_level.v1"
DEFAULT_TTL_S = 24 * 3600.0  # a signed level lives a day unless `session(log_level_ttl_s=...)` says otherwise
MAX_TTL_S = 7 * 24 * 3600.0

# The one rate-limited warning: a burst lets one line through a minute, then counts what it held back.
_log = logging.getLogger("otel_session.internal.signing")  # propagates to the internal stderr handler only
_limit = _RateLimit(burst=1)
_warning = threading.local()


def key_bytes(key: str | bytes) -> bytes:
    """A signing key as bytes (text is UTF-8); empty or not text: ValueError/TypeError."""
    if isinstance(key, str):
        key = key.encode("utf-8")
    if not isinstance(key, (bytes, bytearray)):
        raise TypeError(f"a signing key must be str or bytes, not {type(key).__name__}")
    if not key:
        raise ValueError("a signing key must not be empty")
    return bytes(key)


def ttl_error(ttl_s: object) -> str | None:
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, (int, float)):
        return f"must be a number of seconds, not {type(ttl_s).__name__}"
    if not math.isfinite(ttl_s) or not 0 < ttl_s <= MAX_TTL_S:
        return f"{ttl_s!r} is not a lifetime in seconds between 0 and {MAX_TTL_S:g} (7 days)"
    return None


def canonical(session_id: str | None, level: str | int, expires_at: float) -> bytes:
    """What is signed: session id, canonical level and whole-second expiry, one a line."""
    return f"{DOMAIN}\n{session_id or ''}\n{level_name(parse_level(level))}\n{int(expires_at)}".encode()


def sign(session_id: str | None, level: str | int, expires_at: float, key: str | bytes) -> str:
    """The `otel_session.log_level_sig` value: `<int expiry>.<hex HMAC-SHA256>`."""
    mac = hmac.new(key_bytes(key), canonical(session_id, level, expires_at), hashlib.sha256).hexdigest()
    return f"{int(expires_at)}.{mac}"


def problem(session_id: object, level: str | int, signature: object, key: str | bytes,
            now: float | None = None) -> str | None:
    """Why a level does not count for this session under this key, or None when it does."""
    if signature is None:
        return "unsigned"
    if not isinstance(signature, str) or (found := SIGNATURE.fullmatch(signature)) is None:
        return "malformed signature"
    sid = None
    if session_id is not None:
        if not isinstance(session_id, str) or id_error(session_id) is not None:
            return "session.id is not a valid id"
        sid = session_id
    expires_at = int(found.group(1))
    expected = sign(sid, level, expires_at, key)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        return "bad signature (forged, changed, for another session, or made with another key)"
    if (time.time() if now is None else now) >= expires_at:
        return "expired"
    return None


def verify(session_id: str | None, level: str | int, signature: str | None, key: str | bytes,
           now: float | None = None) -> bool:
    """Whether `signature` is a valid, unexpired signature of `level` for `session_id` under `key`."""
    return problem(session_id, level, signature, key, now) is None


def _warn(values: Mapping[str, object], level: int, why: str) -> None:
    if getattr(_warning, "busy", False):  # a warning's own isEnabledFor may interpret this context again
        return
    _warning.busy = True
    try:
        sid = values.get(SESSION_ID)
        _log.warning("otel_session: ignored the log level %s travelling in baggage (session.id %s): %s; with "
                     "a signing key set only levels signed with it count", level_name(level),
                     _short(sid) if isinstance(sid, str) else "absent", why)
    except Exception:  # never into a logging call
        pass
    finally:
        _warning.busy = False


class Signer:
    """The process's signing key (`STATE.signing`; `STATE.set_signing_key` changes it).

    Signatures found valid are remembered with their expiry (`MEMO` of them, under this key), so the
    contexts derived from one hop (spans, the SDK's own export context) cost a lookup, not an HMAC."""

    MEMO = 4096

    def __init__(self) -> None:
        self.key: bytes | None = None
        self._valid: dict[tuple[str | None, int, str], int] = {}
        # Travelling levels refused since the process started, by the export decision's check (a context's
        # meaning is computed once: once per context that carries one); the `otel_session.log_level.refused`
        # metric reads it.
        self.refused = 0

    def set_key(self, key: bytes | None) -> None:
        self.key = key
        self._valid = {}
        if key is not None and _limit not in _log.filters:  # the warning, whatever the app's root level
            _log.setLevel(logging.WARNING)
            _log.addFilter(_limit)

    def level(self, values: Mapping[str, object], level: int, *, counted: bool = False) -> int | None:
        """`level` if it counts for the context whose baggage is `values`, else None (warned, and counted
        in `refused` when `counted`)."""
        key = self.key
        if key is None:
            return level
        sid, sig = values.get(SESSION_ID), values.get(LOG_LEVEL_SIG)
        memo: tuple[str | None, int, str] | None = None
        if isinstance(sig, str) and (sid is None or isinstance(sid, str)):
            memo = (sid, level, sig)
            expires_at = self._valid.get(memo)
            if expires_at is not None and time.time() < expires_at:
                return level
        why = problem(sid, level, sig, key)
        if why is None:
            if memo is not None:
                valid = self._valid
                if len(valid) >= self.MEMO:
                    valid.clear()
                valid[memo] = int(memo[2].partition(".")[0])
            return level
        if counted:
            self.refused += 1
        _warn(values, level, why)
        return None

    def stamp(self, outer: Context, ctx: Context, ttl_s: float | None, new_level: bool) -> Context:
        """The signature member of a context `session()` builds from `outer`.

        A level set now is signed for `ttl_s` (default a day); a level kept from `outer` under a new
        session id is signed again for that id with its old expiry, if it counted in `outer`. Without
        a key a level set now drops a stale signature member and nothing is signed."""
        key = self.key
        values = baggage.get_all(ctx)
        raw = values.get(LOG_LEVEL)
        if key is None or raw is None:
            return baggage.remove_baggage(LOG_LEVEL_SIG, ctx) if new_level and LOG_LEVEL_SIG in values else ctx
        try:
            level = parse_level(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return ctx
        sid = values.get(SESSION_ID)
        if new_level:
            expires_at = time.time() + (DEFAULT_TTL_S if ttl_s is None else ttl_s)
        else:
            before = baggage.get_all(outer)
            old = before.get(LOG_LEVEL_SIG)
            if not isinstance(old, str) or problem(before.get(SESSION_ID), level, old, key) is not None:
                return ctx  # it did not count before; it will be ignored (and warned about) here too
            expires_at = int(old.partition(".")[0])
        return baggage.set_baggage(LOG_LEVEL_SIG, sign(sid if isinstance(sid, str) else None, level, expires_at,
                                                       key), ctx)

    def reset(self) -> None:
        self.set_key(None)
        _limit.clear()


signer = Signer()
