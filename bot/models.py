"""Payload and Redis value schemas. Values keep unknown fields, so old and new readers coexist."""

from __future__ import annotations

import time
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from otel_session import id_error, text_error

MAX_URL = 2048


def _room_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(value) > MAX_URL:
        raise ValueError(f"must be an http(s) URL of at most {MAX_URL} characters")
    return value


def _checked(check: Any, value: str | None) -> str | None:
    if value is not None and (error := check(value)):
        raise ValueError(error)
    return value


class _Launch(BaseModel):
    """What a join and a job share: the room and the caller's ids, validated the same way."""

    room_url: str
    userId: str | None = None  # noqa: N815 - the platform's wire names
    userName: str | None = None  # noqa: N815
    personalityId: str | None = Field(default=None, max_length=128)  # noqa: N815

    _url = field_validator("room_url")(_room_url)

    @field_validator("sessionId", "launchId", "userId", check_fields=False)
    @classmethod
    def _ids(cls, value: str | None) -> str | None:
        return _checked(id_error, value)

    @field_validator("userName")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return _checked(text_error, value)


class JoinRequest(_Launch):
    """`POST /join` body. `token` is a secret: it travels only inside the job payload."""

    model_config = ConfigDict(extra="ignore")

    sessionId: str | None = None  # noqa: N815
    token: SecretStr | None = None


class Job(_Launch):
    """A launch job as queued by the gateway (plus its `otel` carrier, kept as an unknown field)."""

    model_config = ConfigDict(extra="allow")

    sessionId: str  # noqa: N815
    launchId: str  # noqa: N815
    token: str | None = None
    created_ts: float = Field(default_factory=time.time)


class LockValue(BaseModel):
    """`room_active:{room}`: who holds the room. Never holds the token."""

    model_config = ConfigDict(extra="allow")

    status: Literal["pending", "running"] | str
    session_id: str
    launch_id: str
    timestamp: float = Field(default_factory=time.time)
    type: str | None = None
    runner_url: str | None = None
    pid: int | None = None

    def dump(self) -> str:
        return self.model_dump_json(exclude_none=True)


class KeepaliveValue(BaseModel):
    model_config = ConfigDict(extra="allow")

    session_id: str
    launch_id: str
    timestamp: float = Field(default_factory=time.time)


class AdminRequest(BaseModel):
    room_url: str
    message: str = Field(min_length=1, max_length=4096)

    _url = field_validator("room_url")(_room_url)
