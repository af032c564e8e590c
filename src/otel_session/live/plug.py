"""`RedisLive`: the live wing as the core's state sees it (`_state.Live`)."""

from __future__ import annotations

from otel_session._state import State
from otel_session.live.signals import FlushSignals
from otel_session.live.watcher import GrantWatcher


class RedisLive:
    """Debug grants and buffer flushes from the Redis at `redis_url`, keys behind `prefix`."""

    def __init__(self, state: State, redis_url: str, prefix: str = "", service: str = "") -> None:
        self.state, self.redis_url, self.prefix, self.service = state, redis_url, prefix, service
        self.watcher: GrantWatcher | None = None

    @property
    def place(self) -> tuple[str, str]:
        return self.redis_url, self.prefix

    def start(self) -> None:
        signals = FlushSignals(self.state.buffer, self.prefix, self.service)
        self.watcher = GrantWatcher(self.state, self.redis_url, self.prefix, self.service, signals=signals)
        self.watcher.start()

    def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None

    def used(self, grant_id: str) -> None:
        if self.watcher is not None:
            self.watcher.used(grant_id)

    def forked(self) -> RedisLive:
        return RedisLive(self.state, self.redis_url, self.prefix, self.service)
