"""Debug grants across the bot platform's real processes: a running bot switches within seconds, and back."""

from __future__ import annotations

import time

import httpx
import pytest

from otel_session import grants
from tests.helpers.support import TcpProxy, wait_for

pytestmark = pytest.mark.manifold  # and the folder's (tests/conftest.py)
ROOM = "https://rooms.example.test/grants"


def _debug_times(platform, launch_id: str) -> list[int]:
    return [r["time"] for r in platform.records() if r["level"] == "DEBUG"
            and r["attrs"].get("bot.launch_id") == launch_id]


def _switched_on(platform, launch_id: str, at_s: float) -> None:
    """The bot's first DEBUG record after `at_s` (a grant) was made within 2 s of it."""
    at = int(at_s * 1e9)
    first = wait_for(lambda: [t for t in _debug_times(platform, launch_id) if t > at], 6, interval=0.2,
                     what="the running bot's DEBUG records")[0]
    assert (first - at) / 1e9 < 2.0


def _switched_off(platform, launch_id: str, at_s: float) -> None:
    """The bot's last DEBUG record came within 2 s of `at_s` (a revoke or an expiry), and none for a
    second after (it writes a DEBUG keepalive line every 0.3 s while granted)."""
    at = int(at_s * 1e9)

    def quiet() -> list[int]:
        now = time.time_ns()
        times = _debug_times(platform, launch_id)
        return times if now - at > 2e9 and now - max(times) > 1e9 else []

    assert (max(wait_for(quiet, 8, interval=0.2, what="the bot back at INFO")) - at) / 1e9 < 2.0


@pytest.mark.parametrize("kind", ["warm", "cold"])
def test_a_grant_switches_a_running_bot_to_debug_and_back_on_revoke_and_on_expiry(platform, monkeypatch, kind):
    monkeypatch.setenv("OTEL_SESSION_REDIS_PREFIX", platform.keys.prefix)
    if kind == "warm":
        platform.start_runner(level="INFO")
    platform.start_operator(GLOBAL_LOG_LEVEL="INFO")
    platform.start_gateway()
    launch = platform.join(room_url=ROOM, sessionId="s-granted", userId="u-granted").json()["launchId"]
    assert platform.wait_status(launch, "running")["type"] == kind
    other = platform.join(room_url=f"{ROOM}-other", sessionId="s-not-granted").json()["launchId"]
    platform.wait_status(other, "running")
    time.sleep(1.0)
    assert not _debug_times(platform, launch)  # INFO everywhere until someone asks

    url = platform.redis_url
    grant = grants.grant(session_id="s-granted", ttl_s=60, reason="a live problem", by="ops", redis_url=url)
    _switched_on(platform, launch, grant.created_at)
    grants.revoke(grant.id, by="ops", redis_url=url)
    _switched_off(platform, launch, time.time())

    short = grants.grant(session_id="s-granted", ttl_s=3, reason="one more look", by="ops", redis_url=url)
    _switched_on(platform, launch, short.created_at)
    _switched_off(platform, launch, short.expires_at)

    records = platform.records()
    assert {r["attrs"].get("session.id") for r in records if r["level"] == "DEBUG"} == {"s-granted"}
    assert platform.bots() == {launch: 1, other: 1}  # nothing restarted
    events = wait_for(lambda: (e := grants.audit(redis_url=url)) and e[-1]["event"] == "expired" and e, 8,
                      what="the expiry audited")
    # created first and expired last; a use is audited by its process within a poll, maybe after a quick revoke
    assert [(e["event"], e["grant_id"]) for e in events if e["event"] != "used"] == [
        ("created", grant.id), ("revoked", grant.id), ("created", short.id), ("expired", short.id)]
    assert sorted(e["grant_id"] for e in events if e["event"] == "used") == sorted([grant.id, short.id])
    assert {e["service"] for e in events if e["event"] == "used"} == {"bot-runner"}  # the one that works on it
    uses = [r for r in platform.records() if r["scope"] == "otel_session.audit" and r["service"] == "bot-runner"
            and r["attrs"]["otel_session.audit.event"] == "used"]  # and written as WARNING records too
    assert sorted(r["attrs"]["otel_session.grant_id"] for r in uses) == sorted([grant.id, short.id])
    assert {r["level"] for r in uses} == {"WARN"}


def test_a_bot_whose_grant_redis_goes_away_keeps_the_grant_until_it_expires(platform, monkeypatch):
    monkeypatch.setenv("OTEL_SESSION_REDIS_PREFIX", platform.keys.prefix)
    with TcpProxy(6379) as proxy:  # the grants' Redis only: the bot's own Redis stays up
        platform.start_runner(level="INFO", OTEL_SESSION_REDIS_URL=proxy.url())
        runner = platform.procs[-1]
        platform.start_operator(GLOBAL_LOG_LEVEL="INFO")
        platform.start_gateway()
        launch = platform.join(room_url=ROOM, sessionId="s-away").json()["launchId"]
        platform.wait_status(launch, "running")
        grant = grants.grant(session_id="s-away", ttl_s=4, reason="Redis will go", by="ops",
                             redis_url=platform.redis_url)
        _switched_on(platform, launch, grant.created_at)
        proxy.cut()
        cut = time.time_ns()
        _switched_off(platform, launch, grant.expires_at)  # at the level it last knew, until the expiry
        assert [t for t in _debug_times(platform, launch) if t > cut + 5e8]  # DEBUG went on with Redis away
        assert runner.alive() and platform.bots() == {launch: 1}
        warnings = [r for r in platform.records() if r["service"] == "bot-runner"
                    and "Debug grants: Redis" in (r["message"] or "")]
        assert len(warnings) == 1 and warnings[0]["level"] == "WARN" and warnings[0]["time"] > cut


def test_a_user_grant_reaches_a_manifold_run_and_no_one_elses(platform, monkeypatch):
    monkeypatch.setenv("OTEL_SESSION_REDIS_PREFIX", platform.keys.prefix)
    url = platform.start_manifold()

    def ask(user: str, chat: str) -> None:
        body = {"model": "gpt-4.1-mini", "stream": False, "user": user,
                "messages": [{"role": "user", "content": "hello"}]}
        assert httpx.post(f"{url}/v1/chat/completions", json=body, headers={"x-chat-id": chat},
                          timeout=30).status_code == 200

    grants.grant(user_id="u-debugged", ttl_s=60, reason="a user reports odd answers", by="ops",
                 redis_url=platform.redis_url)
    wait_for(lambda: [e for e in grants.audit(redis_url=platform.redis_url) if e["event"] == "created"], 5)
    time.sleep(2.0)  # the manifold's watcher polls every 0.5 s
    ask("u-debugged", "chat-debugged")
    ask("u-other", "chat-other")
    platform.stop_all()
    records = [r for r in platform.records() if r["service"] == "manifold"]
    debugged = [r for r in records if r["level"] == "DEBUG" and r["attrs"].get("user.id") == "u-debugged"]
    assert debugged and any("Request body keys" in (r["message"] or "") for r in debugged)
    assert not [r for r in records if r["level"] == "DEBUG" and r["attrs"].get("user.id") == "u-other"]
