"""A process honours the debug grants held in Redis: sessions switch within seconds, and back."""

from __future__ import annotations

import json
import logging
import time
import uuid

import pytest
import redis

from otel_session import session
from otel_session._grant_table import GrantTable
from otel_session._state import STATE
from otel_session.live.store import GRANTS, VERSION, Grant
from otel_session.live.watcher import table_of
from tests.helpers.bot_platform import REDIS_URL
from tests.helpers.support import TcpProxy, wait_for

log = logging.getLogger("tests.grants")


@pytest.fixture
def store(monkeypatch):
    prefix = f"test-{uuid.uuid4().hex[:10]}:"
    monkeypatch.setenv("OTEL_SESSION_REDIS_PREFIX", prefix)
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)

    def put(grant_id: str, ttl_s: float = 60.0, **who: str) -> None:
        client.hset(prefix + GRANTS, grant_id, json.dumps(
            {"id": grant_id, "level": "DEBUG", "expires_at": time.time() + ttl_s, "created_at": time.time(),
             "reason": "test", "by": "tests", "session_id": None, "user_id": None, **who}))
        client.incr(prefix + VERSION)

    def drop(grant_id: str) -> None:
        client.hdel(prefix + GRANTS, grant_id)
        client.incr(prefix + VERSION)

    yield put, drop
    for key in client.scan_iter(match=f"{prefix}*"):
        client.delete(key)
    client.close()


def _debug_seen(otel_logs, session_id: str, text: str) -> bool:
    with session(session_id=session_id, user_id=f"user-of-{session_id}"):
        log.debug(text)
    return text in otel_logs.messages()


def test_a_grant_switches_a_live_session_to_debug_and_a_revoke_switches_it_back(otel_logs, store):
    put, drop = store
    otel_logs.configure(redis_url=REDIS_URL)
    assert not _debug_seen(otel_logs, "s-live", "before the grant")
    put("g1", session_id="s-live")
    wait_for(lambda: _debug_seen(otel_logs, "s-live", f"granted {time.monotonic()}"), 2.5, interval=0.1,
             what="the grant to reach this process")
    assert not _debug_seen(otel_logs, "s-other", "another session")  # other sessions are unaffected
    drop("g1")
    wait_for(lambda: not _debug_seen(otel_logs, "s-live", f"revoked {time.monotonic()}"), 2.5, interval=0.1,
             what="the revoke to reach this process")


def test_a_session_that_started_before_the_grant_switches_too(otel_logs, store):
    put, _ = store
    otel_logs.configure(redis_url=REDIS_URL)
    with session(session_id="s-early", user_id="u-early"):  # one context, attached before the grant
        log.debug("before")
        put("g-early", user_id="u-early")
        wait_for(lambda: (log.debug("after %s", time.monotonic()) or True)
                 and any(m.startswith("after") for m in otel_logs.messages()), 2.5, interval=0.1,
                 what="the running session to switch")
    assert "before" not in otel_logs.messages()


def test_a_grant_expires_by_its_own_clock_even_with_redis_gone(otel_logs, store, monkeypatch):
    put, _ = store
    with TcpProxy(6379) as proxy:
        otel_logs.configure(redis_url=proxy.url())
        put("g-short", ttl_s=2.0, session_id="s-exp")
        wait_for(lambda: _debug_seen(otel_logs, "s-exp", f"on {time.monotonic()}"), 2.5, interval=0.1,
                 what="the grant")
        proxy.cut()
        assert _debug_seen(otel_logs, "s-exp", "still on while Redis is away")  # the level it last knew
        wait_for(lambda: not _debug_seen(otel_logs, "s-exp", f"off {time.monotonic()}"), 4, interval=0.1,
                 what="the grant to expire here")
        started = time.monotonic()
        log.warning("logging never waits on Redis")
        assert time.monotonic() - started < 0.5


def test_configure_with_an_unreachable_redis_succeeds_and_warns_once(otel_logs, store):
    otel_logs.configure(redis_url="redis://127.0.0.1:1/0")
    time.sleep(1.5)  # three polls
    assert STATE.live is not None
    warnings = [r for r in otel_logs.records if "Debug grants: Redis" in r.message]
    assert len(warnings) == 1 and warnings[0].severity_number == 13  # WARN


def test_the_table_keeps_the_lowest_level_and_skips_expired_grants():
    now = time.time()

    def grant(grant_id: str, level: str, expires_at: float, **who: str) -> Grant:
        return Grant(id=grant_id, session_id=who.get("session_id"), user_id=who.get("user_id"), level=level,
                     expires_at=expires_at, created_at=now, reason="", by="tests")

    table = table_of([grant("a", "INFO", now + 60, session_id="s"), grant("b", "DEBUG", now + 60, session_id="s"),
                      grant("c", "DEBUG", now - 1, user_id="u")], now)
    assert table.level("s", None) == (logging.DEBUG, "b") and table.next_expiry == now + 60
    assert table.level("x", "u") is None and not GrantTable()


def test_a_grants_first_use_in_this_process_is_audited_once(otel_logs, store):
    from otel_session import grants

    otel_logs.configure(redis_url=REDIS_URL)
    made = grants.grant(session_id="s-used", reason="why not", by="ops", redis_url=REDIS_URL)
    wait_for(lambda: _debug_seen(otel_logs, "s-used", f"used {time.monotonic()}"), 2.5, interval=0.1, what="grant")
    for _ in range(3):
        _debug_seen(otel_logs, "s-used", "used again")
    uses = wait_for(lambda: [e for e in grants.audit(redis_url=REDIS_URL) if e["event"] == "used"], 3,
                    what="the use audited")
    assert len(uses) == 1 and uses[0]["grant_id"] == made.id and uses[0]["service"] == "otel-session-tests"
    assert [e["event"] for e in grants.audit(redis_url=REDIS_URL)] == ["created", "used"]


def test_a_forked_worker_honours_grants_made_after_the_fork(otel_logs, store, tmp_path):
    """A platform that forks workers after configure(): the watcher thread does not survive a fork;
    the child starts its own, so a grant made later still reaches it."""
    import os

    put, _ = store
    otel_logs.configure(redis_url=REDIS_URL)
    result = tmp_path / "child.txt"
    pid = os.fork()
    if pid == 0:  # the worker
        code = 3
        try:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not _debug_seen(otel_logs, "s-forked", f"child {time.monotonic()}"):
                time.sleep(0.1)
            seen = [m for m in otel_logs.messages() if m.startswith("child")]
            result.write_text(f"{STATE.live is not None} {bool(seen)} {os.getpid()}")
            code = 0
        finally:
            os._exit(code)
    time.sleep(0.3)  # the grant comes after the fork
    put("g-forked", session_id="s-forked")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert result.read_text() == f"True True {pid}"


def test_a_grant_changes_the_export_and_never_what_a_capture_keeps(otel_logs, store):
    from otel_session import capture

    put, _ = store
    otel_logs.configure(redis_url=REDIS_URL)
    put("g-export-only", session_id="s-cap")
    wait_for(lambda: _debug_seen(otel_logs, "s-cap", f"on {time.monotonic()}"), 2.5, interval=0.1, what="grant")
    with session(session_id="s-cap"), capture(level="INFO") as cap:  # the user's own choice: INFO
        log.debug("exported for the operator")
        log.info("shown to the user")
    assert "exported for the operator" in otel_logs.messages()
    assert [r.message for r in cap.records] == ["shown to the user"]


def test_a_process_that_started_before_its_redis_picks_up_grants_once_it_is_up(otel_logs, store):
    put, _ = store
    with TcpProxy(6379) as proxy:
        proxy.cut()  # services often start before their Redis
        otel_logs.configure(redis_url=proxy.url())
        put("g-later", session_id="s-later")
        time.sleep(1.0)
        assert not _debug_seen(otel_logs, "s-later", "Redis still down")
        proxy.restore()
        wait_for(lambda: _debug_seen(otel_logs, "s-later", f"up {time.monotonic()}"), 3, interval=0.1,
                 what="the grant once Redis is up")
    said = [r.message for r in otel_logs.records if "Debug grants: Redis" in r.message]
    assert len(said) == 2 and "unreachable" in said[0] and said[1] == "Debug grants: Redis reachable again"


def test_the_grant_count_metric_follows_the_grants_in_redis(otel_logs, store):
    from otel_session.testing import collected_metrics

    def counts() -> dict[str, int | float | None]:
        return {str(p.attributes["otel_session.grant.scope"]): p.value
                for p in collected_metrics()["otel_session.grant.count"]}

    put, drop = store
    otel_logs.configure(redis_url=REDIS_URL, metrics="memory")
    try:
        assert counts() == {"session": 0, "user": 0}
        put("g-m1", session_id="s-metric")
        put("g-m2", session_id="s-metric-2")
        put("g-m3", user_id="u-metric")
        wait_for(lambda: counts() == {"session": 2, "user": 1}, 2.5, interval=0.1, what="the grants to be counted")
        drop("g-m1")
        wait_for(lambda: counts() == {"session": 1, "user": 1}, 2.5, interval=0.1, what="the revoke to be counted")
    finally:
        otel_logs.configure(metrics="none")
