"""The bot platform end to end: real gateway, operator and runners in their own processes, real Redis."""

from __future__ import annotations

import re

import httpx

from tests.support import wait_for

ROOM = "https://rooms.example.test/standup"


def _for_launch(records, launch_id):
    return [r for r in records if r["attrs"].get("bot.launch_id") == launch_id]


def test_warm_join_carries_the_session_through_every_service(platform):
    runner = platform.start_runner()
    platform.start_operator()
    platform.start_gateway()

    reply = platform.join(room_url=ROOM, sessionId="sess-warm-1", userId="user-7", userName="Ada Lovelace",
                          token="secret-room-token-123")
    assert reply.status_code == 202, reply.text
    body = reply.json()
    assert body["status"] == "queued" and body["sessionId"] == "sess-warm-1"
    launch_id, trace_id = body["launchId"], body["traceId"]
    assert re.fullmatch(r"[0-9a-f]{32}", trace_id)

    lock = platform.wait_running(ROOM)
    assert lock["type"] == "warm" and lock["runner_url"] == runner
    assert lock["session_id"] == "sess-warm-1" and lock["launch_id"] == launch_id
    keepalive = wait_for(lambda: platform.keepalive(ROOM), what="keepalive")
    assert keepalive["session_id"] == "sess-warm-1" and keepalive["launch_id"] == launch_id
    (listed,) = platform.sessions(runner)
    assert listed["launchId"] == launch_id and listed["sessionId"] == "sess-warm-1" and listed["running"]

    left = httpx.post(f"{runner}/sessions/{launch_id}/leave", timeout=10).json()
    assert left == {"launchId": launch_id, "status": "terminated"}
    wait_for(lambda: platform.lock(ROOM) is None, what="lock freed")
    assert platform.keepalive(ROOM) is None
    assert platform.redis.lrange(platform.key("bot:standby:pool"), 0, -1) == [runner]  # back in the pool
    platform.stop_all()

    records = _for_launch(platform.records(), launch_id)
    services = {r["service"] for r in records}
    assert services == {"bot-gateway", "bot-operator", "bot-runner"}
    for record in records:
        assert record["attrs"]["session.id"] == "sess-warm-1", record
        assert record["attrs"]["user.id"] == "user-7" and record["attrs"]["user.name"] == "Ada Lovelace"
        assert record["trace_id"] == trace_id, record
    pipecat = [r for r in records if r["scope"].startswith("pipecat")]
    assert pipecat, "Pipecat's own records must carry the session"
    assert any(r["message"] == "Bot session ended" for r in records)
    all_text = "".join(p.read_text() for p in platform.logs.glob("*.jsonl"))
    assert "secret-room-token-123" not in all_text
    for key in platform.redis.scan_iter(match=f"{platform.prefix}*"):
        if platform.redis.type(key) == "string":
            assert "secret-room-token-123" not in platform.redis.get(key)
