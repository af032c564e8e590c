"""The debug-grant store: grants in Redis, validated, changed atomically, and audited.

The Redis layout (keys, the Lua steps, the audit stream's fields) is in docs/live-debugging.md.
Functions that take a `client` raise `redis.RedisError` as they get it (the watcher decides what an
outage means); the ones that take a URL raise `ValueError`.
"""

from __future__ import annotations

import getpass
import json
import logging
import math
import os
import secrets
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from otel_session._levels import level_name, parse_level
from otel_session._validation import id_error, text_error
from otel_session.live import urls
from otel_session.live.urls import safe_url

# One hash tag, `{grants}`, for every key a script touches: on a Redis Cluster they share a slot, so each
# step stays one atomic script (docs/live-debugging.md). Before the tag: otel_session:grants, ...:audit.
GRANTS = "otel_session:{grants}"
VERSION = "otel_session:{grants}:version"
AUDIT = "otel_session:{grants}:audit"
USED = "otel_session:{grants}:used:"
AUDIT_MAXLEN = 10_000
MAX_TTL_S = 86_400.0
DEFAULT_TTL_S = 900.0
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"
DEFAULT_SERVICE = "otel-session-cli"
TIMEOUT_S = 2.0
EVENTS = ("created", "revoked", "expired", "used")

audit_logger = logging.getLogger("otel_session.audit")

# --- the value object --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    """One live grant: records whose context carries `session_id` (or `user_id`) are exported at
    `level` until `expires_at` (epoch seconds)."""

    id: str
    session_id: str | None
    user_id: str | None
    level: str
    expires_at: float
    created_at: float
    reason: str = ""
    by: str = ""

    @property
    def levelno(self) -> int:
        return parse_level(self.level)

    @property
    def target(self) -> str:
        """`session s-42` or `user u-7`."""
        return f"session {self.session_id}" if self.session_id is not None else f"user {self.user_id}"

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at <= (time.time() if now is None else now)

    def remaining_s(self, now: float | None = None) -> float:
        return max(0.0, self.expires_at - (time.time() if now is None else now))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Grant:
        """A stored grant. Raises `ValueError` when it is not one."""
        try:
            data = json.loads(raw)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not a grant: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError("not a grant: not a JSON object")
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Grant:
        try:
            grant_id, level = data["id"], data["level"]
            session_id, user_id = data.get("session_id"), data.get("user_id")
            expires_at, created_at = float(data["expires_at"]), float(data.get("created_at", 0.0))
            reason, by = data.get("reason") or "", data.get("by") or ""
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a grant: {exc!r}") from None
        if not isinstance(grant_id, str) or not isinstance(level, str):
            raise ValueError("not a grant: id and level must be strings")
        if not all(isinstance(v, str) for v in (reason, by)):
            raise ValueError("not a grant: reason and by must be strings")
        if (session_id is None) == (user_id is None) or not all(
                v is None or isinstance(v, str) for v in (session_id, user_id)):
            raise ValueError("not a grant: exactly one of session_id and user_id must be a string")
        if math.isnan(expires_at):
            raise ValueError("not a grant: expires_at is NaN")
        return cls(grant_id, session_id, user_id, level, expires_at, created_at, reason, by)


# --- validation ----------------------------------------------------------------------------------------


def new_grant(
    session_id: str | None = None,
    user_id: str | None = None,
    level: str | int = "DEBUG",
    ttl_s: float = DEFAULT_TTL_S,
    reason: str = "",
    by: str = "",
    *,
    now: float | None = None,
) -> Grant:
    """A new grant, every argument checked. Raises `ValueError` saying what is wrong."""
    if (session_id is None) == (user_id is None):
        raise ValueError("a grant names exactly one of session_id and user_id")
    kind, who = ("session_id", session_id) if session_id is not None else ("user_id", user_id)
    problem = id_error(who)
    if problem:
        raise ValueError(f"{kind} {problem}")
    levelno = check_level(level)
    ttl = check_ttl(ttl_s)
    reason = check_text("reason", reason, empty_ok=True)
    by = check_text("by", by or default_by(), empty_ok=False)
    created = time.time() if now is None else now
    return Grant(
        id=new_id(), session_id=session_id, user_id=user_id, level=level_name(levelno),
        expires_at=round(created + ttl, 3), created_at=round(created, 6), reason=reason, by=by,  # µs: oldest first
    )


def check_level(level: object) -> int:
    try:
        levelno = parse_level(level)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ValueError(str(exc)) from None
    if levelno <= logging.NOTSET:
        raise ValueError(f"invalid grant level {level!r}: a grant needs a level above NOTSET, such as DEBUG")
    return levelno


def check_ttl(ttl_s: object) -> float:
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int | float):
        raise ValueError(f"ttl_s must be a number of seconds, not {type(ttl_s).__name__}")
    ttl = float(ttl_s)
    if math.isnan(ttl) or ttl <= 0 or ttl > MAX_TTL_S:
        raise ValueError(f"invalid ttl {ttl_s!r} s: a grant lasts more than 0 s and at most {int(MAX_TTL_S)} s (24 h)")
    return ttl


def check_since(since_s: object) -> float | None:
    if since_s is None:
        return None
    if isinstance(since_s, bool) or not isinstance(since_s, int | float) or math.isnan(since_s) or since_s < 0:
        raise ValueError(f"invalid since_s {since_s!r}: use a number of seconds, 0 or more")
    return float(since_s)


def check_text(name: str, value: object, *, empty_ok: bool) -> str:
    if empty_ok and value == "":
        return value
    problem = text_error(value)
    if problem:
        raise ValueError(f"{name} {problem}")
    assert isinstance(value, str)
    return value


def check_grant_id(grant_id: object) -> str:
    problem = id_error(grant_id)
    if problem:
        raise ValueError(f"grant id {problem}")
    assert isinstance(grant_id, str)
    return grant_id


def new_id() -> str:
    return "g-" + secrets.token_hex(6)


def default_by() -> str:
    """Who is asking: the OS user name."""
    try:
        return getpass.getuser() or "unknown"
    except (OSError, KeyError, ImportError):
        return "unknown"


# --- connecting ------------------------------------------------------------------------------------------


def redis_url(url: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """The argument, else `OTEL_SESSION_REDIS_URL`, else `REDIS_URL`, else redis://127.0.0.1:6379."""
    env = os.environ if env is None else env
    return url or env.get("OTEL_SESSION_REDIS_URL") or env.get("REDIS_URL") or DEFAULT_REDIS_URL


def redis_prefix(prefix: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """The argument, else `OTEL_SESSION_REDIS_PREFIX`, else ""."""
    env = os.environ if env is None else env
    return prefix if prefix is not None else env.get("OTEL_SESSION_REDIS_PREFIX", "")


def connect(url: str | None = None) -> Any:
    """A client for `url` (see `redis_url`; any form of `live.urls`), checked with a PING: short timeouts,
    no retries. Raises `ValueError` when the URL is bad or Redis does not answer."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    url = redis_url(url)
    target = urls.parse(url)
    with failures(url):  # a cluster client asks its startup nodes for the slots as it is built
        client = urls.client(
            target, decode_responses=True, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S,
            retry=Retry(NoBackoff(), 0), retry_on_timeout=False, health_check_interval=0,
        )
        client.ping()
    return client


@contextmanager
def failures(url: str) -> Iterator[None]:
    """A Redis error as `ValueError("Redis at <url> is unreachable: ...")`."""
    import redis

    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise ValueError(f"Redis at {safe_url(url)} is unreachable: {exc}") from None
    except urls.outages() as exc:
        raise ValueError(f"Redis at {safe_url(url)} failed: {type(exc).__name__}: {exc}") from None


@contextmanager
def session_for(url: str | None) -> Iterator[Any]:
    """`connect(url)`, closed afterwards, with every Redis error as `ValueError`."""
    resolved = redis_url(url)
    client = connect(resolved)
    try:
        with failures(resolved):
            yield client
    finally:
        client.close()


# --- scripts ---------------------------------------------------------------------------------------------

# KEYS: version, grants. Returns the version (nil when none) and the grants hash as a flat list.
_LOAD = """
return {redis.call('GET', KEYS[1]), redis.call('HGETALL', KEYS[2])}
"""

# KEYS: grants, version, audit. ARGV: id, json, maxlen, then audit field/value pairs. Returns the version.
_CREATE = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local version = redis.call('INCR', KEYS[2])
local entry = {'XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*'}
for i = 4, #ARGV do entry[#entry + 1] = ARGV[i] end
redis.call(unpack(entry))
return version
"""

# KEYS: grants, version, audit, then each grant's used set (declared: a script touches only its KEYS).
# ARGV: maxlen, field count n, then per grant: id, n audit field/value items.
# Deletes each grant still there and audits exactly those; one INCR when anything went. Returns the ids gone.
_DELETE = """
local n = tonumber(ARGV[2])
local gone = {}
local i, used = 3, 4
while i <= #ARGV do
  local id = ARGV[i]
  if redis.call('HDEL', KEYS[1], id) == 1 then
    local entry = {'XADD', KEYS[3], 'MAXLEN', '~', ARGV[1], '*'}
    for j = i + 1, i + n do entry[#entry + 1] = ARGV[j] end
    redis.call(unpack(entry))
    redis.call('DEL', KEYS[used])
    gone[#gone + 1] = id
  end
  i = i + 1 + n
  used = used + 1
end
if #gone > 0 then redis.call('INCR', KEYS[2]) end
return gone
"""

# KEYS: audit, used set. ARGV: service, expire-at, maxlen, audit field/value pairs.
# Audits a use once per (grant, service), even after a revoke (a use is a fact). Returns 1 when it wrote.
_USE = """
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('EXPIREAT', KEYS[2], ARGV[2])
local entry = {'XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*'}
for i = 4, #ARGV do entry[#entry + 1] = ARGV[i] end
redis.call(unpack(entry))
return 1
"""


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _fields(event: str, grant: Grant, service: str, by: str | None = None, at: float | None = None) -> list[str]:
    fields = {
        "event": event, "grant_id": grant.id, "session_id": grant.session_id or "", "user_id": grant.user_id or "",
        "level": grant.level, "reason": grant.reason, "by": grant.by if by is None else by, "granted_by": grant.by,
        "service": service, "at": repr(round(time.time() if at is None else at, 3)),
        "expires_at": repr(grant.expires_at),
    }
    return [item for pair in fields.items() for item in pair]


# --- the store -------------------------------------------------------------------------------------------


def create(client: Any, grant: Grant, service: str, *, prefix: str = "") -> int:
    """Store `grant`, bump the version and audit it, atomically; then the WARNING record. Returns
    the new version."""
    version = client.eval(_CREATE, 3, prefix + GRANTS, prefix + VERSION, prefix + AUDIT,
                          grant.id, grant.to_json(), AUDIT_MAXLEN, *_fields("created", grant, service))
    log_event("created", grant, service)
    return int(version)


def load(client: Any, *, prefix: str = "") -> tuple[int, list[Grant]]:
    """The version and every stored grant (expired ones included, unparseable ones skipped), read
    in one script (atomic on a Cluster too, where a MULTI needs a newer client), oldest first."""
    raw_version, entries = client.eval(_LOAD, 2, prefix + VERSION, prefix + GRANTS)
    grants = []
    for raw in (entries or [])[1::2]:
        try:
            grants.append(Grant.from_json(raw))
        except ValueError:
            continue
    grants.sort(key=lambda g: (g.created_at, g.id))
    return int(raw_version or 0), grants


def load_active(client: Any, *, prefix: str = "", now: float | None = None) -> tuple[int, list[Grant]]:
    """Like `load`, without the grants whose expiry passed (a reader ignores those; `sweep`
    removes them)."""
    now = time.time() if now is None else now
    version, grants = load(client, prefix=prefix)
    return version, [g for g in grants if not g.expired(now)]


def version(client: Any, *, prefix: str = "") -> int:
    """The change counter: poll this, reload when it moved."""
    return int(client.get(prefix + VERSION) or 0)


def delete(client: Any, grants: list[Grant], event: str, service: str, *, by: str | None = None,
           prefix: str = "") -> list[Grant]:
    """Remove `grants` (those still stored), audit each one removed here exactly once, one version
    bump for them all; then a WARNING record each. Returns the grants this call removed."""
    if not grants:
        return []
    args: list[Any] = [AUDIT_MAXLEN, len(_fields(event, grants[0], service))]
    for grant in grants:
        args.append(grant.id)
        args.extend(_fields(event, grant, service, by=by))
    used = [prefix + USED + grant.id for grant in grants]
    gone = {_text(i) for i in client.eval(_DELETE, 3 + len(used), prefix + GRANTS, prefix + VERSION, prefix + AUDIT,
                                          *used, *args)}
    removed = [g for g in grants if g.id in gone]
    for grant in removed:
        log_event(event, grant, service, by=by)
    return removed


def sweep(client: Any, service: str, *, prefix: str = "", now: float | None = None) -> list[Grant]:
    """Remove the grants whose expiry passed, each audited `expired` exactly once however many
    processes sweep at the same time. Returns the grants this call removed."""
    now = time.time() if now is None else now
    _, grants = load(client, prefix=prefix)
    return delete(client, [g for g in grants if g.expired(now)], "expired", service, prefix=prefix)


def revoke_matching(client: Any, service: str, *, grant_id: str | None = None, session_id: str | None = None,
                    user_id: str | None = None, by: str | None = None, prefix: str = "") -> list[Grant]:
    """Sweep, then revoke every live grant with this id, for this session or for this user."""
    sweep(client, service, prefix=prefix)
    _, grants = load_active(client, prefix=prefix)
    if grant_id is not None:
        matching = [g for g in grants if g.id == grant_id]
    elif session_id is not None:
        matching = [g for g in grants if g.session_id == session_id]
    else:
        matching = [g for g in grants if g.user_id == user_id]
    return delete(client, matching, "revoked", service, by=by, prefix=prefix)


def record_use(client: Any, grant: Grant, service: str, *, prefix: str = "", at: float | None = None) -> bool:
    """Audit the first use of `grant` in `service`, made at `at` (default now): a `used` stream entry
    and a WARNING record, once per (grant, service) across all its processes. A use is a fact: it is
    audited even when the grant was revoked or expired since (the entry's `at` says when). Safe to
    call again. Returns True when this call wrote the entry."""
    expire_at = math.ceil(max(grant.expires_at, time.time())) + 60
    wrote = client.eval(_USE, 2, prefix + AUDIT, prefix + USED + grant.id,
                        service, expire_at, AUDIT_MAXLEN, *_fields("used", grant, service, at=at))
    if int(wrote) == 1:
        log_event("used", grant, service)
        return True
    return False


def read_audit(client: Any, *, since_s: float | None = None, prefix: str = "",
               now: float | None = None) -> list[dict[str, Any]]:
    """The audit stream, oldest first, from `since_s` seconds ago (all of it when None)."""
    since = check_since(since_s)
    start = "-"
    if since is not None:
        start = str(max(0, int(((time.time() if now is None else now) - since) * 1000)))
    return [audit_entry(entry_id, fields) for entry_id, fields in client.xrange(prefix + AUDIT, start, "+")]


def audit_entry(entry_id: Any, fields: Mapping[Any, Any]) -> dict[str, Any]:
    data = {_text(k): _text(v) for k, v in fields.items()}
    entry: dict[str, Any] = {"id": _text(entry_id)}
    for key in ("event", "grant_id", "session_id", "user_id", "level", "reason", "by", "granted_by", "service"):
        entry[key] = data.get(key, "")
    for key in ("session_id", "user_id"):
        entry[key] = entry[key] or None
    for key in ("at", "expires_at"):
        try:
            entry[key] = float(data[key])
        except (KeyError, ValueError):
            entry[key] = None
    return entry


# --- the WARNING records ---------------------------------------------------------------------------------


def iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


_VERBS = {"created": "granted", "revoked": "revoked", "expired": "expired", "used": "in use"}


def log_event(event: str, grant: Grant, service: str, *, by: str | None = None) -> None:
    """The WARNING record on `otel_session.audit` for one audit event."""
    actor = grant.by if by is None else by
    who = {"created": f" by {actor}", "revoked": f" by {actor} (granted by {grant.by})",
           "expired": f" (granted by {grant.by})", "used": f" (granted by {grant.by})"}[event]
    until = {"revoked": "was until", "expired": "ended"}.get(event, "until")
    extra: dict[str, Any] = {
        "otel_session.audit.event": event,
        "otel_session.grant_id": grant.id,
        "otel_session.grant.level": grant.level,
        "otel_session.grant.expires_at": grant.expires_at,
        "otel_session.grant.reason": grant.reason,
        "otel_session.grant.by": grant.by,
        "otel_session.audit.by": actor,
        "otel_session.service": service,
    }
    if grant.session_id is not None:
        extra["otel_session.grant.session_id"] = grant.session_id
    if grant.user_id is not None:
        extra["otel_session.grant.user_id"] = grant.user_id
    audit_logger.warning(
        "Debug grant %s %s%s: %s for %s, %s %s, reason %r, service %s",
        grant.id, _VERBS[event], who, grant.level, grant.target, until, iso(grant.expires_at),
        grant.reason, service, extra=extra,
    )
