"""Debug grants across the bot platform's real processes: a running bot switches within seconds, and back."""

from __future__ import annotations

import time

import httpx

from otel_session import grants
from tests.support import wait_for

ROOM = "https://rooms.example.test/grants"


def _debug_after(platform, launch_id: str, since_ns: int) -> list[dict]:
    return [r for r in platform.records() if r["level"] == "DEBUG" and r["time"] > since_ns
            and r["attrs"].get("bot.launch_id") == launch_id]


def test_a_grant_switches_a_running_warm_bot_to_debug_and_a_revoke_back(platform, monkeypatch):
    monkeypatch.setenv("OTEL_SESSION_REDIS_PREFIX", platform.keys.prefix)
    platform.start_runner(level="INFO")
    platform.start_operator(GLOBAL_LOG_LEVEL="INFO")
    platform.start_gateway()
    reply = platform.join(room_url=ROOM, sessionId="s-granted", userId="u-granted")
    launch = reply.json()["launchId"]
    platform.wait_status(launch, "running")
    other = platform.join(room_url=f"{ROOM}-other", sessionId="s-not-granted").json()["launchId"]
    time.sleep(1.0)
    assert not _debug_after(platform, launch, 0)  # INFO everywhere until someone asks

    granted_at = time.time_ns()
    grant = grants.grant(session_id="s-granted", ttl_s=60, reason="a live problem", by="ops",
                         redis_url=platform.redis_url)
    switched = wait_for(lambda: _debug_after(platform, launch, granted_at), 5, interval=0.2,
                        what="the running bot's DEBUG records")
    assert (switched[0]["time"] - granted_at) / 1e9 < 2.5  # within the 2 s poll, plus the export delay
    assert {r["attrs"]["session.id"] for r in switched} == {"s-granted"}
    assert not [r for r in platform.records() if r["level"] == "DEBUG"
                and r["attrs"].get("session.id") == "s-not-granted"]

    used = wait_for(lambda: [e for e in grants.audit(redis_url=platform.redis_url) if e["event"] == "used"], 3,
                    what="the grant's first use in the runner audited")
    assert [e["service"] for e in used] == ["bot-runner"]  # the one service that works on this session

    grants.revoke(grant.id, by="ops", redis_url=platform.redis_url)
    time.sleep(2.5)  # the 2 s switch back, and the export delay
    settled = time.time_ns()
    time.sleep(1.5)
    assert not _debug_after(platform, launch, settled)
    assert [e["event"] for e in grants.audit(redis_url=platform.redis_url)] == ["created", "used", "revoked"]
    assert platform.wait_status(other, "running")


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
