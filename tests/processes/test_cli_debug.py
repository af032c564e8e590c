"""`otel-session debug on|off|list|audit` end to end: `python -m otel_session debug ...` in its own
process against the real Redis, behind a key prefix of its own (`OTEL_SESSION_REDIS_PREFIX`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from otel_session import grants
from otel_session._cli import parse_duration
from otel_session.live.store import AUDIT, GRANTS, VERSION
from tests.helpers.support import ROOT

pytestmark = [pytest.mark.redis, pytest.mark.latest_only]  # and the folder's (tests/conftest.py)
REDIS_URL = "redis://127.0.0.1:6379"


@pytest.fixture
def prefix(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"test-cli-{uuid.uuid4().hex[:12]}:"
    for var in ("OTEL_SESSION_REDIS_URL", "REDIS_URL", "OTEL_SESSION_REDIS_PREFIX"):
        monkeypatch.delenv(var, raising=False)
    yield name
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=name + "*"))
    if keys:
        client.delete(*keys)
    client.close()


def cli(prefix: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items()
               if k not in ("OTEL_SESSION_REDIS_URL", "REDIS_URL", "OTEL_LOGS_EXPORTER", "NO_COLOR")}
    environ.update({"OTEL_SESSION_REDIS_PREFIX": prefix, "OTEL_SERVICE_NAME": "", **env})
    return subprocess.run([sys.executable, "-m", "otel_session", "debug", *args], env=environ, cwd=ROOT,
                          capture_output=True, text=True, timeout=30)


def keys_under(prefix: str) -> list[Any]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        return list(client.scan_iter(match=prefix + "*"))
    finally:
        client.close()


def test_on_list_off_audit_end_to_end(prefix: str) -> None:
    on = cli(prefix, "on", "--session", "s-42", "--for", "15m", "--reason", "ticket 123", "--by", "ada")
    assert on.returncode == 0, on.stderr
    assert on.stderr == ""  # the audit record is not echoed by the stdlib's last resort
    (made,) = grants.active(prefix=prefix)
    assert on.stdout.startswith(f"{made.id}: DEBUG for session s-42 until ")
    assert "ticket 123" in on.stdout and "ada" in on.stdout
    assert made.session_id == "s-42" and made.by == "ada" and made.reason == "ticket 123"
    assert made.expires_at - made.created_at == pytest.approx(900, abs=0.01)

    user = cli(prefix, "on", "--user", "u-7", "--level", "info", "--for", "90")
    assert user.returncode == 0, user.stderr
    user_grant = next(g for g in grants.active(prefix=prefix) if g.user_id == "u-7")
    assert user_grant.level == "INFO" and user_grant.expires_at - user_grant.created_at == pytest.approx(90, abs=0.01)

    listing = cli(prefix, "list")
    assert listing.returncode == 0, listing.stderr
    header, *rows = listing.stdout.splitlines()
    assert header.split() == ["ID", "TARGET", "LEVEL", "UNTIL", "LEFT", "BY", "REASON"]
    assert len(rows) == 2 and rows[0].startswith(made.id) and "session s-42" in rows[0] and "ticket 123" in rows[0]
    assert rows[1].startswith(user_grant.id) and "user u-7" in rows[1] and "INFO" in rows[1]
    as_json = [json.loads(line) for line in cli(prefix, "list", "--json").stdout.splitlines()]
    assert [g["id"] for g in as_json] == [made.id, user_grant.id] and as_json[1]["session_id"] is None

    off = cli(prefix, "off", "--session", "s-42", "--by", "bob")
    assert off.returncode == 0, off.stderr
    assert off.stdout.strip().startswith(f"revoked {made.id}: DEBUG for session s-42")
    off_id = cli(prefix, "off", "--id", user_grant.id)
    assert off_id.returncode == 0 and user_grant.id in off_id.stdout
    again = cli(prefix, "off", "--user", "u-7")
    assert again.returncode == 0 and "nothing revoked" in again.stdout
    assert grants.active(prefix=prefix) == []
    assert cli(prefix, "list").stdout.strip() == "no live grants"

    audit = cli(prefix, "audit", "--json")
    assert audit.returncode == 0, audit.stderr
    entries = [json.loads(line) for line in audit.stdout.splitlines()]
    assert [(e["event"], e["grant_id"]) for e in entries] == [
        ("created", made.id), ("created", user_grant.id), ("revoked", made.id), ("revoked", user_grant.id)]
    assert entries[2]["by"] == "bob" and entries[2]["granted_by"] == "ada"
    assert {e["service"] for e in entries} == {"otel-session-cli"}
    table = cli(prefix, "audit", "--since", "1h")
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["TIME", "EVENT", "GRANT", "TARGET", "LEVEL", "SERVICE", "BY", "REASON"]
    assert [row.split()[1] for row in rows] == ["created", "created", "revoked", "revoked"]
    assert "session s-42" in rows[0] and "ticket 123" in rows[0]


def test_an_expiry_shows_in_the_audit(prefix: str) -> None:
    assert cli(prefix, "on", "--user", "u-1", "--for", "1s").returncode == 0
    time.sleep(1.1)
    audit = cli(prefix, "audit", "--json", "--since", "5m")
    assert [json.loads(line)["event"] for line in audit.stdout.splitlines()] == ["created", "expired"]
    assert cli(prefix, "audit", "--since", "0").stdout.strip() == "no audit entries"


def test_the_audit_record_goes_to_the_exporter_the_environment_names(prefix: str) -> None:
    on = cli(prefix, "on", "--session", "s-exp", "--reason", "exported", OTEL_LOGS_EXPORTER="console")
    assert on.returncode == 0, on.stderr
    (made,) = grants.active(prefix=prefix)
    assert f'"otel_session.grant_id": "{made.id}"' in on.stdout
    assert '"service.name": "otel-session-cli"' in on.stdout and "WARN" in on.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["on"], "one of the arguments --session --user is required"),
    (["on", "--session", "s-1", "--user", "u-1"], "not allowed with argument"),
    (["on", "--session", "bad id"], "session_id 'bad id' is not a valid id"),
    (["on", "--user", "x" * 200], "is not a valid id"),
    (["on", "--session", "s-1", "--level", "LOUD"], "invalid log level 'LOUD'"),
    (["on", "--session", "s-1", "--for", "0"], "invalid ttl 0.0 s"),
    (["on", "--session", "s-1", "--for", "25h"], "at most 86400 s (24 h)"),
    (["on", "--session", "s-1", "--for=-5m"], "argument --for: invalid duration '-5m'"),
    (["on", "--session", "s-1", "--for", "-5"], "argument --for: invalid duration '-5'"),
    (["on", "--session", "s-1", "--for", "soon"], "argument --for: invalid duration 'soon'"),
    (["on", "--session", "s-1", "--reason", "a\tb"], "contains control characters"),
    (["off"], "one of the arguments --session --user --id is required"),
    (["off", "--id", "no good"], "grant id 'no good' is not a valid id"),
    (["off", "--session", "s-1", "--id", "g-1"], "not allowed with argument"),
    (["audit", "--since", "yesterday"], "argument --since: invalid duration 'yesterday'"),
    (["list", "--bogus"], "unrecognized arguments: --bogus"),
    (["on", "--session", "s-1", "--redis-url", "ftp://h"], "invalid Redis URL 'ftp://h'"),
])
def test_bad_input_is_one_line_on_stderr_and_exit_2(prefix: str, args: list[str], message: str) -> None:
    done = cli(prefix, *args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith("otel-session debug ") and ": error: " in done.stderr
    assert message in done.stderr, done.stderr
    assert keys_under(prefix) == []


@pytest.mark.parametrize("args", [["on", "--session", "s-1"], ["off", "--id", "g-1"], ["list"], ["audit"]])
def test_an_unreachable_redis_is_exit_2_without_the_password(prefix: str, args: list[str]) -> None:
    started = time.monotonic()
    done = cli(prefix, *args, "--redis-url", "redis://:hunter2@127.0.0.1:1")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [done.stderr.strip()]
    assert "Redis at redis://127.0.0.1:1 is unreachable" in done.stderr
    assert "hunter2" not in done.stderr + done.stdout
    assert time.monotonic() - started < 10


def test_the_redis_url_comes_from_the_environment(prefix: str) -> None:
    down = "redis://127.0.0.1:1"
    assert "127.0.0.1:1 is unreachable" in cli(prefix, "list", REDIS_URL=down).stderr
    assert "127.0.0.1:1 is unreachable" in cli(prefix, "list", OTEL_SESSION_REDIS_URL=down).stderr
    ok = cli(prefix, "on", "--session", "s-1", OTEL_SESSION_REDIS_URL=REDIS_URL, REDIS_URL=down)
    assert ok.returncode == 0, ok.stderr
    assert cli(prefix, "list", "--redis-url", REDIS_URL, OTEL_SESSION_REDIS_URL=down).returncode == 0


def test_the_prefix_keeps_the_keys_apart(prefix: str) -> None:
    assert cli(prefix, "on", "--session", "s-1").returncode == 0
    names = {k.decode() for k in keys_under(prefix)}
    assert names == {prefix + GRANTS, prefix + VERSION, prefix + AUDIT}
    other = cli(prefix + "other:", "list")
    assert other.stdout.strip() == "no live grants"


def test_debug_without_an_action_prints_help_and_exits_2(prefix: str) -> None:
    done = cli(prefix)
    assert done.returncode == 2 and "on" in done.stderr and "audit" in done.stderr
    top = subprocess.run([sys.executable, "-m", "otel_session", "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=30)
    assert top.returncode == 0 and "debug" in top.stdout and "logs" in top.stdout


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("15m", 900), ("2h", 7200), ("1d", 86400), ("1h30m", 5400), ("120", 120), ("1.5", 1.5),
    (" 10M ", 600), ("0", 0),
])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "-5", "5x", "nan", "inf", "m", "1h-5m"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)
