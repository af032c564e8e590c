"""Redaction on the objects the SDK exports: credentials whatever their scheme, strings nested in
list, tuple and dict values, and the exported bytes."""

import logging
import re
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry._logs import LogRecord
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.sdk._logs import ReadableLogRecord, ReadWriteLogRecord
from opentelemetry.sdk.resources import Resource

from otel_session._redaction import MAX_DEPTH, REDACTED, SECRET_PATTERNS, Redactor, _replace
from tests.helpers.wire import SerialisingExporter

SECRETS = ("dXNlcjpwYXNz", "abc123", "6629fae4", "k-123", "tok.en-9", "hunter2", "sk-proj-Abc123def456")


@pytest.fixture
def redactor() -> Redactor:
    r = Redactor()
    r.add(*SECRET_PATTERNS)
    return r


def _sdk_record(body: object = "m", attributes: dict[str, object] | None = None) -> LogRecord:
    """The record a processor's on_emit sees: attributes in the SDK's BoundedAttributes."""
    return ReadWriteLogRecord(LogRecord(body=body, attributes=attributes)).log_record


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Basic dXNlcjpwYXNz", "Authorization: [REDACTED]"),
        ("Authorization: Token abc123", "Authorization: [REDACTED]"),
        ("authorization: ApiKey k-123", "authorization: [REDACTED]"),
        ("Authorization: Bearer tok.en-9", "Authorization: [REDACTED]"),
        ('Authorization: Digest username="Mufasa", realm="r@h", nonce="dcd9", response="6629fae4", opaque="5c"',
         "Authorization: [REDACTED]"),
        ("Authorization: AWS4-HMAC-SHA256 Credential=AKIA/2013/s3/aws4_request, SignedHeaders=host;x-amz-date, "
         "Signature=6629fae4", "Authorization: [REDACTED]"),
        ("{'authorization': 'Basic abc123'}", "{'authorization': '[REDACTED]'}"),
        ('{"Authorization": "Token abc123", "accept": "json"}', '{"Authorization": "[REDACTED]", "accept": "json"}'),
        ('"Authorization": "Digest username=\\"M\\", response=\\"6629fae4\\""', '"Authorization": "[REDACTED]"'),
        ("authorization=Basic abc123 status=401", "authorization=[REDACTED] status=401"),
        ("GET / HTTP/1.1\r\nAuthorization: Basic dXNlcjpwYXNz\r\nAccept: */*\r\n\r\n",
         "GET / HTTP/1.1\r\nAuthorization: [REDACTED]\r\nAccept: */*\r\n\r\n"),
        ("Proxy-Authorization: Basic dXNlcjpwYXNz, Accept: json", "Proxy-Authorization: [REDACTED], Accept: json"),
        ("x-api-key: hunter2", "x-api-key: [REDACTED]"),
        ("{'X-Api-Key': 'hunter2'}", "{'X-Api-Key': '[REDACTED]'}"),
        ("api-key=hunter2 and api_key: abc123", "api-key=[REDACTED] and api_key: [REDACTED]"),
        ("GET /v1?api_key=hunter2&page=2", "GET /v1?api_key=[REDACTED]&page=2"),
        ("OPENAI_API_KEY=sk-proj-Abc123def456", "OPENAI_API_KEY=[REDACTED]"),
        ("calling with sk-proj-Abc123def456", "calling with [REDACTED]"),
        ("token: Bearer tok.en-9", "token: [REDACTED]"),
        ("Authorization: [REDACTED]", "Authorization: [REDACTED]"),  # already redacted: left alone
        ("authorization failed for user 7", "authorization failed for user 7"),
    ],
)
def test_credentials_go_whole_whatever_the_scheme(redactor, text, expected):
    assert redactor.text(text) == expected
    for secret in SECRETS:
        assert secret not in redactor.text(text)


def test_case_folding_the_regex_engine_does_is_not_missed_by_the_gate(redactor):
    # re's IGNORECASE matches U+0131 (dotless i) and U+212A (Kelvin sign) to ASCII i and k
    assert redactor.text("AUTHOR\u0131ZATION: Basic abc123") == "AUTHOR\u0131ZATION: [REDACTED]"
    assert redactor.text("api_\u212aey=abc123 \u00fc") == "api_\u212aey=[REDACTED] \u00fc"


def test_strings_nested_in_lists_tuples_and_dicts_are_redacted(redactor):
    record = _sdk_record(
        body={"msg": "upstream said Authorization: Basic dXNlcjpwYXNz",
              "tries": [1, "Token abc123 sk-proj-Abc123def456"]},
        attributes={
            "args": ["x-api-key: hunter2", "fine"],  # one type: SDK 1.42 drops mixed sequences
            "pair": ("ok", "Authorization: Token abc123"),
            "request": {"headers": {"Authorization": "Basic dXNlcjpwYXNz", "Accept": "json"}, "n": 2},
            "http.request.header.authorization": ["Basic dXNlcjpwYXNz"],
            "http.request.header.x-api-key": ("hunter2",),
            "plain": "sk-proj-Abc123def456",
            "count": 7,
        },
    )
    redactor.record(record)
    attributes = record.attributes
    assert type(attributes) is BoundedAttributes
    assert attributes["args"] == ("x-api-key: [REDACTED]", "fine")  # the SDK keeps sequences as tuples
    assert attributes["pair"] == ("ok", "Authorization: [REDACTED]")
    assert attributes["request"] == {"headers": {"Authorization": REDACTED, "Accept": "json"}, "n": 2}
    assert attributes["http.request.header.authorization"] == (REDACTED,)
    assert attributes["http.request.header.x-api-key"] == (REDACTED,)
    assert attributes["plain"] == REDACTED and attributes["count"] == 7
    assert record.body == {"msg": "upstream said Authorization: [REDACTED]", "tries": [1, "Token abc123 [REDACTED]"]}


def test_container_types_are_kept_in_a_plain_dict_of_attributes(redactor):
    record = LogRecord(body=["sk-proj-Abc123def456", ("x-api-key: hunter2",)],
                       attributes={"l": ["sk-proj-Abc123def456"], "t": ("sk-proj-Abc123def456",)})
    redactor.record(record)
    assert record.attributes == {"l": [REDACTED], "t": (REDACTED,)}
    assert type(record.attributes["l"]) is list and type(record.attributes["t"]) is tuple
    assert record.body == [REDACTED, ("x-api-key: [REDACTED]",)]


def test_a_record_without_secrets_is_left_exactly_as_it_was(redactor):
    nested = {"a": ["b", ("c",)], "authorized": "yes"}
    record = _sdk_record(body="authorization checks pass", attributes={"n": nested, "s": "api docs", "k": 1})
    before = dict(record.attributes)
    redactor.record(record)
    assert record.body == "authorization checks pass"
    assert all(record.attributes[k] is v for k, v in before.items())


def test_containers_deeper_than_the_limit_are_replaced_not_let_through(redactor):
    deep: object = "sk-proj-Abc123def456"
    for _ in range(MAX_DEPTH + 2):
        deep = [deep]
    record = LogRecord(body=deep, attributes={"deep": deep})
    redactor.record(record)
    assert "sk-proj" not in repr(record.body) and "sk-proj" not in repr(record.attributes)


def test_immutable_attributes_are_replaced_rather_than_left(redactor):
    record = LogRecord(body="m", attributes=BoundedAttributes(attributes={"k": "x-api-key: hunter2", "n": 1}))
    redactor.record(record)
    assert dict(record.attributes) == {"k": "x-api-key: [REDACTED]", "n": 1}


def test_user_patterns_literal_anchored_and_flagged():
    r = Redactor()
    r.add(re.escape("proxy-key-0042"), r"^ticket-\d+$", re.compile("hush", re.IGNORECASE), r"(?P<keep>pin=)\d{4}")
    record = _sdk_record(body="proxy-key-0042 and HUSH", attributes={"t": "ticket-77", "p": ["pin=1234"], "u": "x"})
    r.record(record)
    assert record.body == "[REDACTED] and [REDACTED]"
    assert record.attributes["t"] == REDACTED and record.attributes["p"] == ("pin=[REDACTED]",)
    assert r.text("no ticket-77 here") == "no ticket-77 here"  # the anchor still means the whole string


def test_assigning_patterns_directly_is_honoured(redactor):
    saved = redactor.patterns
    redactor.patterns = ()
    assert redactor.text("sk-proj-Abc123def456") == "sk-proj-Abc123def456"
    redactor.patterns = saved
    assert redactor.text("sk-proj-Abc123def456") == REDACTED


def test_adding_twice_in_one_call_keeps_one():
    r = Redactor()
    r.add("abc", "abc", re.compile("abc"))
    assert len(r.patterns) == 1


def _naive(patterns: Sequence[re.Pattern[str]], text: str) -> str:
    for pattern in patterns:
        text = pattern.sub(_replace, text)
    return text


words = st.sampled_from(["Authorization", "AUTHOR\u0131ZATION", "api_key", "x-api-\u212aey", "Bearer", "bearer",
                         "sk-", "sk-proj-Abc123def456", "Basic", "=", ": ", "'", '"', ",", "\r\n", " ", "abc", "ü",
                         "[REDACTED]", "{", "}", "key", "api"])


@settings(max_examples=400, deadline=None)
@given(st.lists(words, max_size=12).map("".join), st.lists(words, max_size=4).map("".join))
def test_the_gate_never_changes_the_result(text, key):
    r = Redactor()
    r.add(*SECRET_PATTERNS, re.escape("abc'"), r"^Basic$")
    assert r.text(text) == _naive(r.patterns, text)
    record = LogRecord(body=text, attributes={"a": text, key or "k": "v"})
    r.record(record)
    assert record.body == _naive(r.patterns, text) and record.attributes["a"] == _naive(r.patterns, text)


def test_no_secret_reaches_the_encoded_bytes(redactor):
    record = _sdk_record(
        body={"headers": [("Authorization", "Basic dXNlcjpwYXNz")], "note": "x-api-key: hunter2"},
        attributes={"args": ("Authorization: Token abc123",), "h": {"authorization": "Digest response=6629fae4"}},
    )
    redactor.record(record)
    payload = encode_logs([ReadableLogRecord(record, Resource.create({}))]).SerializeToString()
    for secret in SECRETS:
        assert secret.encode() not in payload
    decoded = ExportLogsServiceRequest.FromString(payload).resource_logs[0].scope_logs[0].log_records[0]
    assert decoded.body.kvlist_value.values[1].value.string_value == "x-api-key: [REDACTED]"


def test_end_to_end_through_configure(otel_logs):
    import otel_session

    exporter = SerialisingExporter()
    telemetry = otel_session.configure(exporter=exporter, level="INFO")
    otel_session.add_redaction(*SECRET_PATTERNS)
    log = logging.getLogger("tests.redaction_records")
    with otel_session.session(session_id="s-1"):
        log.warning("upstream %s", {"Authorization": "Basic dXNlcjpwYXNz"})
        log.warning("retry", extra={"headers": ["Authorization: Token abc123", "x-api-key: hunter2"],
                                    "request": {"authorization": "ApiKey k-123"}})
    telemetry.force_flush()
    payload = b"".join(exporter.payloads)
    assert payload
    for secret in SECRETS:
        assert secret.encode() not in payload
    records = [r for p in exporter.payloads for rl in ExportLogsServiceRequest.FromString(p).resource_logs
               for sl in rl.scope_logs for r in sl.log_records]
    assert [r.body.string_value for r in records] == ["upstream {'Authorization': '[REDACTED]'}", "retry"]
