"""What every bot service shares: its Redis client and its telemetry setup."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, MaxConnectionsError, RedisClusterException, RedisError

import otel_session
from bot.settings import Settings, redis_url
from otel_session.live import urls

BAGGAGE_KEYS = ("session.*", "user.*", "bot.*")
# What "Redis is away" raises: a cluster client's RedisClusterException (no node answers, slots not all served)
# is not a RedisError, and is an outage all the same, never a defect.
REDIS_ERRORS: tuple[type[Exception], ...] = (RedisError, RedisClusterException)


def redis_client(settings: Settings | None = None, url: str | None = None) -> Any:
    """A sized pool that waits for a free connection (then `pool_exhausted`), never fails at once.

    A call that finds its connection closed (Redis restarted) is retried twice on a fresh one: every
    launch step is a Lua script that is safe to run again (`bot.launches`).

    Short connect timeout: an unreachable Redis is reported at once, not after a minute.

    `REDIS_URL` may name any form of `otel_session.live.urls`. On Sentinel the client asks the Sentinels for
    the master again after a failover; on a Cluster (`redis+cluster://`) the pool is per node and does not
    wait: a full one raises `MaxConnectionsError` at once, which `pool_exhausted` also counts as overload.
    """
    settings = settings or Settings()
    target = urls.parse(url or redis_url())
    options: dict[str, Any] = dict(
        decode_responses=True, socket_connect_timeout=2, socket_timeout=10, health_check_interval=15,
        max_connections=settings.redis_pool_size,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2, supported_errors=(ConnectionError,)),
        **_no_maintenance_notifications(),
    )
    if target.kind != "single":
        return urls.async_client(target, **options)  # a cluster client takes no health_check_interval
    pool = redis.BlockingConnectionPool.from_url(target.url, timeout=settings.redis_pool_timeout_s, **options)
    return redis.Redis(connection_pool=pool)


def _no_maintenance_notifications() -> dict[str, Any]:
    """redis-py 7+'s asyncio client asks every new connection for maintenance notifications; a Redis
    before 8 refuses, and the client logs that at DEBUG in whatever session opened the connection.
    (Open WebUI 0.12 pins a redis-py whose asyncio client neither asks nor takes the setting.)"""
    import inspect

    from redis.asyncio.connection import AbstractConnection

    if "maint_notifications_config" not in inspect.signature(AbstractConnection.__init__).parameters:
        return {}
    from redis.maint_notifications import MaintNotificationsConfig

    return {"maint_notifications_config": MaintNotificationsConfig(enabled=False)}


def pool_exhausted(exc: BaseException) -> bool:
    """Every connection busy (for the pool timeout, or at once on a Cluster's or Sentinel's pool): overload
    (429), not an unreachable Redis (503)."""
    return isinstance(exc, MaxConnectionsError) or (
        isinstance(exc, ConnectionError) and str(exc) == "No connection available.")


def log_level(env: Mapping[str, str] | None = None) -> str | None:
    """`GLOBAL_LOG_LEVEL`, the bot services' level knob (None when unset: the library's default);
    ValueError naming the variable for a value that is not a level."""
    value = ((os.environ if env is None else env).get("GLOBAL_LOG_LEVEL") or "").strip()
    if not value:
        return None
    try:
        otel_session.parse_level(value)
    except ValueError:
        raise ValueError(f"GLOBAL_LOG_LEVEL={value!r} is not a log level (DEBUG, INFO, WARNING, ...)") from None
    return value


def setup_telemetry(service_name: str) -> otel_session.Telemetry:
    """Session logging at `GLOBAL_LOG_LEVEL`; live debug grants come from the platform's own Redis unless
    `OTEL_SESSION_REDIS_URL` names another."""
    telemetry = otel_session.configure(service_name=service_name, level=log_level(), baggage_keys=BAGGAGE_KEYS,
                                       redis_url=os.environ.get("OTEL_SESSION_REDIS_URL") or redis_url())
    console_logging()
    return telemetry


def console_logging() -> None:
    """Human-readable lines on stderr for someone running a service by hand (`BOT_CONSOLE_LEVEL`)."""
    import logging
    import sys

    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(os.environ.get("BOT_CONSOLE_LEVEL", "INFO").upper())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)


def loguru_console() -> None:
    """Loguru (Pipecat's logger) on stderr at `BOT_CONSOLE_LEVEL`; its records reach OTel through the bridge."""
    import sys

    from loguru import logger as loguru_logger

    loguru_logger.remove()  # Pipecat's default handler prints every DEBUG line
    loguru_logger.add(sys.stderr, level=os.environ.get("BOT_CONSOLE_LEVEL", "INFO").upper())
    otel_session.install_loguru_bridge()
