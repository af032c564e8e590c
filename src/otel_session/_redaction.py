"""Secrets out of log records, before they are captured or exported.

Off until someone adds a pattern (a regex sub per record is not free). A pattern may name a group
`keep` for text to leave in place, such as the `Authorization: ` before a token.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from otel_session import _sdk

REDACTED = "[REDACTED]"
SECRET_PATTERNS = (
    r"sk-[A-Za-z0-9_\-]{8,}",  # OpenAI-style API keys
    r"(?i)\bbearer\s+[A-Za-z0-9._~+/\-]+=*",
    r"(?i)(?P<keep>[\"']?(?:authorization|x-api-key|api[_-]?key)[\"']?\s*[:=]\s*[\"']?)[^\"'\s,}]+",
)


def _replace(match: re.Match[str]) -> str:
    keep = match.groupdict().get("keep")
    return (keep or "") + REDACTED


class Redactor:
    def __init__(self) -> None:
        self.patterns: tuple[re.Pattern[str], ...] = ()
        self._lock = threading.Lock()

    def add(self, *patterns: str | re.Pattern[str]) -> None:
        compiled = [p if isinstance(p, re.Pattern) else re.compile(p) for p in patterns]
        with self._lock:
            known = {p.pattern for p in self.patterns}
            self.patterns += tuple(p for p in compiled if p.pattern not in known)

    def text(self, value: str) -> str:
        for pattern in self.patterns:
            value = pattern.sub(_replace, value)
        return value

    def record(self, log_record: Any) -> None:
        """Redact the body and the string attributes (exception messages and stack traces too)."""
        body = log_record.body
        if isinstance(body, str):
            log_record.body = self.text(body)
        attributes = log_record.attributes
        if attributes:
            for key, value in _sdk.attributes_copy(attributes).items():
                if isinstance(value, str) and (clean := self.text(value)) != value:
                    attributes[key] = clean


redactor = Redactor()


def add_redaction(*patterns: str | re.Pattern[str]) -> None:
    """Redact matches of these regexes (for example `SECRET_PATTERNS`, or `re.escape(api_key)`)
    from every record's message and string attributes, in captures and exports alike."""
    redactor.add(*patterns)
