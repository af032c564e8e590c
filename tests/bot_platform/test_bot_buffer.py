"""Tail-based debug across the bot platform's real processes: when a bot fails, the DEBUG records of
its trace from the gateway, the operator and the runner are exported; a session next to it that did
not fail exports none."""

from __future__ import annotations

import time

import pytest

from tests.helpers.bot_platform import DRILL, DRILL_TOKEN, admin
from tests.helpers.support import otlp_records, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.manifold]  # and the folder's (tests/conftest.py)
ROOM = "https://rooms.example.test/buffered"
BUFFERED = {"OTEL_SESSION_BUFFER_LEVEL": "DEBUG", "GLOBAL_LOG_LEVEL": "INFO"}


def test_a_session_that_fails_in_the_runner_exports_its_debug_records_from_every_service(platform):
    platform.start_manifold(**BUFFERED)
    platform.start_runner(level="INFO", BOT_FAULT_MESSAGE=DRILL, **BUFFERED)
    platform.start_runner(level="INFO", **BUFFERED)
    platform.start_operator(**BUFFERED)
    platform.start_gateway(BOT_ADMIN_TOKEN=DRILL_TOKEN, **BUFFERED)
    failing = platform.join(room_url=ROOM, sessionId="s-fails", userId="u-1").json()
    fine = platform.join(room_url=f"{ROOM}-fine", sessionId="s-fine", userId="u-2").json()
    for reply in (failing, fine):
        platform.wait_status(reply["launchId"], "running")
    # each bot's question: the manifold's records in its launch's trace (the manifold's start-up records, in
    # none, may land before or after them)
    asked = {failing["traceId"], fine["traceId"]}
    wait_for(lambda: asked <= {r["trace_id"] for r in platform.records() if r["service"] == "manifold"}, 30,
             what="both bots' questions to the manifold")
    time.sleep(0.5)  # some keepalives, held in the runners
    assert not [r for r in platform.records() if r["level"] == "DEBUG"]  # INFO everywhere: held, not exported

    runner_of = {b["launchId"]: b["runner"] for b in platform.warm_bots()}
    drilled = failing if runner_of[failing["launchId"]] == platform.runner_urls[0] else fine
    spared = fine if drilled is failing else failing
    admin(platform, drilled["launchId"], DRILL)
    platform.wait_status(drilled["launchId"], "failed")
    (error,) = wait_for(lambda: [r for r in platform.records() if r["message"] == "Bot admin failed"], 5,
                        what="the failure exported")

    def flushed() -> dict[str, list[dict]]:
        by_service: dict[str, list[dict]] = {}
        for r in platform.records():
            if r["level"] == "DEBUG" and r["trace_id"] == drilled["traceId"]:
                by_service.setdefault(r["service"], []).append(r)
        return by_service if {"bot-gateway", "bot-operator", "bot-runner", "manifold"} <= set(by_service) else {}

    by_service = wait_for(flushed, 4, interval=0.1, what="the failed trace's DEBUG records from every service")
    failed_at = error["time"]
    for service, records in by_service.items():
        assert all(r["attrs"]["otel_session.buffered"] is True for r in records if r["time"] < failed_at), service
        assert all(r["attrs"]["session.id"] == drilled["sessionId"] for r in records), service
    # exported in their original order, with their original timestamps (an OTLP batch groups its records
    # by logger, so the order to check is each logger's)
    exported: dict[tuple[str, str], list[int]] = {}
    for r in otlp_records(platform.logs, by_time=False):
        if r["level"] == "DEBUG" and r["trace_id"] == drilled["traceId"]:
            exported.setdefault((r["service"], r["scope"]), []).append(r["time"])
    assert all(times == sorted(times) for times in exported.values()), exported
    assert sum(map(len, exported.values())) == sum(map(len, by_service.values()))
    assert any(m["message"].startswith("Join details") for m in by_service["bot-gateway"])
    assert any("Request body keys" in m["message"] for m in by_service["manifold"])
    assert any(m["message"].startswith(f"Launch {drilled['launchId']} claimed") for m in by_service["bot-operator"])
    before = [r["message"] for r in by_service["bot-runner"] if r["time"] < failed_at]
    assert "Keepalive written" in before and before[-1] == "Fault drill message received; failing the session"
    assert any(m.startswith("Linking ") for m in before)  # Pipecat's own loguru records, held and flushed too
    after = [r for r in by_service["bot-runner"] if r["time"] > failed_at]  # the teardown, exported directly
    assert after and not any("otel_session.buffered" in r["attrs"] for r in after)

    time.sleep(1.0)
    assert not [r for r in platform.records() if r["level"] == "DEBUG" and r["trace_id"] != drilled["traceId"]]
    assert platform.record(spared["launchId"])["status"] == "running"


def test_the_bots_redis_client_logs_nothing_into_the_session_that_opens_a_connection(otel_logs):
    """redis-py 7+ asks each new connection for maintenance notifications and logs Redis 7's refusal at
    DEBUG, in whatever session opened it: held and flushed with every failed session, until we stopped asking."""
    import asyncio

    from bot.service import redis_client
    from otel_session import capture, session
    from tests.helpers.bot_platform import REDIS_URL

    async def main() -> list[str]:
        client = redis_client(url=REDIS_URL)
        try:
            with session(session_id="s-redis"), capture(level="DEBUG") as cap:
                assert await client.ping()
            return [r.message for r in cap.records]
        finally:
            await client.aclose()

    assert not [m for m in asyncio.run(main()) if "maintenance" in m]
