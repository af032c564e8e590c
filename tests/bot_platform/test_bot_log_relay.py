"""The log relay: a page's own log records, sent the way OTel JS sends them (`POST /v1/logs`, OTLP JSON with hex
ids, or protobuf), land in the gateway's exported records under the session its join's `telemetryToken` names,
and nowhere else. Real gateway processes on the real Redis, real HTTP on loopback; what is asserted is what the
gateways wrote into their OTLP-JSON files.

Absence is asserted after a flush: each check of "nothing exported" first sends a sentinel record with a good
token and waits for it, and the gateway's batch exporter writes records in the order they were handed over.
"""

from __future__ import annotations

import base64
import gzip
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest, ExportLogsServiceResponse
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from bot.log_relay import RateLimit
from bot.telemetry_token import TokenError, TokenSigner
from tests.helpers.bot_platform import Platform
from tests.helpers.support import wait_for

pytestmark = [pytest.mark.redis, pytest.mark.processes]  # and the folder's (tests/conftest.py)

KEY = "relay-test-key-0123456789abcdef"
OTHER_KEY = "another-relay-key-fedcba9876543210"
RATE = 50
MAX_BYTES = 200_000  # above the general BOT_MAX_BODY_BYTES (65536): the relay's own cap
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"


def _room() -> str:
    return f"https://rooms.example.test/{uuid.uuid4().hex[:12]}"


def _mark(what: str = "page") -> str:
    return f"{what}-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def gw(tmp_path_factory) -> Iterator[Platform]:
    """Gateway A: the shared key, a small rate and its own body cap."""
    platform = Platform(tmp_path_factory.mktemp("relay-a"), BOT_TELEMETRY_KEY=KEY, BOT_TELEMETRY_RATE=str(RATE),
                        BOT_MAX_TELEMETRY_BYTES=str(MAX_BYTES))
    platform.start_gateway()
    yield platform
    platform.cleanup()


# -- what a page sends ----------------------------------------------------------------------------


def _kv(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}  # int64 as a string, as protobuf's JSON mapping has it
    if isinstance(value, float):
        return {"key": key, "value": {"doubleValue": value}}
    return {"key": key, "value": {"stringValue": value}}


def js_record(body: str, severity: int = 9, text: str = "INFO", trace_id: str = TRACE_ID, span_id: str = SPAN_ID,
              **attributes: Any) -> dict[str, Any]:
    """One log record as `@opentelemetry/exporter-logs-otlp-http` 0.223 serialises it (JSON, hex ids)."""
    now = time.time_ns()
    return {"timeUnixNano": str(now), "observedTimeUnixNano": str(now), "severityNumber": severity,
            "severityText": text, "body": {"stringValue": body},
            "attributes": [_kv(k.replace("__", "."), v) for k, v in attributes.items()],
            "droppedAttributesCount": 0, "flags": 1, "traceId": trace_id, "spanId": span_id}


def js_export(*records: dict[str, Any], service: str | None = "web-shop", scope: str = "shop.checkout",
              **resource: Any) -> dict[str, Any]:
    attributes = {"telemetry.sdk.language": "webjs", "telemetry.sdk.name": "opentelemetry",
                  "telemetry.sdk.version": "2.12.1", **{k.replace("__", "."): v for k, v in resource.items()}}
    if service is not None:
        attributes["service.name"] = service
    return {"resourceLogs": [{
        "resource": {"attributes": [_kv(k, v) for k, v in attributes.items()], "droppedAttributesCount": 0},
        "scopeLogs": [{"scope": {"name": scope, "version": "1.0.0"}, "logRecords": list(records)}],
    }]}


def send(platform: Platform, token: str | None, payload: Any, content_type: str = "application/json",
         **headers: str) -> httpx.Response:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    sent = {"content-type": content_type, **headers}
    if token is not None:
        sent["authorization"] = f"Bearer {token}"
    return httpx.post(f"{platform.gateway_url}/v1/logs", content=data, headers=sent, timeout=30)


def joined(platform: Platform, **body: Any) -> dict[str, Any]:
    reply = platform.join(room_url=_room(), **body)
    assert reply.status_code == 202, reply.text
    answer = reply.json()
    assert isinstance(answer["telemetryToken"], str) and answer["telemetryToken"]
    return dict(answer)


def landed(platform: Platform, body: str) -> list[dict[str, Any]]:
    return [r for r in platform.records() if r["message"] == body]


def flush(platform: Platform, token: str) -> list[dict[str, Any]]:
    """Every record the gateway exported, once a sentinel sent after everything else has landed."""
    sentinel = _mark("sentinel")
    assert send(platform, token, js_export(js_record(sentinel))).status_code == 200
    wait_for(lambda: landed(platform, sentinel), what="the sentinel record")
    return platform.records()


def wait_landed(platform: Platform, body: str) -> list[dict[str, Any]]:
    found = wait_for(lambda: landed(platform, body), what=f"the record {body!r}")
    flush_token = joined(platform)["telemetryToken"]
    flush(platform, flush_token)  # and nothing more of it came after
    return landed(platform, body) or found


# -- the join's token -----------------------------------------------------------------------------


def test_a_join_answers_a_signed_token_for_its_session_user_and_launch(gw):
    answer = joined(gw, sessionId="s-token", userId="u-token")
    version, payload, signature = answer["telemetryToken"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert version == "v1" and len(base64.urlsafe_b64decode(signature + "=")) == 32  # HMAC-SHA256
    assert claims["sid"] == "s-token" and claims["uid"] == "u-token" and claims["lid"] == answer["launchId"]
    assert claims["exp"] - claims["iat"] == 3600  # BOT_MAX_SESSION_S, from the join
    assert abs(claims["iat"] - time.time()) < 60
    anonymous = joined(gw)
    payload = anonymous["telemetryToken"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert "uid" not in claims and claims["sid"] == anonymous["sessionId"]


# -- exports that land ----------------------------------------------------------------------------


def test_a_json_export_lands_once_under_the_joined_session_whatever_the_record_claims(gw):
    answer = joined(gw, sessionId="s-page", userId="u-page")
    body = _mark("json")
    reply = send(gw, answer["telemetryToken"], js_export(
        js_record(body, severity=13, text="WARN", session__id="someone-else", user__id="admin",
                  cart__items=3, page__ok=True, page__ratio=0.5, http__url="https://shop.example/checkout"),
        deployment__environment="test"),
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", baggage="session.id=evil,user.id=root")
    assert reply.status_code == 200 and reply.json() == {"partialSuccess": {}}
    (record,) = wait_landed(gw, body)
    assert record["attrs"]["session.id"] == "s-page" and record["attrs"]["user.id"] == "u-page"
    assert record["attrs"]["bot.launch_id"] == answer["launchId"]
    assert record["service"] == "web-shop" and record["scope"] == "shop.checkout"
    assert record["level"] == "WARN" and record["raw"]["severityNumber"] == 13
    assert record["trace_id"] == TRACE_ID and record["raw"]["spanId"] == SPAN_ID
    assert record["attrs"]["cart.items"] == "3" and record["attrs"]["page.ok"] is True  # intValue: a string in JSON
    assert record["attrs"]["page.ratio"] == 0.5 and record["attrs"]["http.url"] == "https://shop.example/checkout"
    assert record["resource"]["deployment.environment"] == "test"
    assert record["resource"]["telemetry.sdk.language"] == "webjs"
    assert record["resource"]["otel_session.relayed_by"] == "bot-gateway"
    assert abs(record["time"] - time.time_ns()) < 120 * 10**9
    assert not [r for r in gw.records() if r["attrs"].get("session.id") in ("someone-else", "evil")]


def test_the_cli_shows_the_page_records_under_the_session(gw):
    session_id = f"s-cli-{uuid.uuid4().hex[:8]}"
    answer = joined(gw, sessionId=session_id, userId="u-cli")
    body = _mark("cli")
    assert send(gw, answer["telemetryToken"], js_export(js_record(body, session__id="someone-else"))).status_code == 200
    wait_landed(gw, body)
    out = subprocess.run([sys.executable, "-m", "otel_session", "logs", "--dir", str(gw.logs), "--session", session_id,
                          "--json"], capture_output=True, text=True, timeout=60, check=True).stdout
    lines = [json.loads(line) for line in out.splitlines()]
    page = [line for line in lines if line["message"] == body]
    assert len(page) == 1 and page[0]["service"] == "web-shop" and page[0]["user_id"] == "u-cli"
    assert page[0]["logger"] == "shop.checkout" and page[0]["trace_id"] == TRACE_ID
    # the gateway's own record of the join is in the same session
    assert any(line["service"] == "bot-gateway" and line["message"].startswith("Launch queued") for line in lines)
    none = subprocess.run([sys.executable, "-m", "otel_session", "logs", "--dir", str(gw.logs), "--session",
                           "someone-else", "--json"], capture_output=True, text=True, timeout=60, check=True).stdout
    assert body not in none


def test_a_protobuf_export_lands_once_under_the_joined_session(gw):
    answer = joined(gw, sessionId="s-proto", userId="u-proto")
    body = _mark("proto")
    request = ExportLogsServiceRequest(resource_logs=[ResourceLogs(
        resource=Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value="web-proto")),
                                      KeyValue(key="browser.mobile", value=AnyValue(bool_value=False))]),
        scope_logs=[ScopeLogs(scope=InstrumentationScope(name="proto.scope", version="2"), log_records=[LogRecord(
            time_unix_nano=time.time_ns(), severity_number=17, severity_text="ERROR",
            body=AnyValue(string_value=body), trace_id=bytes.fromhex(TRACE_ID), span_id=bytes.fromhex(SPAN_ID),
            attributes=[KeyValue(key="session.id", value=AnyValue(string_value="someone-else")),
                        KeyValue(key="retries", value=AnyValue(int_value=2))])])])])
    reply = send(gw, answer["telemetryToken"], request.SerializeToString(), "application/x-protobuf")
    assert reply.status_code == 200 and reply.headers["content-type"] == "application/x-protobuf"
    ExportLogsServiceResponse.FromString(reply.content)  # what an OTLP receiver answers
    (record,) = wait_landed(gw, body)
    assert record["attrs"]["session.id"] == "s-proto" and record["attrs"]["user.id"] == "u-proto"
    assert record["service"] == "web-proto" and record["scope"] == "proto.scope"
    assert record["level"] == "ERROR" and record["raw"]["severityNumber"] == 17
    assert record["trace_id"] == TRACE_ID and record["raw"]["spanId"] == SPAN_ID
    assert record["attrs"]["retries"] == "2" and record["resource"]["service.name"] == "web-proto"


def test_gzip_a_page_without_service_name_and_a_user_claim_without_a_joined_user(gw):
    answer = joined(gw, sessionId="s-anon")  # no userId
    body = _mark("gzip")
    payload = gzip.compress(json.dumps(js_export(js_record(body, user__id="admin"), service=None)).encode())
    assert send(gw, answer["telemetryToken"], payload, baggage="user.id=root,user.name=Root",
                **{"content-encoding": "gzip"}).status_code == 200
    (record,) = wait_landed(gw, body)
    assert record["service"] == "web-client" and record["attrs"]["session.id"] == "s-anon"
    # the page's claim is dropped (the join named no user), and the request's baggage is nobody's
    assert "user.id" not in record["attrs"] and "user.name" not in record["attrs"]


def test_hostile_values_are_exported_as_text_and_the_batch_survives(gw):
    answer = joined(gw, sessionId="s-hostile")
    first, second = _mark("hostile"), _mark("after")
    hostile = js_record(first, severity=99, text="X" * 500, trace_id="zz", span_id="not-hex")
    hostile["attributes"] += [
        {"key": "huge", "value": {"intValue": "99999999999999999999999"}},
        {"key": "nested", "value": {"kvlistValue": {"values": [_kv("a", "b")]}}},
        {"key": "mixed", "value": {"arrayValue": {"values": [{"stringValue": "x"}, {"intValue": "1"}]}}},
        {"key": "nan", "value": {"doubleValue": "NaN"}},
    ]
    hostile["timeUnixNano"] = str(2**70)
    text = json.dumps(js_export(hostile, js_record(second), service="s" * 1000))
    text = text.replace(first, first + "\\ud800")  # a lone surrogate: valid JSON, not encodable as UTF-8
    # the request's own trace context is no record's (FastAPI traces the request; the records are the page's)
    assert send(gw, answer["telemetryToken"], text.encode(), baggage="session.id=evil",
                traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").status_code == 200
    after = wait_landed(gw, second)
    assert len(after) == 1 and after[0]["service"] == "web-client"
    (record,) = [r for r in gw.records() if r["message"] and r["message"].startswith(first)]
    assert record["attrs"]["huge"] == "99999999999999999999999" and json.loads(record["attrs"]["nested"]) == {"a": "b"}
    assert record["trace_id"] == "" and "spanId" not in record["raw"] and record["raw"].get("severityNumber", 0) == 0
    assert record["attrs"]["session.id"] == "s-hostile"
    assert len(record["level"]) <= 32 and abs(record["time"] - time.time_ns()) < 120 * 10**9
    assert httpx.get(f"{gw.gateway_url}/health", timeout=5).status_code == 200


def test_the_relay_takes_bodies_over_the_general_cap_up_to_its_own(gw):
    answer = joined(gw, sessionId="s-big")
    body = _mark("big")
    padding = "p" * 100_000  # over BOT_MAX_BODY_BYTES (65536), under BOT_MAX_TELEMETRY_BYTES
    assert send(gw, answer["telemetryToken"], js_export(js_record(body, padding=padding))).status_code == 200
    assert gw.join(room_url=_room(), userName="x", token=padding).status_code == 413  # /join keeps the general cap
    (record,) = wait_landed(gw, body)
    assert record["attrs"]["padding"] == padding


# -- refusals -------------------------------------------------------------------------------------


def _bad_signature(token: str) -> str:
    """The token with its signature's first character changed: still canonical base64url (the first character is
    all data; the last one carries padding bits, and changing those makes the token malformed instead)."""
    signed, signature = token.rsplit(".", 1)
    return f"{signed}.{'B' if signature[0] == 'A' else 'A'}{signature[1:]}"


def _tampered(token: str) -> str:
    version, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sid"] = "someone-else"
    forged = base64.urlsafe_b64encode(json.dumps(claims, separators=(",", ":")).encode()).rstrip(b"=").decode()
    return f"{version}.{forged}.{signature}"


TOKENS = {
    "missing": lambda token: None,
    "garbage": lambda token: "not-a-token",
    "empty parts": lambda token: "v1..",
    "tampered session": _tampered,
    "tampered signature": lambda token: token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
    "another key": lambda token: TokenSigner(OTHER_KEY.encode()).issue("someone-else", "l-1", None, 60),
    "huge": lambda token: token * 100,
}


@pytest.mark.parametrize("variant", list(TOKENS))
def test_no_valid_token_is_401_and_nothing_is_exported(gw, variant):
    good = joined(gw, sessionId="s-victim")["telemetryToken"]
    body = _mark(f"refused-{variant.replace(' ', '-')}")
    reply = send(gw, TOKENS[variant](good), js_export(js_record(body)))
    assert reply.status_code == 401 and reply.headers["www-authenticate"] == "Bearer"
    assert body not in reply.text
    records = flush(gw, good)
    assert not [r for r in records if r["message"] == body]
    assert not [r for r in records if r["attrs"].get("session.id") == "someone-else"]


def test_refusals_are_reported_once_a_minute_per_kind_without_body_or_token(tmp_path):
    fresh = Platform(tmp_path, BOT_TELEMETRY_KEY=KEY, BOT_CONSOLE_LEVEL="INFO")
    try:
        fresh.start_gateway()
        good = joined(fresh)["telemetryToken"]
        bodies = [_mark("quiet") for _ in range(3)]
        for body in bodies:
            assert send(fresh, _bad_signature(good), js_export(js_record(body)),
                        baggage="session.id=victim", traceparent=f"00-{TRACE_ID}-{SPAN_ID}-01",
                        ).status_code == 401  # a bad signature, three times
            assert send(fresh, good, b'{"resourceLogs": 5, "x": "' + body.encode() + b'"}').status_code == 400
        records = flush(fresh, good)
        bad = [r for r in records if r["message"] and "bad signature" in r["message"]]
        not_otlp = [r for r in records if r["message"] and "not an OTLP logs export" in r["message"]]
        assert len(bad) == 1 and len(not_otlp) == 1
        assert bad[0]["raw"]["severityNumber"] == 13 and bad[0]["service"] == "bot-gateway"
        # the refused request's own baggage and trace are not the report's: no caller writes into a session so
        assert "session.id" not in bad[0]["attrs"] and bad[0]["trace_id"] != TRACE_ID
        assert not [r for r in records if r["attrs"].get("session.id") == "victim"]
        everything = json.dumps([r["raw"] for r in records]) + fresh.procs[0].output()
        assert "refused" in fresh.procs[0].output()  # the console saw the reports too
        assert good not in everything and good[-20:] not in everything
        assert not any(body in everything for body in bodies)
    finally:
        fresh.cleanup()


HALF_GARBAGE = b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {"stringValue": "MARK"}}, 7]}]}]}'


@pytest.mark.parametrize(
    ("content_type", "payload"),
    [
        ("application/json", b"{not json"),
        ("application/json", b"[1, 2, 3]"),
        ("application/json", b'{"hello": "world"}'),
        ("application/json", b'{"resourceLogs": [{"scopeLogs": [{"logRecords": "MARK"}]}]}'),
        ("application/json", HALF_GARBAGE),
        ("application/json", b"[" * 100_000),
        ("application/json", b"\xff\xfe\x00garbage"),
        ("application/x-protobuf", b"\xff\xff\xff\xff\xff\xff"),
        ("application/x-protobuf", b"\x0a" + b"\x7f" + b"MARK"),
        ("text/plain", b'{"resourceLogs": []}'),
        ("", b'{"resourceLogs": []}'),
    ],
    ids=["bad-json", "a-list", "no-resourceLogs", "wrong-shape", "half-garbage", "deep-nesting", "not-utf8",
         "bad-protobuf", "truncated-protobuf", "text-plain", "no-content-type"],
)
def test_what_is_not_otlp_is_400_and_nothing_is_exported(gw, content_type, payload):
    good = joined(gw, sessionId="s-not-otlp")["telemetryToken"]
    mark = _mark("not-otlp")
    payload = payload.replace(b"MARK", mark.encode())
    reply = send(gw, good, payload, content_type)
    assert reply.status_code == 400, reply.text
    assert mark not in reply.text
    records = flush(gw, good)
    assert not [r for r in records if r["message"] == mark]
    assert httpx.get(f"{gw.gateway_url}/health", timeout=5).status_code == 200


def test_a_body_over_the_relay_cap_is_413_declared_chunked_or_gzipped(gw):
    good = joined(gw, sessionId="s-too-big")["telemetryToken"]
    marks = [_mark("too-big") for _ in range(3)]
    payloads = [json.dumps(js_export(js_record(mark, padding="p" * MAX_BYTES))).encode() for mark in marks]
    assert send(gw, good, payloads[0]).status_code == 413

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(payloads[1]), 16_384):
            yield payloads[1][start:start + 16_384]

    chunked = httpx.post(f"{gw.gateway_url}/v1/logs", content=chunks(), timeout=30,
                         headers={"content-type": "application/json", "authorization": f"Bearer {good}"})
    assert chunked.status_code == 413
    bomb = gzip.compress(payloads[2] + b" " * (10 * MAX_BYTES))  # small on the wire, over the cap inflated
    assert len(bomb) < MAX_BYTES
    assert send(gw, good, bomb, **{"content-encoding": "gzip"}).status_code == 413
    records = flush(gw, good)
    assert not [r for r in records if r["message"] in marks]


def test_over_the_rate_is_429_with_retry_after_then_accepted_again(gw):
    good = joined(gw, sessionId="s-rate")["telemetryToken"]
    # a batch of over two buckets goes through on a full bucket, and leaves it 1.2 s of refill below one record:
    # room for a slow machine between the two requests
    burst = [_mark("burst") for _ in range(2 * RATE + 10)]
    assert send(gw, good, js_export(*[js_record(m) for m in burst])).status_code == 200
    over = _mark("over")
    reply = send(gw, good, js_export(js_record(over)))
    assert reply.status_code == 429
    retry_after = int(reply.headers["retry-after"])
    assert 1 <= retry_after <= 2
    other = joined(gw, sessionId="s-rate-other")["telemetryToken"]  # another token has its own bucket
    assert send(gw, other, js_export(js_record(_mark("other")))).status_code == 200
    time.sleep(retry_after)
    later = _mark("later")
    assert send(gw, good, js_export(js_record(later))).status_code == 200
    wait_landed(gw, later)
    records = gw.records()
    assert not [r for r in records if r["message"] == over]
    assert sum(1 for r in records if r["message"] in set(burst)) == len(burst)


# -- keys across gateways, expiry -----------------------------------------------------------------


def test_a_token_works_on_every_gateway_with_the_key_and_on_no_other(gw, tmp_path):
    same = Platform(tmp_path / "b", BOT_TELEMETRY_KEY=KEY)
    other = Platform(tmp_path / "c", BOT_TELEMETRY_KEY=OTHER_KEY)
    try:
        same.start_gateway()
        other.start_gateway()
        answer = joined(gw, sessionId="s-across", userId="u-across")
        body, refused = _mark("across"), _mark("across-refused")
        assert send(same, answer["telemetryToken"], js_export(js_record(body))).status_code == 200
        assert send(other, answer["telemetryToken"], js_export(js_record(refused))).status_code == 401
        (record,) = wait_landed(same, body)
        assert record["attrs"]["session.id"] == "s-across" and record["attrs"]["user.id"] == "u-across"
        assert not [r for r in flush(other, joined(other)["telemetryToken"]) if r["message"] == refused]
        assert not [r for r in gw.records() if r["message"] == body]  # B exported it, not A
    finally:
        same.cleanup()
        other.cleanup()


def test_without_a_key_tokens_work_on_their_own_gateway_only(gw, tmp_path):
    alone = Platform(tmp_path / "d")
    try:
        alone.start_gateway()
        token = joined(alone, sessionId="s-alone")["telemetryToken"]
        body = _mark("alone")
        assert send(alone, token, js_export(js_record(body))).status_code == 200
        assert send(gw, token, js_export(js_record(_mark("elsewhere")))).status_code == 401
        wait_landed(alone, body)
        warnings = [r for r in alone.records() if r["message"] and "BOT_TELEMETRY_KEY is not set" in r["message"]]
        assert len(warnings) == 1 and warnings[0]["raw"]["severityNumber"] == 13
    finally:
        alone.cleanup()


@pytest.mark.parametrize("value", ["", "   ", "short"])
def test_a_bad_key_stops_the_gateway_at_start_naming_the_variable(tmp_path, value):
    platform = Platform(tmp_path, BOT_TELEMETRY_KEY=value)
    try:
        with pytest.raises(RuntimeError, match="exited") as raised:
            platform.start_gateway()
        assert "BOT_TELEMETRY_KEY" in str(raised.value)
    finally:
        platform.cleanup()


def test_an_expired_token_is_401(tmp_path):
    short = Platform(tmp_path, BOT_TELEMETRY_KEY=KEY, BOT_MAX_SESSION_S="1")
    try:
        short.start_gateway()
        answer = joined(short, sessionId="s-expiring")
        fresh, stale = _mark("fresh"), _mark("stale")
        assert send(short, answer["telemetryToken"], js_export(js_record(fresh))).status_code == 200
        payload = answer["telemetryToken"].split(".")[1]
        expires = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"]
        time.sleep(max(0.0, expires - time.time()) + 0.1)
        reply = send(short, answer["telemetryToken"], js_export(js_record(stale)))
        assert reply.status_code == 401 and "expired" in reply.json()["detail"]
        wait_landed(short, fresh)
        records = short.records()
        assert not [r for r in records if r["message"] == stale]
        assert any(r["message"] and "an expired telemetry token" in r["message"] for r in records)
    finally:
        short.cleanup()


# -- the parts, in process ------------------------------------------------------------------------


def test_the_rate_limit_tracks_a_bounded_number_of_tokens():
    limit = RateLimit(rate=10, max_buckets=3)
    for token in ("a", "b", "c", "d"):
        assert limit.take(token, 10, now=0.0) == 0.0
    assert len(limit) == 3
    assert limit.take("b", 1, now=0.0) > 0  # still tracked: empty
    assert limit.take("a", 10, now=0.0) == 0.0  # forgotten (least recently seen): a full bucket again
    assert limit.take("b", 5, now=0.5) == 0.0  # refilled at 10 a second


def test_verify_never_raises_anything_but_token_error():
    signer = TokenSigner(KEY.encode())
    good = signer.issue("s-1", "l-1", "u-1", 60)
    assert signer.verify(good).session_id == "s-1"
    samples = ["", ".", "..", "v1", "v1.x.y", "v2" + good[2:], good + ".x", "v1.====.====", "v1.é.é", "\x00" * 50,
               "v1." + base64.urlsafe_b64encode(b"[]").decode() + "." + good.split(".")[2]]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    head, signature = good.rsplit(".", 1)
    padding_bit = signature[:-1] + alphabet[alphabet.index(signature[-1]) ^ 1]  # the same 32 bytes, spelled otherwise
    assert base64.urlsafe_b64decode(padding_bit + "=") == base64.urlsafe_b64decode(signature + "=")
    other_spellings = [f"{head}.{padding_bit}", good + "=", f"{head}.{signature.replace('-', '+').replace('_', '/')}"]
    for sample in samples + [s for s in other_spellings if s != good] + [good[:n] for n in range(len(good))]:
        with pytest.raises(TokenError):
            signer.verify(sample)
    with pytest.raises(TokenError, match="expired"):
        signer.verify(signer.issue("s-1", "l-1", None, 60, now=time.time() - 61))
