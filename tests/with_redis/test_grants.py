"""The debug-grant store (`otel_session.grants` over `otel_session.live.store`) against the real Redis:
the layout the watchers read, the version counter, expiry swept and audited exactly once, the audit
stream and the WARNING records, and every bad input as a `ValueError`. Each test works behind its
own key prefix and deletes it afterwards."""

from __future__ import annotations

import getpass
import json
import logging
import math
import re
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from otel_session import grants
from otel_session.live import store as _grants
from otel_session.live.store import AUDIT, GRANTS, USED, VERSION, Grant

REDIS_URL = "redis://127.0.0.1:6379"
DOWN_URL = "redis://:hunter2@127.0.0.1:1"


@pytest.fixture
def client() -> Iterator[Any]:
    c = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    yield c
    c.close()


@pytest.fixture
def prefix(client: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:12]}:"
    for var in ("OTEL_SESSION_REDIS_URL", "REDIS_URL", "OTEL_SESSION_REDIS_PREFIX"):
        monkeypatch.delenv(var, raising=False)
    yield name
    keys = list(client.scan_iter(match=name + "*"))
    if keys:
        client.delete(*keys)


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def events(self) -> list[str]:
        return [getattr(r, "otel_session.audit.event") for r in self.records]


@pytest.fixture
def audit_log() -> Iterator[Records]:
    handler = Records()
    logger = logging.getLogger("otel_session.audit")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def stream(client: Any, prefix: str) -> list[dict[str, str]]:
    return [fields for _, fields in client.xrange(prefix + AUDIT)]


def version(client: Any, prefix: str) -> int:
    return int(client.get(prefix + VERSION) or 0)


# --- create, list, revoke ----------------------------------------------------------------------------


def test_a_grant_is_stored_in_the_layout_the_watchers_read(client: Any, prefix: str) -> None:
    before = time.time()
    made = grants.grant(session_id="s-42", level="debug", ttl_s=600, reason="ticket 123", by="ada", prefix=prefix)
    assert made.id.startswith("g-") and made.session_id == "s-42" and made.user_id is None

    stored = client.hgetall(prefix + GRANTS)
    assert list(stored) == [made.id]
    data = json.loads(stored[made.id])
    assert set(data) == {"id", "session_id", "user_id", "level", "expires_at", "created_at", "reason", "by"}
    assert data["id"] == made.id and data["session_id"] == "s-42" and data["user_id"] is None
    assert data["level"] == "DEBUG" and data["reason"] == "ticket 123" and data["by"] == "ada"
    assert before - 0.01 <= data["created_at"] <= time.time() + 0.01
    assert data["expires_at"] == pytest.approx(data["created_at"] + 600, abs=0.01)
    assert version(client, prefix) == 1
    assert not client.hexists(GRANTS, made.id)  # the prefix is on every key

    (entry,) = stream(client, prefix)
    assert entry["event"] == "created" and entry["grant_id"] == made.id and entry["session_id"] == "s-42"
    assert entry["user_id"] == "" and entry["level"] == "DEBUG" and entry["reason"] == "ticket 123"
    assert entry["by"] == "ada" and entry["service"] == grants.service_name()
    assert float(entry["at"]) == pytest.approx(time.time(), abs=5)
    assert grants.active(prefix=prefix) == [made]


def test_defaults_and_level_names(prefix: str) -> None:
    made = grants.grant(user_id="u-7", prefix=prefix)
    assert made.level == "DEBUG" and made.user_id == "u-7" and made.session_id is None
    assert made.expires_at - made.created_at == pytest.approx(900, abs=0.01)
    assert made.by == getpass.getuser() and made.reason == ""
    assert grants.grant(session_id="s-1", level="warn", prefix=prefix).level == "WARNING"
    assert grants.grant(session_id="s-1", level=20, prefix=prefix).level == "INFO"
    assert grants.grant(session_id="s-1", level="15", prefix=prefix).levelno == 15


def test_grants_made_within_one_millisecond_list_oldest_first(client: Any, prefix: str) -> None:
    now = time.time()
    made = [_grants.new_grant(session_id=f"s-{i}", now=now + i * 0.0001) for i in range(5)]
    for grant in reversed(made):  # stored newest first: the order comes from the grants, not the hash
        _grants.create(client, grant, "svc", prefix=prefix)
    assert [g.id for g in grants.active(prefix=prefix)] == [g.id for g in made]


def test_revoke_by_id_by_session_and_by_user(client: Any, prefix: str, audit_log: Records) -> None:
    a = grants.grant(session_id="s-1", prefix=prefix)
    b = grants.grant(session_id="s-1", level="INFO", prefix=prefix)
    c = grants.grant(session_id="s-2", prefix=prefix)
    u = grants.grant(user_id="u-1", prefix=prefix)
    assert [g.id for g in grants.active(prefix=prefix)] == [a.id, b.id, c.id, u.id]

    assert {g.id for g in grants.revoke(session_id="s-1", by="bob", prefix=prefix)} == {a.id, b.id}
    assert [g.id for g in grants.active(prefix=prefix)] == [c.id, u.id]
    assert grants.revoke(user_id="s-2", prefix=prefix) == []  # a session id is not a user id
    assert grants.revoke(user_id="u-1", prefix=prefix) == [u]
    assert grants.revoke(c.id, prefix=prefix) == [c]
    assert grants.active(prefix=prefix) == [] and client.hlen(prefix + GRANTS) == 0
    assert grants.revoke(c.id, prefix=prefix) == []  # twice: nothing left

    revoked = [e for e in stream(client, prefix) if e["event"] == "revoked"]
    assert sorted(e["grant_id"] for e in revoked) == sorted([a.id, b.id, u.id, c.id])
    by_id = {e["grant_id"]: e for e in revoked}
    assert by_id[a.id]["by"] == "bob" and by_id[a.id]["granted_by"] == a.by
    assert audit_log.events().count("revoked") == 4


def test_version_increments_once_per_change_and_only_on_change(client: Any, prefix: str) -> None:
    a = grants.grant(session_id="s-1", prefix=prefix)
    assert version(client, prefix) == 1
    grants.grant(user_id="u-1", ttl_s=1, prefix=prefix)
    assert version(client, prefix) == 2
    grants.active(prefix=prefix)
    grants.revoke(session_id="nobody", prefix=prefix)
    assert version(client, prefix) == 2  # reading and revoking nothing change nothing
    grants.revoke(a.id, prefix=prefix)
    assert version(client, prefix) == 3
    time.sleep(1.05)
    grants.active(prefix=prefix)  # sweeps the expired user grant
    assert version(client, prefix) == 4
    assert _grants.version(client, prefix=prefix) == 4
    assert _grants.load(client, prefix=prefix) == (4, [])


def test_malformed_entries_are_skipped(client: Any, prefix: str) -> None:
    made = grants.grant(session_id="s-1", prefix=prefix)
    client.hset(prefix + GRANTS, mapping={"junk": "not json", "half": json.dumps({"id": "half"})})
    assert grants.active(prefix=prefix) == [made]
    assert grants.revoke(session_id="s-1", prefix=prefix) == [made]


# --- expiry ---------------------------------------------------------------------------------------------


def test_an_expired_grant_is_ignored_by_readers_then_swept_once(client: Any, prefix: str, audit_log: Records) -> None:
    made = grants.grant(session_id="s-1", ttl_s=1, reason="short", prefix=prefix)
    assert _grants.load_active(client, prefix=prefix)[1] == [made]
    time.sleep(1.05)
    assert _grants.load_active(client, prefix=prefix)[1] == []  # ignored before anyone sweeps
    assert client.hexists(prefix + GRANTS, made.id)

    assert _grants.sweep(client, "svc-a", prefix=prefix) == [made]
    assert _grants.sweep(client, "svc-b", prefix=prefix) == []
    assert not client.hexists(prefix + GRANTS, made.id)
    expired = [e for e in stream(client, prefix) if e["event"] == "expired"]
    assert len(expired) == 1 and expired[0]["grant_id"] == made.id and expired[0]["service"] == "svc-a"
    assert audit_log.events() == ["created", "expired"]


def test_a_stale_delete_is_not_audited_again(client: Any, prefix: str) -> None:
    made = grants.grant(session_id="s-1", ttl_s=1, prefix=prefix)
    time.sleep(1.05)
    # two sweepers that both read the grant before either deleted it
    assert _grants.delete(client, [made], "expired", "one", prefix=prefix) == [made]
    assert _grants.delete(client, [made], "expired", "two", prefix=prefix) == []
    assert [e["event"] for e in stream(client, prefix)] == ["created", "expired"]
    assert version(client, prefix) == 2


def test_concurrent_sweepers_audit_each_expiry_exactly_once(client: Any, prefix: str, audit_log: Records) -> None:
    made = [grants.grant(session_id=f"s-{i}", ttl_s=1, prefix=prefix) for i in range(20)]
    keep = grants.grant(session_id="s-keep", ttl_s=60, prefix=prefix)
    time.sleep(1.05)
    start = threading.Barrier(4)
    removed: list[list[Grant]] = []

    def sweeper(n: int) -> None:
        own = redis.Redis.from_url(REDIS_URL, decode_responses=True)
        start.wait()
        removed.append(_grants.sweep(own, f"svc-{n}", prefix=prefix))
        own.close()

    threads = [threading.Thread(target=sweeper, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    swept = [g.id for batch in removed for g in batch]
    assert sorted(swept) == sorted(g.id for g in made)  # each one by exactly one sweeper
    expired = [e["grant_id"] for e in stream(client, prefix) if e["event"] == "expired"]
    assert sorted(expired) == sorted(swept)
    assert audit_log.events().count("expired") == 20
    assert version(client, prefix) == 21 + sum(1 for batch in removed if batch)
    assert grants.active(prefix=prefix) == [keep]


# --- audit ---------------------------------------------------------------------------------------------


def test_audit_lists_every_event_and_honours_since(prefix: str) -> None:
    a = grants.grant(session_id="s-1", reason="first", by="ada", prefix=prefix)
    time.sleep(0.3)
    b = grants.grant(user_id="u-1", level="INFO", ttl_s=1, prefix=prefix)
    grants.revoke(a.id, by="bob", prefix=prefix)
    time.sleep(1.05)
    entries = grants.audit(prefix=prefix)  # sweeps first: the expiry shows
    assert [(e["event"], e["grant_id"]) for e in entries] == [
        ("created", a.id), ("created", b.id), ("revoked", a.id), ("expired", b.id)]
    first = entries[0]
    assert first["session_id"] == "s-1" and first["user_id"] is None and first["reason"] == "first"
    assert first["by"] == "ada" and first["level"] == "DEBUG" and first["expires_at"] == a.expires_at
    assert entries[1]["user_id"] == "u-1" and entries[1]["session_id"] is None and entries[1]["level"] == "INFO"
    assert entries[2]["by"] == "bob" and entries[2]["granted_by"] == "ada"
    assert all(isinstance(e["at"], float) and e["id"] for e in entries)
    assert [e["event"] for e in grants.audit(since_s=1.2, prefix=prefix)] == ["created", "revoked", "expired"]
    assert grants.audit(since_s=0, prefix=prefix) == []


def test_record_use_audits_the_first_use_once_per_service(client: Any, prefix: str, audit_log: Records) -> None:
    made = grants.grant(session_id="s-1", prefix=prefix)
    raw = client.hget(prefix + GRANTS, made.id)
    assert _grants.record_use(client, Grant.from_json(raw), "bot-runner", prefix=prefix) is True
    assert _grants.record_use(client, made, "bot-runner", prefix=prefix) is False  # another process, same service
    assert _grants.record_use(client, made, "gateway", prefix=prefix) is True
    used = [e for e in stream(client, prefix) if e["event"] == "used"]
    assert [e["service"] for e in used] == ["bot-runner", "gateway"]
    assert all(e["grant_id"] == made.id and e["session_id"] == "s-1" for e in used)
    assert audit_log.events() == ["created", "used", "used"]
    assert 0 < client.ttl(prefix + USED + made.id) <= math.ceil(made.remaining_s()) + 61
    assert version(client, prefix) == 1  # a use is not a change

    used_at = time.time()
    grants.revoke(made.id, prefix=prefix)
    assert not client.exists(prefix + USED + made.id)
    # a use made just before the revoke, that its process audits only now, is still a fact
    assert _grants.record_use(client, made, "operator", prefix=prefix, at=used_at) is True
    late = stream(client, prefix)[-1]
    assert (late["event"], late["service"], float(late["at"])) == ("used", "operator", round(used_at, 3))


def test_the_audit_stream_is_capped(client: Any, prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_grants, "AUDIT_MAXLEN", 10)
    logging.getLogger("otel_session.audit").disabled = True
    try:
        for i in range(400):
            _grants.create(client, _grants.new_grant(session_id=f"s-{i}"), "svc", prefix=prefix)
    finally:
        logging.getLogger("otel_session.audit").disabled = False
    assert client.xlen(prefix + AUDIT) < 250  # `MAXLEN ~` trims whole nodes, never below 10
    assert client.xlen(prefix + AUDIT) >= 10


def test_each_change_is_a_warning_record_saying_who_why_what_and_until(prefix: str, audit_log: Records) -> None:
    made = grants.grant(session_id="s-42", level="DEBUG", ttl_s=900, reason="ticket 123", by="ada", prefix=prefix)
    grants.revoke(session_id="s-42", by="bob", prefix=prefix)
    created, revoked = audit_log.records
    assert created.levelno == revoked.levelno == logging.WARNING
    assert created.name == "otel_session.audit"
    text = created.getMessage()
    until = _grants.iso(made.expires_at)
    for part in (made.id, "ada", "ticket 123", "session s-42", "DEBUG", until, grants.service_name()):
        assert part in text, (part, text)
    assert "bob" in revoked.getMessage() and "revoked" in revoked.getMessage()
    attrs = vars(created)
    assert attrs["otel_session.grant_id"] == made.id and attrs["otel_session.grant.session_id"] == "s-42"
    assert attrs["otel_session.grant.level"] == "DEBUG" and attrs["otel_session.grant.reason"] == "ticket 123"
    assert attrs["otel_session.grant.by"] == "ada" and attrs["otel_session.grant.expires_at"] == made.expires_at
    assert attrs["otel_session.service"] == grants.service_name()
    assert "otel_session.grant.user_id" not in attrs  # no None attribute values
    assert vars(revoked)["otel_session.audit.by"] == "bob"


def test_the_warning_record_is_exported_at_the_default_level(prefix: str, otel_logs: Any) -> None:
    made = grants.grant(user_id="u-7", reason="why", prefix=prefix)
    (record,) = [r for r in otel_logs.records if r.logger == "otel_session.audit"]
    assert record.level == "WARN" or record.level.startswith("WARN")
    assert record.attributes["otel_session.grant_id"] == made.id
    assert record.attributes["otel_session.grant.user_id"] == "u-7"
    assert record.attributes["otel_session.service"] == otel_logs.telemetry.service_name == grants.service_name()


# --- bad input ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "exactly one of session_id and user_id"),
    ({"session_id": "s-1", "user_id": "u-1"}, "exactly one of session_id and user_id"),
    ({"session_id": "bad id"}, "session_id 'bad id' is not a valid id"),
    ({"session_id": ""}, "session_id '' is not a valid id"),
    ({"session_id": "x" * 129}, "is not a valid id"),
    ({"user_id": 7}, "user_id must be a string, not int"),
    ({"session_id": "s-1", "level": "LOUD"}, "invalid log level 'LOUD'"),
    ({"session_id": "s-1", "level": 101}, "invalid log level 101"),
    ({"session_id": "s-1", "level": "NOTSET"}, "above NOTSET"),
    ({"session_id": "s-1", "level": None}, "a log level must be a name or a number"),
    ({"session_id": "s-1", "ttl_s": 0}, "invalid ttl 0"),
    ({"session_id": "s-1", "ttl_s": -5}, "invalid ttl -5"),
    ({"session_id": "s-1", "ttl_s": math.nan}, "invalid ttl nan"),
    ({"session_id": "s-1", "ttl_s": math.inf}, "invalid ttl inf"),
    ({"session_id": "s-1", "ttl_s": 86_400.5}, "at most 86400 s"),
    ({"session_id": "s-1", "ttl_s": "900"}, "ttl_s must be a number of seconds, not str"),
    ({"session_id": "s-1", "ttl_s": True}, "ttl_s must be a number of seconds, not bool"),
    ({"session_id": "s-1", "reason": "a\nb"}, "reason 'a\\nb' contains control characters"),
    ({"session_id": "s-1", "reason": "r" * 257}, "reason is 257 characters long"),
    ({"session_id": "s-1", "by": "b" * 300}, "by is 300 characters long"),
])
def test_bad_grants_raise_value_error_and_store_nothing(client: Any, prefix: str, kwargs: dict[str, Any],
                                                       message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        grants.grant(**kwargs, prefix=prefix)
    assert client.exists(prefix + GRANTS, prefix + VERSION, prefix + AUDIT) == 0


def test_the_longest_ttl_is_allowed(prefix: str) -> None:
    made = grants.grant(session_id="s-1", ttl_s=86_400, prefix=prefix)
    assert made.expires_at - made.created_at == pytest.approx(86_400, abs=0.01)


@pytest.mark.parametrize(("args", "kwargs", "message"), [
    ((), {}, "exactly one of grant_id, session_id and user_id"),
    (("g-1",), {"session_id": "s-1"}, "exactly one of grant_id, session_id and user_id"),
    ((), {"session_id": "s-1", "user_id": "u-1"}, "exactly one of grant_id, session_id and user_id"),
    (("no good",), {}, "grant id 'no good' is not a valid id"),
    ((), {"session_id": "s 1"}, "session_id 's 1' is not a valid id"),
    ((), {"user_id": 3}, "user_id must be a string, not int"),
])
def test_bad_revokes_raise_value_error(prefix: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                                       message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        grants.revoke(*args, **kwargs, prefix=prefix)


@pytest.mark.parametrize("since", [-1, math.nan, "1h", True])
def test_bad_audit_since_raises_value_error(prefix: str, since: Any) -> None:
    with pytest.raises(ValueError, match="invalid since_s"):
        grants.audit(since_s=since, prefix=prefix)


@pytest.mark.parametrize("call", [
    lambda: grants.grant(session_id="s-1", redis_url=DOWN_URL),
    lambda: grants.revoke("g-1", redis_url=DOWN_URL),
    lambda: grants.active(redis_url=DOWN_URL),
    lambda: grants.audit(redis_url=DOWN_URL),
])
def test_an_unreachable_redis_is_a_value_error_without_the_password(call: Any) -> None:
    started = time.monotonic()
    with pytest.raises(ValueError, match=r"^Redis at redis://127\.0\.0\.1:1 is unreachable: ") as caught:
        call()
    assert "hunter2" not in str(caught.value)
    assert time.monotonic() - started < 3


def test_a_bad_redis_url_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="invalid Redis URL 'ftp://h'"):
        grants.active(redis_url="ftp://h")


def test_redis_url_and_prefix_resolution() -> None:
    both = {"OTEL_SESSION_REDIS_URL": "redis://a:1", "REDIS_URL": "redis://b:2"}
    assert _grants.redis_url("redis://arg:3", both) == "redis://arg:3"
    assert _grants.redis_url(None, both) == "redis://a:1"
    assert _grants.redis_url(None, {"REDIS_URL": "redis://b:2"}) == "redis://b:2"
    assert _grants.redis_url(None, {}) == "redis://127.0.0.1:6379"
    assert _grants.redis_prefix(None, {"OTEL_SESSION_REDIS_PREFIX": "p:"}) == "p:"
    assert _grants.redis_prefix("", {"OTEL_SESSION_REDIS_PREFIX": "p:"}) == ""
    assert _grants.redis_prefix(None, {}) == ""
    assert _grants.safe_url("redis://user:pw@h:6379/0") == "redis://user@h:6379/0"
    assert _grants.safe_url("rediss://:pw@h?password=pw2&db=1") == "rediss://h?password=***&db=1"


def test_the_environment_names_the_redis_and_the_prefix(client: Any, prefix: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SESSION_REDIS_PREFIX", prefix)
    monkeypatch.setenv("REDIS_URL", DOWN_URL)
    with pytest.raises(ValueError, match=r"127\.0\.0\.1:1 is unreachable"):
        grants.active()
    monkeypatch.setenv("OTEL_SESSION_REDIS_URL", REDIS_URL)  # wins over REDIS_URL
    made = grants.grant(session_id="s-env")
    assert client.hexists(prefix + GRANTS, made.id)
    assert grants.active() == [made]


def test_grant_json_round_trip_and_rejects() -> None:
    made = _grants.new_grant(user_id="u-1", level="ERROR", ttl_s=60, reason="r", by="b")
    assert Grant.from_json(made.to_json()) == made
    assert Grant.from_json(made.to_json().encode()) == made
    for raw in ("nope", "[]", json.dumps({"id": "g-1"}),
                json.dumps({**made.as_dict(), "session_id": "s-1"}),
                json.dumps({**made.as_dict(), "user_id": None}),
                json.dumps({**made.as_dict(), "expires_at": "soon"})):
        with pytest.raises(ValueError, match="not a grant"):
            Grant.from_json(raw)
