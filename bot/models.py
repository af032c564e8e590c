"""Request and job schemas. Requests refuse unknown fields by name; jobs keep them (the `otel` carrier)."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from bot import rooms
from otel_session import id_error, text_error

MAX_TOKEN = 4096
MAX_MESSAGE = 4096


def _checked(check: Any, value: str | None) -> str | None:
    if value is not None and (error := check(value)):
        raise ValueError(error)
    return value


def _room_url(value: str) -> str:
    return rooms.canonical(value)


class _Launch(BaseModel):
    """What a join and a job share: the room and the caller's ids, validated the same way."""

    room_url: str
    userId: str | None = None  # noqa: N815 - the platform's wire names
    userName: str | None = None  # noqa: N815
    personalityId: str | None = Field(default=None, max_length=128)  # noqa: N815

    _url = field_validator("room_url")(_room_url)

    @field_validator("sessionId", "launchId", "userId", "personalityId", check_fields=False)
    @classmethod
    def _ids(cls, value: str | None) -> str | None:
        return _checked(id_error, value)

    @field_validator("userName")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return _checked(text_error, value)

    @property
    def room(self) -> str:
        """The room's name in Redis: a hash of the canonical URL."""
        return rooms.room_hash(self.room_url)


class JoinRequest(_Launch):
    """`POST /join` body. `token` is a secret: it travels only inside the job payload."""

    model_config = ConfigDict(extra="forbid")

    sessionId: str | None = None  # noqa: N815
    token: SecretStr | None = Field(default=None, max_length=MAX_TOKEN)


class Job(_Launch):
    """A launch job as queued by the gateway (plus its `otel` carrier, kept as an unknown field)."""

    model_config = ConfigDict(extra="allow")

    sessionId: str  # noqa: N815
    launchId: str  # noqa: N815
    token: str | None = Field(default=None, max_length=MAX_TOKEN)
    created_ts: float = Field(default_factory=time.time)

    def pending_lock(self) -> dict[str, Any]:
        from bot.launches import Launches

        return Launches.pending_lock(launch_id=self.launchId, session_id=self.sessionId, room=self.room,
                                     room_url=rooms.display(self.room_url))


class StartRequest(Job):
    """`POST /start` body: a job and the attempt the operator claimed for it (the fencing token)."""

    attempt: int = Field(ge=1)


class _ByLaunchOrRoom(BaseModel):
    model_config = ConfigDict(extra="forbid")

    launchId: str | None = None  # noqa: N815
    room_url: str | None = None

    _url = field_validator("room_url")(lambda v: None if v is None else _room_url(v))

    @field_validator("launchId")
    @classmethod
    def _id(cls, value: str | None) -> str | None:
        return _checked(id_error, value)

    @model_validator(mode="after")
    def _one(self) -> _ByLaunchOrRoom:
        if (self.launchId is None) == (self.room_url is None):
            raise ValueError("give exactly one of launchId and room_url")
        return self


class AdminRequest(_ByLaunchOrRoom):
    message: str = Field(min_length=1, max_length=MAX_MESSAGE)


class LeaveRequest(_ByLaunchOrRoom):
    pass


class KeepaliveValue(BaseModel):
    model_config = ConfigDict(extra="allow")

    session_id: str
    launch_id: str
    attempt: int = 0
    timestamp: float = Field(default_factory=time.time)
