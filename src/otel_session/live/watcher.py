"""The live wing's thread: mirrors the grants held in Redis into the state, audits their first use
here, and exchanges the debug buffer's flushes (`signals`). The emit path never talks to Redis."""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Iterable
from typing import Any

from otel_session._diagnostics import internal
from otel_session._grant_table import GrantTable
from otel_session._state import State
from otel_session.live import store, urls
from otel_session.live.signals import FlushSignals
from otel_session.live.store import Grant

logger = logging.getLogger("otel_session.grants")

POLL_S = 0.5
SWEEP_S = 5.0


def table_of(grants: Iterable[Grant], now: float) -> GrantTable:
    """The live grants among the stored ones (expired ones are left out)."""
    by_session: dict[str, tuple[int, str]] = {}
    by_user: dict[str, tuple[int, str]] = {}
    next_expiry = math.inf
    for grant in grants:
        if grant.expires_at <= now:
            continue
        next_expiry = min(next_expiry, grant.expires_at)
        level = grant.levelno
        for who, table in ((grant.session_id, by_session), (grant.user_id, by_user)):
            if who and (who not in table or level < table[who][0]):
                table[who] = (level, grant.id)
    return GrantTable(by_session, by_user, next_expiry)


class GrantWatcher:
    def __init__(self, state: State, redis_url: str, prefix: str = "", service: str = "", poll_s: float = POLL_S,
                 signals: FlushSignals | None = None) -> None:
        """`signals`: the debug buffer's flushes to exchange with the other processes on each poll."""
        self.state = state
        self.redis_url, self.prefix, self.service, self.poll_s = redis_url, prefix, service, poll_s
        self.signals = signals
        self.errors = 0
        self._stop = threading.Event()
        self._used: queue.SimpleQueue[tuple[str, float]] = queue.SimpleQueue()
        self._grants: dict[str, Grant] = {}
        self._seen: dict[str, Grant] = {}  # every grant loaded lately: a use outlives a quick revoke
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="otel-session-grants", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)

    def used(self, grant_id: str) -> None:
        """A context in this process is exported at this grant's level (called once per grant)."""
        self._used.put((grant_id, time.time()))

    def _run(self) -> None:
        outage = urls.outages()
        client: Any = None
        version: int | None = None
        last_sweep = 0.0
        down = False
        while not self._stop.is_set():
            if self.signals is not None:
                self.signals.drop_stale()
            try:
                if client is None:  # here, not before the loop: a cluster client connects as it is built
                    client = urls.client(self.redis_url, decode_responses=True, socket_connect_timeout=1,
                                         socket_timeout=1, **_quiet())
                if store.version(client, prefix=self.prefix) != version:
                    version, live = store.load_active(client, prefix=self.prefix)
                    self._grants = {g.id: g for g in live}
                    self._remember(live)
                if time.monotonic() - last_sweep > SWEEP_S:
                    last_sweep = time.monotonic()
                    store.sweep(client, self.service, prefix=self.prefix)
                self._audit_uses(client)
                if self.signals is not None:
                    self.signals.exchange(client)
                if down:
                    logger.info("Debug grants: Redis reachable again")
                down = False
            except outage as exc:
                if not down:
                    logger.warning("Debug grants: Redis at %s unreachable (%s); keeping the grants known so far "
                                   "until they expire (and debug-buffer flushes wait)",
                                   urls.safe_url(self.redis_url), type(exc).__name__)
                down = True
            except Exception:  # a defect, or an exporter that raised during a flush: the thread goes on
                self.errors += 1
                if self.errors == 1 or self.errors % 100 == 0:
                    internal.exception("otel_session: the Redis watcher failed a poll (%d so far); it goes on",
                                       self.errors)
            self._publish()
            self._stop.wait(self.poll_s)
        if client is not None:
            client.close()

    def _publish(self) -> None:
        table = table_of(self._grants.values(), time.time())
        current = self.state.grants
        if (table.by_session, table.by_user) != (current.by_session, current.by_user):
            self.state.set_grants(table)

    def _remember(self, live: list[Grant]) -> None:
        stale = time.time() - 60
        self._seen = {**{i: g for i, g in self._seen.items() if g.expires_at > stale}, **{g.id: g for g in live}}

    def _audit_uses(self, client: Any) -> None:
        while True:
            try:
                grant_id, at = self._used.get_nowait()
            except queue.Empty:
                return
            if (grant := self._seen.get(grant_id)) is not None:
                try:
                    store.record_use(client, grant, self.service, prefix=self.prefix, at=at)
                except BaseException:
                    self._used.put((grant_id, at))  # Redis is away: audit this use when it is back
                    raise


def _quiet() -> dict[str, Any]:
    """No maintenance-notifications handshake (redis-py 7+): a Redis before 8 refuses it, and the
    client logs that, outside any session, in every configured process."""
    try:
        from redis.maint_notifications import MaintNotificationsConfig
    except ImportError:
        return {}
    return {"maint_notifications_config": MaintNotificationsConfig(enabled=False)}
