"""What a valid id, name, key, level or trace id is: one place, so that `session()` (which raises),
the extractors (which drop and warn), the grant store and the CLI can never disagree."""

from __future__ import annotations

import re

from otel_session._keys import LOG_LEVEL, LOG_LEVEL_SIG, SESSION_ID, USER_ID, USER_NAME
from otel_session._levels import parse_level

RESERVED_KEYS = frozenset({SESSION_ID, USER_ID, USER_NAME, LOG_LEVEL, LOG_LEVEL_SIG})

ID_MAX = 128
TEXT_MAX = 256

_ID = re.compile(r"[A-Za-z0-9._:@-]{1,128}")
_EXTRA_KEY = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
SIGNATURE = re.compile(r"([0-9]{1,12})\.([0-9a-f]{64})")  # `<expiry>.<hex HMAC-SHA256>`
_TRACE_HEX = re.compile(r"[0-9a-f]{32}")


def _short(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:40] + "…")


def is_id_key(key: str) -> bool:
    """Keys named like an id (`session.id`, `bot.launch_id`) hold ids and get the id rule."""
    last = key.rsplit(".", 1)[-1]
    return last == "id" or last.endswith("_id")


def id_error(value: object) -> str | None:
    if not isinstance(value, str):
        return f"must be a string, not {type(value).__name__}"
    if not _ID.fullmatch(value):
        return (
            f"{_short(value)} is not a valid id: use 1-{ID_MAX} characters of "
            "letters, digits and . _ : @ -"
        )
    return None


def text_error(value: object) -> str | None:
    if not isinstance(value, str):
        return f"must be a string, not {type(value).__name__}"
    if not value:
        return "must not be empty"
    if len(value) > TEXT_MAX:
        return f"is {len(value)} characters long; at most {TEXT_MAX} are allowed"
    if _CONTROL.search(value):
        return f"{_short(value)} contains control characters"
    return None


def parse_trace_id(value: int | str) -> int:
    """A trace id as an int, from an int or 32 hex digits as in a traceparent, not all zero
    (`ValueError`; `TypeError` for another type)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"a trace id must be an int or 32 hex digits, not {type(value).__name__}")
    if isinstance(value, str):
        text = value.strip().lower()
        if not _TRACE_HEX.fullmatch(text):
            raise ValueError(f"invalid trace id {_short(value)}: use 32 hex digits, not all zero")
        value = int(text, 16)
    if not 0 < value < 1 << 128:
        raise ValueError("invalid trace id: use 32 hex digits, not all zero (a non-zero 128-bit number)")
    return value


def level_error(value: object) -> str | None:
    try:
        parse_level(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        return str(exc)
    return None


def signature_error(value: object) -> str | None:
    if not isinstance(value, str) or not SIGNATURE.fullmatch(value):
        return "not a level signature (<expiry>.<64 hex digits>)"
    return None


def entry_error(key: str, value: object) -> str | None:
    """Why an incoming `key=value` may not travel on, or None when it may.

    Ids, the user name and the level get their own rules; other members (someone else's
    baggage) only have to be free of control characters, within the W3C size limits.
    """
    if key == LOG_LEVEL:
        return level_error(value)
    if key == LOG_LEVEL_SIG:
        return signature_error(value)
    if is_id_key(key):
        return id_error(value)
    if key == USER_NAME:
        return text_error(value)
    if not isinstance(value, str):
        return f"must be a string, not {type(value).__name__}"
    if _CONTROL.search(value):
        return f"{_short(value)} contains control characters"
    return None


def extra_key_error(key: object) -> str | None:
    if not isinstance(key, str) or not _EXTRA_KEY.fullmatch(key):
        return f"{key!r} is not a lowercase dotted name like 'bot.launch_id'"
    if key in RESERVED_KEYS:
        return f"{key!r} is set by its own argument of session(), not through extra"
    return None
