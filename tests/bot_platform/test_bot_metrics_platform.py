"""The platform's metrics as its services export them: real processes on the real Redis, the `file` metrics
exporter (`<service>.<pid>.metrics.jsonl`, every 200 ms), read back with the library's `read_metrics`.

One run takes the platform through every outcome it can reach cheaply — joins queued, taken, full, invalid and
refused by CORS; relayed browser records and refused ones; a warm and a cold start, a requeue while both are busy,
a dead letter, a session failed by the fault drill — then stops every service, so each process's last collection
(written at its exit) holds its final values, and checks each instrument and that no data point carries an id.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from otel_session.log_reader import MetricPoint, read_metrics
from tests.helpers.bot_platform import DRILL, DRILL_TOKEN, Platform, admin
from tests.helpers.support import wait_for

pytestmark = [pytest.mark.redis, pytest.mark.processes]  # and the folder's (tests/conftest.py)

ORIGIN = "https://app.example.test"
KEY = "metrics-platform-key-0123456789abcdef"
BOUNDED = {"outcome", "reason", "mode", "status"}  # the only attribute keys of the platform's instruments


def _room(tag: str) -> str:
    return f"https://rooms.example.test/{tag}-{uuid.uuid4().hex[:8]}"


def _files(platform: Platform, service: str) -> list[Path]:
    return sorted(platform.logs.glob(f"{service}.*.metrics.jsonl"))


def _last(points: dict[str, list[MetricPoint]], name: str) -> dict[tuple[tuple[str, Any], ...], MetricPoint]:
    """Attributes -> the latest point of metric `name` (cumulative: it holds every value so far)."""
    return {tuple(sorted(p.attributes.items())): p for p in points.get(name, [])}


def _by(points: dict[str, list[MetricPoint]], name: str, key: str, field: str = "value") -> dict[str, Any]:
    return {dict(attrs)[key]: getattr(p, field) for attrs, p in _last(points, name).items()}


def _js_export(*bodies: str) -> dict[str, Any]:
    """A page's OTLP/HTTP JSON log export, as OpenTelemetry JS sends it."""
    now = str(time.time_ns())
    records = [{"timeUnixNano": now, "severityNumber": 9, "severityText": "INFO", "body": {"stringValue": body}}
               for body in bodies]
    return {"resourceLogs": [{"resource": {"attributes": []},
                              "scopeLogs": [{"scope": {"name": "page"}, "logRecords": records}]}]}


@pytest.fixture
def metered(tmp_path) -> Iterator[Platform]:
    platform = Platform(tmp_path, OTEL_METRICS_EXPORTER="file", OTEL_METRIC_EXPORT_INTERVAL="200",
                        BOT_CORS_ORIGINS=ORIGIN, BOT_TELEMETRY_KEY=KEY, BOT_MAX_QUEUE="2", BOT_MAX_COLD="1",
                        BOT_ADMIN_TOKEN=DRILL_TOKEN, BOT_FAULT_MESSAGE=DRILL)
    yield platform
    platform.cleanup()


def test_every_instrument_counts_what_the_platform_did_and_carries_no_id(metered):
    platform = metered
    ids: set[str] = set()  # every id and room of the run: none may be a metric attribute

    def join(room: str, tag: str) -> httpx.Response:
        body = {"room_url": room, "sessionId": f"s-{tag}-{uuid.uuid4().hex[:6]}",
                "userId": f"u-{tag}-{uuid.uuid4().hex[:6]}"}
        ids.update({room, body["sessionId"], body["userId"]})
        reply = platform.join(**body)
        if reply.status_code == 202:
            ids.add(reply.json()["launchId"])
        return reply

    # -- the gateway alone: joins of every outcome, the relay ----------------------------------------
    platform.start_gateway()
    room_a, room_b = _room("a"), _room("b")
    first, second = join(room_a, "a"), join(room_a, "a2")
    third, fourth = join(room_b, "b"), join(_room("c"), "c")
    assert [first.status_code, second.status_code, third.status_code, fourth.status_code] == [202, 409, 202, 429]
    # queued, taken, queued, full (BOT_MAX_QUEUE=2)
    assert platform.join(room_url="ftp://nowhere").status_code == 422
    preflight = {"origin": "https://evil.example.test", "access-control-request-method": "POST",
                 "access-control-request-headers": "content-type"}
    assert httpx.options(f"{platform.gateway_url}/join", headers=preflight, timeout=10).status_code == 400
    relay, token = f"{platform.gateway_url}/v1/logs", first.json()["telemetryToken"]
    assert httpx.post(relay, json=_js_export("one", "two"), headers={"authorization": f"Bearer {token}"},
                      timeout=10).status_code == 200
    assert httpx.post(relay, json=_js_export("three"), timeout=10).status_code == 401
    assert httpx.post(relay, content=b"[", headers={"authorization": f"Bearer {token}",
                                                    "content-type": "application/json"}, timeout=10).status_code == 400
    launch_a, launch_b = first.json()["launchId"], third.json()["launchId"]

    def gateway_saw_two_queued() -> bool:
        return any(p.value == 2 for f in _files(platform, "bot-gateway")
                   for p in read_metrics(f).get("bot.queue.depth", []))

    wait_for(gateway_saw_two_queued, what="the gateway's queue depth gauge at 2")

    # -- a warm and a cold start; a third launch requeued while both are busy -----------------------
    platform.start_runner(slots=1)
    platform.start_operator()
    platform.wait_status(launch_a, "running")
    platform.wait_status(launch_b, "running")
    fifth = join(_room("d"), "d")
    assert fifth.status_code == 202
    launch_d = fifth.json()["launchId"]

    def requeued() -> bool:
        return any(_by(read_metrics(f), "bot.dispatches", "outcome").get("requeued", 0) >= 1
                   for f in _files(platform, "bot-operator"))

    wait_for(requeued, what="the third launch requeued (no runner free, the one cold slot in use)")
    for launch in (launch_a, launch_b):
        assert httpx.post(f"{platform.gateway_url}/leave", json={"launchId": launch}, timeout=30).json()["status"] \
            == "ended"

    # -- the third one runs, then fails by the fault drill; a poison job is dead-lettered ------------
    platform.wait_status(launch_d, "running")
    admin(platform, launch_d, DRILL)
    assert platform.wait_status(launch_d, "failed", "ended")["status"] == "failed"
    platform.redis.rpush(platform.keys.launch_queue, "[" * 1000)
    wait_for(lambda: platform.redis.llen(platform.keys.dead_letter) == 1, what="the poison job dead-lettered")
    wait_for(lambda: not platform.cold_bots(), what="the cold bots to exit")

    def gateway_saw_it_all_done() -> bool:
        last = {n: ps[-1].value for f in _files(platform, "bot-gateway") for n, ps in read_metrics(f).items()}
        return all(last.get(f"bot.queue.{n}") == 0 for n in ("depth", "claims", "processing"))

    wait_for(gateway_saw_it_all_done, what="the gateway's queue gauges at 0")
    platform.stop_all()  # each service's last collection lands in its file at exit

    # -- what the gateway exported -------------------------------------------------------------------
    (gateway_file,) = _files(platform, "bot-gateway")
    gateway = read_metrics(gateway_file)
    assert _by(gateway, "bot.joins", "outcome") == {"queued": 3, "taken": 1, "full": 1, "invalid": 1,
                                                    "cors_refused": 1}
    assert [p.value for p in _last(gateway, "bot.relay.records").values()] == [2]
    assert _by(gateway, "bot.relay.refusals", "reason") == {"missing": 1, "not_otlp": 1}
    depth, claims = [p.value for p in gateway["bot.queue.depth"]], [p.value for p in gateway["bot.queue.claims"]]
    assert max(depth) == 2 and depth[-1] == 0 and max(claims) == 2 and claims[-1] == 0
    assert gateway["bot.queue.processing"][-1].value == 0  # every job taken was finished
    assert gateway["bot.joins"][0].unit == "{join}" and gateway["bot.queue.depth"][0].kind == "gauge"

    # -- what the operator exported ------------------------------------------------------------------
    (operator_file,) = _files(platform, "bot-operator")
    operator = read_metrics(operator_file)
    dispatches = _by(operator, "bot.dispatches", "outcome")
    assert dispatches["warm"] + dispatches["cold"] == 3 and dispatches["warm"] >= 1 and dispatches["cold"] >= 1
    assert dispatches["requeued"] >= 1 and dispatches["dead_lettered"] == 1
    assert _by(operator, "bot.dispatch.duration", "outcome", "count") == dispatches
    joined = _last(operator, "bot.join.duration")
    assert sum(p.count for p in joined.values()) == 3 and all(p.value > 0 for p in joined.values())
    assert {dict(a)["mode"] for a in joined} == {"warm", "cold"} and next(iter(joined.values())).unit == "s"
    assert max(p.value for p in operator["bot.cold_slot.usage"]) == 1
    assert max(p.value for p in operator["bot.operator.count"]) == 1  # itself

    # -- what the runners exported: the warm runner and each cold bot, a file each ------------------
    runner_files = _files(platform, "bot-runner")
    assert len(runner_files) == 1 + dispatches["cold"]
    active: dict[str, int] = {}
    lengths: dict[str, int] = {}
    failures: dict[tuple[str, str], int] = {}
    for file in runner_files:
        points = read_metrics(file)
        for mode, value in _by(points, "bot.session.active", "mode").items():
            active[mode] = active.get(mode, 0) + value
        for attrs, point in _last(points, "bot.session.duration").items():
            lengths[dict(attrs)["status"]] = lengths.get(dict(attrs)["status"], 0) + point.count
        for attrs, point in _last(points, "bot.session.failures").items():
            failures[(dict(attrs)["mode"], dict(attrs)["reason"])] = int(point.value or 0)
    assert active == {"warm": 0, "cold": 0}  # every session that started, warm or cold, ended
    assert lengths == {"ended": 2, "failed": 1}
    assert list(failures.values()) == [1] and next(iter(failures))[1] == "error"

    # -- no data point of any service carries an id, a room or an unbounded key ----------------------
    for file in platform.logs.glob("*.metrics.jsonl"):
        for name, points in read_metrics(file).items():
            for point in points:
                assert not set(map(str, point.attributes.values())) & ids, (name, point.attributes)
                if name.startswith("bot."):
                    assert set(point.attributes) <= BOUNDED, (name, point.attributes)
                assert not {"session.id", "user.id", "bot.launch_id"} & set(point.attributes), name
