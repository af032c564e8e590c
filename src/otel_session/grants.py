"""Live debug grants: "DEBUG for session S (or user U) for the next 15 minutes", held in Redis.

```python
from otel_session import grants

g = grants.grant(session_id="s-42", level="DEBUG", ttl_s=900, reason="ticket 123", by="ada")
grants.active()                 # [Grant(id='g-…', session_id='s-42', …)]
grants.revoke(g.id)             # or revoke(session_id="s-42") / revoke(user_id="u-7"): every match
grants.audit(since_s=3600)      # the audit stream: created, revoked, expired, used
```

Every configured process that reads the same Redis exports the records of a granted session or user
at the granted level until the grant expires or is revoked. Each call connects to `redis_url`, else
`OTEL_SESSION_REDIS_URL`, else `REDIS_URL`, else redis://127.0.0.1:6379, with short timeouts; keys
go behind `prefix`, else `OTEL_SESSION_REDIS_PREFIX`, else none. Bad input and an unreachable Redis
raise `ValueError`. Each create, revoke and expiry is written to the capped stream
`otel_session:{grants}:audit` and as a WARNING record on the logger `otel_session.audit`.
"""

from __future__ import annotations

import os
from typing import Any

from otel_session._configure import configured
from otel_session._validation import id_error
from otel_session.live import store as _grants
from otel_session.live.store import DEFAULT_SERVICE, DEFAULT_TTL_S, MAX_TTL_S, Grant

__all__ = ["DEFAULT_TTL_S", "MAX_TTL_S", "Grant", "active", "audit", "grant", "revoke"]


def service_name() -> str:
    """The service this process logs as, else `OTEL_SERVICE_NAME`, else `otel-session-cli`: who the
    audit says acted."""
    telemetry = configured()
    if telemetry is not None and telemetry.service_name and telemetry.service_name != "unknown_service":
        return telemetry.service_name
    return os.environ.get("OTEL_SERVICE_NAME", "").strip() or DEFAULT_SERVICE


def grant(
    session_id: str | None = None,
    user_id: str | None = None,
    level: str | int = "DEBUG",
    ttl_s: float = DEFAULT_TTL_S,
    reason: str = "",
    by: str = "",
    *,
    redis_url: str | None = None,
    prefix: str | None = None,
) -> Grant:
    """Grant `level` to exactly one of a session or a user for `ttl_s` seconds (0 < ttl_s ≤ 24 h).
    `by` defaults to the OS user name. Raises `ValueError` for bad input or an unreachable Redis."""
    new = _grants.new_grant(session_id, user_id, level, ttl_s, reason, by)
    with _grants.session_for(redis_url) as client:
        _grants.create(client, new, service_name(), prefix=_grants.redis_prefix(prefix))
    return new


def revoke(
    grant_id: str | None = None,
    *,
    session_id: str | None = None,
    user_id: str | None = None,
    by: str = "",
    redis_url: str | None = None,
    prefix: str | None = None,
) -> list[Grant]:
    """Revoke the grant `grant_id`, or every live grant for `session_id`, or for `user_id` (exactly
    one of them). Returns the grants revoked (none when nothing matched). `by` (who revokes, for the
    audit) defaults to the OS user name. Raises `ValueError` for bad input or an unreachable Redis."""
    given = [(name, value) for name, value in
             (("grant_id", grant_id), ("session_id", session_id), ("user_id", user_id)) if value is not None]
    if len(given) != 1:
        raise ValueError("revoke names exactly one of grant_id, session_id and user_id")
    name, value = given[0]
    if name == "grant_id":
        _grants.check_grant_id(value)
    else:
        problem = id_error(value)
        if problem:
            raise ValueError(f"{name} {problem}")
    actor = _grants.check_text("by", by or _grants.default_by(), empty_ok=False)
    with _grants.session_for(redis_url) as client:
        return _grants.revoke_matching(client, service_name(), grant_id=grant_id, session_id=session_id,
                                       user_id=user_id, by=actor, prefix=_grants.redis_prefix(prefix))


def active(*, redis_url: str | None = None, prefix: str | None = None) -> list[Grant]:
    """The live grants, oldest first (expired ones are swept, and audited, first)."""
    resolved = _grants.redis_prefix(prefix)
    with _grants.session_for(redis_url) as client:
        _grants.sweep(client, service_name(), prefix=resolved)
        return _grants.load_active(client, prefix=resolved)[1]


def audit(*, since_s: float | None = None, redis_url: str | None = None,
          prefix: str | None = None) -> list[dict[str, Any]]:
    """The audit stream, oldest first, from `since_s` seconds ago (all of it when None): dicts with
    `id` (the stream entry id), `event` (created|revoked|expired|used), `grant_id`, `session_id`,
    `user_id`, `level`, `reason`, `by` (who did it), `granted_by`, `service`, `at`, `expires_at`.
    Grants that expired and were not swept yet are swept (and audited) first."""
    since = _grants.check_since(since_s)
    resolved = _grants.redis_prefix(prefix)
    with _grants.session_for(redis_url) as client:
        _grants.sweep(client, service_name(), prefix=resolved)  # an expiry nobody swept yet shows
        return _grants.read_audit(client, since_s=since, prefix=resolved)
