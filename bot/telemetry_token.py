"""The telemetry token: what `POST /join` hands a page so it may send its own log records to the
gateway's relay (`POST /v1/logs`, `bot.log_relay`) under the session it joined, and no other.

    v1.<payload>.<signature>

`payload` is the unpadded base64url of a compact JSON object: `sid` the session id, `lid` the launch id,
`uid` the user id (only when the join named one), `iat` and `exp` (Unix seconds: issued, expires).
`signature` is the unpadded base64url of HMAC-SHA256 over `v1.<payload>`, keyed with a key derived from
`BOT_TELEMETRY_KEY` (so the same secret used for something else never signs a token). The token is opaque
to the page: it is not encrypted (the ids in it are the page's own), only unforgeable.

A token is checked by its signature first (in constant time), and only then read: a forged or tampered
token costs one HMAC and is never parsed. No Redis, no state: every gateway with the same key accepts the
tokens of every other.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass

from otel_session import id_error

logger = logging.getLogger(__name__)

VERSION = "v1"
MAX_TOKEN_CHARS = 1024  # three ids of at most 128 characters and two times fit in well under this
MIN_KEY_CHARS = 16
KEY_ENV = "BOT_TELEMETRY_KEY"
_DERIVE = b"otel-session bot telemetry token v1"
_B64URL = re.compile(r"[A-Za-z0-9_-]+")


class TokenError(ValueError):
    """A token that is refused. `kind` says why, for counting: `malformed`, `signature` or `expired`."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Claims:
    """What a valid token says."""

    session_id: str
    launch_id: str
    user_id: str | None
    issued_at: int
    expires_at: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    """Only the canonical unpadded base64url spelling: one token has one spelling."""
    if not text or not _B64URL.fullmatch(text):
        raise binascii.Error("not base64url")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(raw) != text:
        raise binascii.Error("not the canonical spelling")
    return raw


class TokenSigner:
    """Issues and checks tokens with one key. `TokenSigner.from_setting(value)`: the key from
    `BOT_TELEMETRY_KEY`, or a random one for this process when it is unset (with one warning)."""

    def __init__(self, secret: bytes, *, shared: bool = True) -> None:
        if len(secret) < MIN_KEY_CHARS:
            raise ValueError(f"{KEY_ENV} must be at least {MIN_KEY_CHARS} characters")
        self._key = hmac.new(secret, _DERIVE, hashlib.sha256).digest()
        self.shared = shared  # False: a per-process key, so tokens work on this gateway only

    @classmethod
    def from_setting(cls, value: str | None) -> TokenSigner:
        if value is None:
            logger.warning("%s is not set: telemetry tokens are signed with a key of this process and are "
                           "accepted by this gateway only (set the same %s on every gateway)", KEY_ENV, KEY_ENV)
            return cls(secrets.token_bytes(32), shared=False)
        return cls(value.encode())

    def _sign(self, signed: bytes) -> bytes:
        return hmac.new(self._key, signed, hashlib.sha256).digest()

    def issue(self, session_id: str, launch_id: str, user_id: str | None, lifetime_s: float,
              now: float | None = None) -> str:
        issued = int(time.time() if now is None else now)
        claims: dict[str, object] = {"sid": session_id, "lid": launch_id}
        if user_id is not None:
            claims["uid"] = user_id
        claims.update(iat=issued, exp=issued + max(1, int(lifetime_s + 0.999)))
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        signed = f"{VERSION}.{payload}"
        return f"{signed}.{_b64(self._sign(signed.encode()))}"

    def verify(self, token: str, now: float | None = None) -> Claims:
        """The token's claims, or `TokenError` (never another exception, whatever `token` holds)."""
        if len(token) > MAX_TOKEN_CHARS or not token.isascii():
            raise TokenError("malformed", "not a telemetry token")
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != VERSION:
            raise TokenError("malformed", "not a telemetry token")
        try:
            signature = _unb64(parts[2])
        except (binascii.Error, ValueError):
            raise TokenError("malformed", "not a telemetry token") from None
        if not hmac.compare_digest(signature, self._sign(f"{parts[0]}.{parts[1]}".encode())):
            raise TokenError("signature", "the token's signature does not match")
        try:
            claims = json.loads(_unb64(parts[1]))
        except (binascii.Error, ValueError):
            raise TokenError("malformed", "not a telemetry token") from None  # signed by us: cannot happen
        if not isinstance(claims, dict):
            raise TokenError("malformed", "not a telemetry token")
        session_id, launch_id, user_id = claims.get("sid"), claims.get("lid"), claims.get("uid")
        issued, expires = claims.get("iat"), claims.get("exp")
        if (not isinstance(session_id, str) or id_error(session_id) or not isinstance(launch_id, str)
                or id_error(launch_id) or (user_id is not None and (not isinstance(user_id, str) or id_error(user_id)))
                or type(issued) is not int or type(expires) is not int):
            raise TokenError("malformed", "not a telemetry token")
        if (time.time() if now is None else now) >= expires:
            raise TokenError("expired", "the token has expired")
        return Claims(session_id, launch_id, user_id, issued, expires)
