"""The dead-letter list: launch jobs that cannot launch, each with why, and the CLI that lists and replays them.

An entry never holds a room token (it is redacted before the entry is written) and its job is capped:
the list is for people to read, and a poison job may be megabytes. Count and age are capped by
`Launches.dead_letter` (`BOT_DEAD_LETTER_MAX`, `BOT_DEAD_LETTER_TTL_S`).
"""

from __future__ import annotations

import json
import re
import sys
import time
import uuid
from typing import Any, TextIO

from pydantic import ValidationError

from bot.launches import Launches
from bot.models import Job

REDACTED = "[REDACTED]"
JOB_CAP = 8192  # characters of the (redacted) job an entry keeps
REASON_CAP = 500
# `"token": "..."` and `"room_token": 123` in text that is not JSON (or is cut short): a value runs to its closing
# quote, or to the end of the text when it has none.
_TOKEN = re.compile(r'("[\w\-]*token"\s*:\s*)(?:"(?:[^"\\]|\\.)*(?:"|\Z)|[^\s,}\]]+)', re.IGNORECASE)


def _secret_key(key: object) -> bool:
    return isinstance(key, str) and key.lower().endswith("token")


def _scrub(value: Any) -> tuple[Any, bool]:
    """A copy with every `*token` field's value redacted, and whether there was one."""
    if isinstance(value, dict):
        out, changed = {}, False
        for k, v in value.items():
            if _secret_key(k) and v is not None:
                out[k], changed = REDACTED, True
            else:
                out[k], inner = _scrub(v)
                changed = changed or inner
        return out, changed
    if isinstance(value, list):
        items = [_scrub(v) for v in value]
        return [v for v, _ in items], any(c for _, c in items)
    return value, False


def redact(raw: str, cap: int = JOB_CAP) -> tuple[str, bool]:
    """The job as an entry keeps it: tokens redacted, at most `cap` characters; and whether it was cut.

    JSON is redacted field by field (and kept byte for byte when it holds no token); anything else,
    or a job too long to parse, by pattern. The text is cut only after redaction, or before a
    pattern pass that also catches a value cut short, so no part of a token survives either way.
    """
    text: str | None = None
    if len(raw) <= 16 * cap:
        try:
            scrubbed, changed = _scrub(json.loads(raw))
            text = json.dumps(scrubbed) if changed else raw
        except Exception:  # not JSON, or nested too deep (RecursionError): the pattern pass
            text = None
    if text is None:
        text = _TOKEN.sub(lambda m: f'{m.group(1)}"{REDACTED}"', raw[: 16 * cap])
    if len(text) > cap:
        return _TOKEN.sub(lambda m: f'{m.group(1)}"{REDACTED}"', text[:cap]), True
    return text, len(raw) > 16 * cap


def entry(raw: str | bytes, reason: str, launch_id: str | None = None, session_id: str | None = None) -> dict[str, Any]:
    """A dead-letter entry for `raw`. The ids are the job's own, when it had readable ones."""
    text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
    job, truncated = redact(text)
    out: dict[str, Any] = {"id": uuid.uuid4().hex[:16]}
    for name, value in (("launchId", launch_id), ("sessionId", session_id)):
        if isinstance(value, str) and 0 < len(value) <= 128:
            out[name] = value
    out.update(reason=reason[:REASON_CAP], job=job, timestamp=time.time())
    if truncated:
        out["truncated"] = True
    return out


async def entries(launches: Launches) -> list[tuple[str, dict[str, Any]]]:
    """(stored text, entry) of every entry younger than the TTL, oldest first."""
    oldest = time.time() - launches.settings.dead_letter_ttl_s
    out = []
    for text in await launches.redis.lrange(launches.keys.dead_letter, 0, -1):
        try:
            value = json.loads(text)
        except ValueError:
            continue
        stamp = value.get("timestamp") if isinstance(value, dict) else None
        if isinstance(stamp, (int, float)) and stamp >= oldest:
            out.append((text, value))
    return out


async def print_entries(launches: Launches, out: TextIO | None = None) -> int:
    """`--dead-letters`: one JSON line per entry."""
    out = out or sys.stdout
    for _, value in await entries(launches):
        out.write(json.dumps(value) + "\n")
    return 0


async def replay(launches: Launches, entry_id: str, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """`--replay ID`: queue the entry's job again under its own launch id, then drop the entry.

    The token was redacted, so the bot joins without one. Refused (non-zero) for an unknown id, a
    job that was not a valid job (or was cut short), a room some launch holds, or a full queue.
    """
    out, err = out or sys.stdout, err or sys.stderr
    found = next(((text, value) for text, value in await entries(launches) if value.get("id") == entry_id), None)
    if found is None:
        err.write(f"no dead letter with id {entry_id!r}\n")
        return 1
    text, value = found
    if value.get("truncated"):
        err.write(f"dead letter {entry_id} cannot be replayed: its job was cut short\n")
        return 1
    try:
        data = json.loads(value.get("job", ""))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        had_token = data.pop("token", None) is not None
        job = Job.model_validate(data)
    except (ValueError, ValidationError, RecursionError) as exc:
        problem = exc.error_count() if isinstance(exc, ValidationError) else type(exc).__name__
        err.write(f"dead letter {entry_id} cannot be replayed: its job is not a valid launch job ({problem})\n")
        return 1
    status = await launches.enqueue(job.pending_lock(), json.dumps(data))
    if status == "taken":
        err.write(f"dead letter {entry_id} not replayed: the room of launch {job.launchId} is taken by another "
                  "launch (or this launch still holds it)\n")
        return 1
    if status == "full":
        err.write(f"dead letter {entry_id} not replayed: the launch queue is full; try again later\n")
        return 1
    await launches.redis.lrem(launches.keys.dead_letter, 1, text)
    note = "; its room token was redacted, so the bot joins without one" if had_token else ""
    out.write(f"launch {job.launchId} (session {job.sessionId}) queued again{note}\n")
    return 0
