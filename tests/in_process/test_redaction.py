import logging
import re

from otel_session import SECRET_PATTERNS, add_redaction, capture, session
from otel_session._redaction import redactor

log = logging.getLogger("tests.redaction")
KEY = "sk-proj-Abc123def456GHI789"


def test_without_patterns_nothing_is_rewritten(otel_logs):
    log.warning("key %s", KEY)
    assert otel_logs.messages() == [f"key {KEY}"]


def test_secrets_are_redacted_in_exports_captures_and_exception_text(otel_logs):
    add_redaction(*SECRET_PATTERNS)
    add_redaction(re.escape("proxy-key-0042"))
    with session(session_id="s"), capture() as run:
        log.warning("calling with %s", KEY)
        log.warning("headers: {'Authorization': 'Bearer abc.def-ghi', 'accept': 'json'}")
        log.warning("api_key=proxy-key-0042 and x-api-key: hunter2")
        try:
            raise RuntimeError(f"upstream refused {KEY}")
        except RuntimeError:
            log.exception("failed")
    exported = otel_logs.records
    texts = [r.message for r in exported] + [r.exception or "" for r in exported]
    texts += [str(v) for r in exported for v in r.attributes.values()]
    rendered = run.render()
    for secret in (KEY, "abc.def-ghi", "proxy-key-0042", "hunter2"):
        assert all(secret not in t for t in texts), secret
        assert secret not in rendered, secret
    assert exported[0].message == "calling with [REDACTED]"
    assert exported[1].message == "headers: {'Authorization': '[REDACTED]', 'accept': 'json'}"
    assert exported[2].message == "api_key=[REDACTED] and x-api-key: [REDACTED]"
    assert "RuntimeError: upstream refused [REDACTED]" in exported[3].exception


def test_adding_a_pattern_twice_keeps_one(otel_logs):
    add_redaction(*SECRET_PATTERNS)
    count = len(redactor.patterns)
    add_redaction(*SECRET_PATTERNS)
    assert len(redactor.patterns) == count == len(SECRET_PATTERNS)
