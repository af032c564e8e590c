"""The bot platform end to end: real gateway, operator and runners in their own processes, real Redis."""

from __future__ import annotations

import re

import httpx

from bot.demo.harness import process_env
from bot.rooms import canonical, room_hash
from tests.helpers.support import wait_for

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
    assert lock["type"] == "warm" and lock["runner"] == runner and lock["attempt"] == 1
    assert lock["session_id"] == "sess-warm-1" and lock["launch_id"] == launch_id
    keepalive = wait_for(lambda: platform.keepalive(ROOM), what="keepalive")
    assert keepalive["session_id"] == "sess-warm-1" and keepalive["launch_id"] == launch_id
    status = httpx.get(f"{platform.gateway_url}/launches/{launch_id}", timeout=5).json()
    assert status == {"launchId": launch_id, "sessionId": "sess-warm-1", "status": "running"}
    (listed,) = platform.sessions(runner)
    assert listed["launchId"] == launch_id and listed["sessionId"] == "sess-warm-1" and listed["running"]

    left = httpx.post(f"{runner}/sessions/{launch_id}/leave", timeout=10).json()
    assert left == {"launchId": launch_id, "status": "terminated"}
    wait_for(lambda: platform.lock(ROOM) is None, what="lock freed")
    assert platform.keepalive(ROOM) is None
    assert platform.redis.lrange(platform.keys.standby_pool, 0, -1) == [runner]  # back in the pool
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
    assert any((r["message"] or "").startswith("Bot session ended") for r in records)
    all_text = "".join(p.read_text() for p in platform.logs.glob("*.jsonl"))
    assert "secret-room-token-123" not in all_text
    for key in platform.redis.scan_iter(match=f"{platform.prefix}*"):
        if platform.redis.type(key) == "string":
            assert "secret-room-token-123" not in platform.redis.get(key)


def test_cold_start_when_the_pool_is_empty_carries_the_session_into_the_spawned_process(platform):
    platform.start_operator()
    platform.start_gateway()
    reply = platform.join(room_url=ROOM, sessionId="sess-cold", userId="user-c")
    assert reply.status_code == 202, reply.text
    launch_id, trace_id = reply.json()["launchId"], reply.json()["traceId"]

    lock = platform.wait_running(ROOM)
    assert lock["type"] == "cold" and lock["session_id"] == "sess-cold" and lock["launch_id"] == launch_id
    pid = int(lock["runner"].removeprefix("cold:"))
    assert [b["pid"] for b in platform.cold_bots()] == [pid]
    env = process_env(pid)
    assert env["BOT_SESSION_ID"] == "sess-cold" and env["BOT_LAUNCH_ID"] == launch_id and env["BOT_ROOM_URL"] == ROOM
    assert env["BOT_USER_ID"] == "user-c" and env["BOT_ATTEMPT"] == "1"
    assert env["TRACEPARENT"].split("-")[1] == trace_id
    assert "session.id=sess-cold" in env["BAGGAGE"]
    assert all(value != "" for value in env.values())
    assert "BOT_ROOM_TOKEN" not in env  # no token was sent: absent, not empty
    wait_for(lambda: platform.keepalive(ROOM), what="cold keepalive")

    platform.redis.delete(platform.keys.room_active(room_hash(canonical(ROOM))))  # the room is no longer this launch's
    wait_for(lambda: not platform.cold_bots(), timeout=20, what="cold bot exit")
    platform.stop_all()
    runner_records = [r for r in platform.records() if r["file"] == f"bot-runner.{pid}.jsonl"]
    assert runner_records, "the cold bot exported its records before exiting"
    for record in runner_records:
        assert record["attrs"].get("session.id") == "sess-cold" and record["trace_id"] == trace_id, (
            record["message"], record["attrs"], record["scope"])
        assert record["attrs"]["bot.launch_id"] == launch_id and record["attrs"]["user.id"] == "user-c"
    messages = [r["message"] for r in runner_records]
    assert any("no longer this attempt's" in m for m in messages)
    assert any(m.startswith("Bot session ended: failed") for m in messages)
    assert platform.record(launch_id)["status"] == "failed"


def test_a_missing_session_id_is_generated_once_and_used_everywhere(platform):
    runner = platform.start_runner()
    platform.start_operator()
    platform.start_gateway()
    body = platform.join(room_url=ROOM, userId="u-1").json()
    session_id = body["sessionId"]
    assert re.fullmatch(r"[0-9a-f]{32}", session_id)
    assert platform.wait_running(ROOM)["session_id"] == session_id
    (listed,) = platform.sessions(runner)
    assert listed["sessionId"] == session_id
    httpx.post(f"{runner}/sessions/{body['launchId']}/leave", timeout=10)
    platform.stop_all()
    records = _for_launch(platform.records(), body["launchId"])
    assert {r["service"] for r in records} == {"bot-gateway", "bot-operator", "bot-runner"}
    assert {r["attrs"]["session.id"] for r in records} == {session_id}


def test_one_session_id_in_two_rooms_gives_two_launches_both_leavable(platform):
    runner = platform.start_runner(slots=2)
    platform.start_operator()
    platform.start_gateway()
    rooms = [f"{ROOM}-a", f"{ROOM}-b"]
    launches = [platform.join(room_url=room, sessionId="shared-tab").json()["launchId"] for room in rooms]
    assert len(set(launches)) == 2
    for room in rooms:
        platform.wait_running(room)
    listed = platform.sessions(runner)
    assert sorted(s["launchId"] for s in listed) == sorted(launches)
    assert {s["sessionId"] for s in listed} == {"shared-tab"} and all(s["running"] for s in listed)
    for launch in launches:
        assert httpx.post(f"{runner}/sessions/{launch}/leave", timeout=10).json()["status"] == "terminated"
    for room in rooms:
        wait_for(lambda room=room: platform.lock(room) is None and platform.keepalive(room) is None,
                 what=f"{room} freed")
    assert not any(s["running"] for s in platform.sessions(runner))


def test_one_room_gets_one_bot_even_under_twenty_concurrent_joins(platform):
    from concurrent.futures import ThreadPoolExecutor

    runner = platform.start_runner(slots=3)
    platform.start_operator()
    platform.start_gateway()
    with ThreadPoolExecutor(max_workers=20) as pool:
        replies = list(pool.map(lambda i: platform.join(room_url=ROOM, sessionId=f"s-{i}"), range(20)))
    codes = sorted(r.status_code for r in replies)
    assert codes == [202] + [409] * 19
    refused = next(r for r in replies if r.status_code == 409).json()
    assert "s-" not in str(refused)  # the holder's ids are not revealed
    platform.wait_running(ROOM)
    assert platform.join(room_url=ROOM, sessionId="late").status_code == 409
    wait_for(lambda: len(platform.sessions(runner)) == 1, what="one session")
    assert len(platform.sessions(runner)) == 1


def test_hostile_client_baggage_is_ignored_at_the_edge(platform):
    platform.start_gateway()
    client_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    reply = platform.join(
        room_url=ROOM, sessionId="real-session", userId="real-user",
        headers={"baggage": "user.id=admin,otel_session.log_level=DEBUG,session.id=evil,bot.launch_id=x",
                 "traceparent": f"00-{client_trace}-00f067aa0ba902b7-01"},
    )
    assert reply.status_code == 202
    body = reply.json()
    assert body["traceId"] != client_trace  # the gateway's span is the root of the join's trace
    job = platform.redis.lrange(platform.key("{bot}:launch:queue"), 0, -1)
    assert len(job) == 1 and "admin" not in job[0] and "evil" not in job[0]
    platform.stop_all()
    records = platform.records()
    assert records and all(r["service"] == "bot-gateway" for r in records)
    assert {r["attrs"].get("user.id") for r in records if "session.id" in r["attrs"]} == {"real-user"}
    assert {r["attrs"]["session.id"] for r in records if "session.id" in r["attrs"]} == {"real-session"}
    assert not [r for r in records if r["level"] == "DEBUG"]


def test_garbage_in_the_queue_is_dead_lettered_and_the_operator_goes_on(platform):
    runner = platform.start_runner()
    operator = platform.start_operator()
    platform.start_gateway()
    queue = platform.key("{bot}:launch:queue")
    garbage = ["not json", "[1, 2]", '{"room_url": "https://x.test/r"}',
               '{"room_url": "ftp://x", "sessionId": "s", "launchId": "l", "otel": {}}',
               '{"room_url": "https://x.test/r", "sessionId": "bad id!", "launchId": "l", "otel": {}}']
    platform.redis.rpush(queue, *garbage)
    dead = platform.key("{bot}:launch:dead")
    wait_for(lambda: platform.redis.llen(dead) == len(garbage), what="dead letters")
    # the operator dispatches several jobs at once: dead letters keep no order
    assert sorted(json_job["job"] for json_job in map(_json, platform.redis.lrange(dead, 0, -1))) == sorted(garbage)
    assert platform.redis.llen(platform.key("{bot}:launch:processing")) == 0
    assert operator.popen.poll() is None
    body = platform.join(room_url=ROOM, sessionId="after-garbage").json()
    platform.wait_running(ROOM)
    assert platform.sessions(runner)[0]["launchId"] == body["launchId"]


def _json(text):
    import json

    return json.loads(text)


def test_the_operator_recovers_what_a_crashed_operator_left_and_never_starts_a_second_bot(platform):
    runner = platform.start_runner(slots=2)
    platform.start_gateway()
    body = platform.join(room_url=ROOM, sessionId="sess-crash").json()
    queue, processing = platform.key("{bot}:launch:queue"), platform.key("{bot}:launch:processing")
    raw = platform.redis.lmove(queue, processing, "LEFT", "RIGHT")  # popped; then the operator died
    assert raw is not None

    operator = platform.start_operator()
    platform.wait_running(ROOM)
    wait_for(lambda: platform.redis.llen(processing) == 0, what="processing list drained")
    assert [s["launchId"] for s in platform.sessions(runner)] == [body["launchId"]]

    operator.popen.kill()  # crash after dispatch, before the job left the processing list
    operator.popen.wait()
    platform.redis.rpush(processing, raw)
    platform.start_operator()
    wait_for(lambda: platform.redis.llen(processing) == 0, what="re-delivered job handled")
    assert [s["launchId"] for s in platform.sessions(runner)] == [body["launchId"]]  # still one bot


def test_a_stale_job_never_takes_over_another_launchs_room(platform):
    import json

    from opentelemetry import trace

    import otel_session

    runner = platform.start_runner(slots=2)
    platform.start_gateway()
    body = platform.join(room_url=ROOM, sessionId="sess-owner").json()
    with trace.get_tracer("tests").start_as_current_span("stale"), otel_session.session(
        session_id="sess-stale", extra={"bot.launch_id": "stale-launch"}
    ):
        stale = otel_session.inject_payload(
            {"room_url": ROOM, "sessionId": "sess-stale", "launchId": "stale-launch"})
    platform.redis.rpush(platform.key("{bot}:launch:queue"), json.dumps(stale))
    platform.start_operator()
    lock = platform.wait_running(ROOM)
    assert lock["launch_id"] == body["launchId"]  # the real launch runs; the stale one did not take over
    wait_for(lambda: platform.redis.llen(platform.key("{bot}:launch:queue")) == 0, what="queue drained")
    wait_for(lambda: platform.redis.llen(platform.key("{bot}:launch:processing")) == 0, what="processing drained")
    assert [s["launchId"] for s in platform.sessions(runner)] == [body["launchId"]]
    assert platform.lock(ROOM)["launch_id"] == body["launchId"]
    platform.stop_all()
    (rejected,) = [r for r in platform.records() if (r["message"] or "").startswith("Job rejected")]
    assert rejected["service"] == "bot-operator"
    assert rejected["attrs"]["session.id"] == "sess-stale" and rejected["attrs"]["bot.launch_id"] == "stale-launch"
