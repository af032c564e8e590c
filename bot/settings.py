"""Every service's knobs, read once at start from the environment (`Settings.from_env()`).

A bad value stops the service at start with the variable's name, never mid-run. Tests set small
values (a 2 s lock, a 0.2 s keepalive) so a fault shows within seconds.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields

from otel_session.live import urls

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
# Knobs whose empty value is a mistake, not "unset": a deployment that meant to share a key must not
# quietly fall back to a key of each process.
SET_MEANS_GIVEN = frozenset({"BOT_TELEMETRY_KEY"})
MIN_TELEMETRY_KEY_CHARS = 16


def redis_url(env: Mapping[str, str] | None = None) -> str:
    """The platform's Redis: `REDIS_URL`, else the local default. Every bot service, the demo and the tests use it.
    Any form of `otel_session.live.urls`: one Redis, `redis+sentinel://...` or `redis+cluster://...`."""
    env = os.environ if env is None else env
    return env.get("REDIS_URL") or DEFAULT_REDIS_URL


def check_redis_urls(env: Mapping[str, str]) -> None:
    """ValueError naming the variable when `REDIS_URL` or `OTEL_SESSION_REDIS_URL` is not a Redis URL (the
    message hides its password): a service refuses it at start, in one line."""
    for name in ("REDIS_URL", "OTEL_SESSION_REDIS_URL"):
        if value := env.get(name):
            try:
                urls.parse(value)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None


@dataclass(frozen=True)
class Settings:
    start_timeout_s: float = 3.0  # BOT_START_TIMEOUT_S: one warm `/start` call
    pending_ttl_s: float = 60.0  # BOT_PENDING_TTL_S: a queued launch's room claim, renewed while queued
    lock_ttl_s: float = 30.0  # BOT_LOCK_TTL_S: a starting or running launch's room lock, renewed by its bot
    keepalive_s: float = 5.0  # BOT_KEEPALIVE_S: how often a bot renews its lock
    max_cold: int = 4  # BOT_MAX_COLD: cold bots at once, across every operator
    max_session_s: float = 3600.0  # BOT_MAX_SESSION_S: a session ends after this long
    drain_s: float = 30.0  # BOT_DRAIN_S: how long SIGTERM lets live sessions run on
    admin_token: str | None = None  # BOT_ADMIN_TOKEN: unset, `/admin` is refused
    heartbeat_s: float = 1.0  # BOT_HEARTBEAT_S: an operator is alive while it beat within 3 of these
    max_queue: int = 10_000  # BOT_MAX_QUEUE: beyond this many queued launches `/join` answers 429
    max_body_bytes: int = 65_536  # BOT_MAX_BODY_BYTES: request bodies beyond get 413
    max_admin_messages: int = 100  # BOT_MAX_ADMIN_MESSAGES: unread admin messages per launch
    redis_pool_size: int = 64  # BOT_REDIS_POOL_SIZE: connections per process
    redis_pool_timeout_s: float = 5.0  # BOT_REDIS_POOL_TIMEOUT_S: wait for a free connection, then 429
    record_ttl_s: float = 86_400.0  # BOT_RECORD_TTL_S: how long `GET /launches/{id}` remembers a launch
    max_wait_s: float = 30.0  # BOT_MAX_WAIT_S: the longest long poll of `GET /launches/{id}?wait_s=`; longer is capped
    dead_letter_ttl_s: float = 7 * 86_400.0  # BOT_DEAD_LETTER_TTL_S
    dead_letter_max: int = 1_000  # BOT_DEAD_LETTER_MAX: newest kept
    max_jobs: int = 32  # BOT_MAX_JOBS: launches one operator dispatches at once (a slow cold boot stalls none)
    cold_start_timeout_s: float = 30.0  # BOT_COLD_START_TIMEOUT_S: a cold bot must take its launch within this
    leave_wait_s: float = 5.0  # BOT_LEAVE_WAIT_S: `/leave` waits this long (at least 3 keepalives) for the bot
    fault_message: str | None = None  # BOT_FAULT_MESSAGE: an admin message of exactly this text fails the session
    cors_origins: tuple[str, ...] = ()  # BOT_CORS_ORIGINS: the origins a browser page may call the gateway from
    edge_trace: str = "link"  # BOT_EDGE_TRACE: what the gateway makes of an incoming traceparent (EDGE_TRACE_MODES)
    telemetry_key: str | None = None  # BOT_TELEMETRY_KEY: signs telemetry tokens; unset, a key of this process
    max_telemetry_bytes: int = 1_048_576  # BOT_MAX_TELEMETRY_BYTES: `/v1/logs` bodies beyond get 413
    telemetry_rate: float = 200.0  # BOT_TELEMETRY_RATE: browser log records a second per token; beyond, 429
    replica_wait_ms: float = 500.0  # BOT_REPLICA_WAIT_MS: how long a step waits for a replica (when there is one)
    replica_gone_s: float = 60.0  # BOT_REPLICA_GONE_S: a replica that went away is still waited for this long

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for f in fields(cls):
            name = "BOT_" + f.name.upper()
            raw = env.get(name, "").strip()
            if not raw:
                if name in SET_MEANS_GIVEN and name in env:
                    raise ValueError(f"{name} is set but empty: give it a value, or unset it")
                continue
            if f.type == "str | None":  # text knobs: admin_token, fault_message, telemetry_key
                values[f.name] = raw
                continue
            if f.name in _PARSED:  # the edge's knobs: cors_origins, edge_trace
                values[f.name] = _PARSED[f.name](name, raw)
                continue
            kind = int if f.type == "int" else float
            try:
                value = kind(raw)
            except ValueError:
                raise ValueError(f"{name}={raw!r} is not a {'whole ' if kind is int else ''}number") from None
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name}={raw!r} must be a positive number")
            values[f.name] = value
        settings = cls(**values)  # type: ignore[arg-type]
        settings.check()
        check_redis_urls(env)
        return settings

    def check(self) -> None:
        if self.telemetry_key is not None and len(self.telemetry_key) < MIN_TELEMETRY_KEY_CHARS:
            raise ValueError(f"BOT_TELEMETRY_KEY must be at least {MIN_TELEMETRY_KEY_CHARS} characters "
                             f"(a random secret, shared by every gateway)")
        if self.keepalive_s * 2 > self.lock_ttl_s:
            raise ValueError(f"BOT_KEEPALIVE_S ({self.keepalive_s}) must be at most half of BOT_LOCK_TTL_S "
                             f"({self.lock_ttl_s}): a bot renews its lock at least twice per TTL")

    @property
    def fence_after_s(self) -> float:
        """A bot that has not renewed its lock for this long stops itself, before the lock can expire."""
        margin = min(self.lock_ttl_s / 2, max(2 * self.keepalive_s, 3.0))
        return self.lock_ttl_s - margin

    @property
    def operator_ttl_s(self) -> float:
        return 3 * self.heartbeat_s


# -- the browser edge (bot.edge uses these) -----------------------------------------------------------

EDGE_TRACE_MODES = ("link", "continue", "restart")  # the first is the default
DEFAULT_PORTS = {"http": "80", "https": "443"}
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_ORIGIN = re.compile(rf"(https?)://({_LABEL}(?:\.{_LABEL})*|\[[0-9a-f:.]+\])(?::([1-9][0-9]{{0,4}}))?", re.ASCII)


def parse_origin(name: str, entry: str) -> str:
    """One origin as a browser serialises it in `Origin` (lower case, no default port); ValueError naming
    `name` and the entry for anything else: a path, a trailing slash, `*`, `null`, userinfo, another scheme."""
    match = _ORIGIN.fullmatch(entry.lower())
    port = match.group(3) if match else None
    if match is None or (port is not None and int(port) > 65535):
        raise ValueError(f"{name}: {entry[:200]!r} is not an origin (scheme://host[:port], http or https, "
                         "no path, no trailing slash, no '*'); origins are separated by commas")
    scheme, host = match.group(1), match.group(2)
    return f"{scheme}://{host}" if port in (None, DEFAULT_PORTS[scheme]) else f"{scheme}://{host}:{port}"


def parse_origins(name: str, raw: str) -> tuple[str, ...]:
    """A comma-separated list of exact origins, in order, without repeats."""
    origins = [parse_origin(name, entry.strip()) for entry in raw.split(",")]
    return tuple(dict.fromkeys(origins))


def parse_edge_trace(name: str, raw: str) -> str:
    mode = raw.lower()
    if mode not in EDGE_TRACE_MODES:
        raise ValueError(f"{name}={raw[:200]!r} is not one of {', '.join(EDGE_TRACE_MODES)}")
    return mode


_PARSED: dict[str, Callable[[str, str], object]] = {"cors_origins": parse_origins, "edge_trace": parse_edge_trace}
