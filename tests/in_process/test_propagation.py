import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import baggage, trace
from opentelemetry.context import Context

from otel_session import (
    attach,
    current,
    extract_env,
    extract_headers,
    extract_payload,
    inject_env,
    inject_headers,
    inject_payload,
    session,
)
from otel_session._validation import entry_error

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C


def _trace_id(ctx: Context) -> int:
    return trace.get_current_span(ctx).get_span_context().trace_id


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "otel_session._propagation"
            and r.levelno == logging.WARNING]


@pytest.fixture
def in_session(otel_logs):  # otel_logs: configured, so spans have real trace ids
    tracer = trace.get_tracer("tests")
    with tracer.start_as_current_span("hop") as span, session(
        session_id="s-1", user_id="u-1", user_name="Ann Lee+Co, \"quoted\"; ü", log_level="DEBUG",
        extra={"bot.launch_id": "L-1"},
    ):
        yield span.get_span_context().trace_id


EXPECTED = {"session.id": "s-1", "user.id": "u-1", "user.name": "Ann Lee+Co, \"quoted\"; ü",
            "otel_session.log_level": "DEBUG", "bot.launch_id": "L-1"}


def test_headers_round_trip(in_session):
    headers = inject_headers({"accept": "*/*"})
    assert headers["accept"] == "*/*" and headers["traceparent"].startswith("00-")
    ctx = extract_headers(headers)
    assert dict(baggage.get_all(ctx)) == EXPECTED
    assert _trace_id(ctx) == in_session


def test_payload_round_trip_is_json_safe(in_session):
    import json

    job = {"room_url": "https://example.test/r", "n": 1}
    sent = inject_payload(job)
    assert "otel" not in job and sent["room_url"] == job["room_url"]
    ctx = extract_payload(json.loads(json.dumps(sent)))
    assert dict(baggage.get_all(ctx)) == EXPECTED and _trace_id(ctx) == in_session


def test_env_round_trip_and_no_stale_or_empty_values(in_session):
    env = {"PATH": "/bin", "BAGGAGE": "session.id=stale", "TRACESTATE": "old=1"}
    inject_env(env)
    assert set(env) == {"PATH", "TRACEPARENT", "BAGGAGE"}  # no tracestate in this context: removed
    assert all(env.values())
    ctx = extract_env(env)
    assert dict(baggage.get_all(ctx)) == EXPECTED and _trace_id(ctx) == in_session


def test_inject_outside_any_context_writes_nothing():
    env = inject_env({"TRACEPARENT": "stale", "HOME": "/root"})
    assert env == {"HOME": "/root"}
    assert inject_payload({"a": 1}) == {"a": 1, "otel": {}}


def test_extract_env_reads_the_process_environment_by_default(monkeypatch):
    monkeypatch.setenv("TRACEPARENT", TRACEPARENT)
    monkeypatch.setenv("BAGGAGE", "session.id=from-env")
    ctx = extract_env()
    assert _trace_id(ctx) == TRACE_ID and baggage.get_baggage("session.id", ctx) == "from-env"


def test_extraction_starts_from_an_empty_context(in_session):
    ctx = extract_headers({})
    assert dict(baggage.get_all(ctx)) == {} and not trace.get_current_span(ctx).get_span_context().is_valid


def test_untrusted_extraction_keeps_the_trace_and_drops_all_baggage():
    ctx = extract_headers({"traceparent": TRACEPARENT, "baggage": "user.id=admin"}, trusted=False)
    assert _trace_id(ctx) == TRACE_ID and dict(baggage.get_all(ctx)) == {}
    ctx = extract_payload({"otel": {"traceparent": TRACEPARENT, "baggage": "user.id=admin"}}, trusted=False)
    assert _trace_id(ctx) == TRACE_ID and dict(baggage.get_all(ctx)) == {}


def test_headers_match_case_insensitively_and_repeated_headers_combine():
    class MultiHeaders(dict):
        def getlist(self, name):
            return {"baggage": ["session.id=s", "user.id=u"]}.get(name, [])

    ctx = extract_headers({"TraceParent": TRACEPARENT, "BAGGAGE": ["session.id=s", "user.id=u"]})
    assert _trace_id(ctx) == TRACE_ID and dict(baggage.get_all(ctx)) == {"session.id": "s", "user.id": "u"}
    ctx = extract_headers(MultiHeaders())
    assert dict(baggage.get_all(ctx)) == {"session.id": "s", "user.id": "u"}
    ctx = extract_headers({b"baggage": b"session.id=bytes"})
    assert baggage.get_baggage("session.id", ctx) == "bytes"


def test_properties_and_whitespace_are_stripped_from_values():
    ctx = extract_headers({"baggage": " session.id = abc ;ttl=5 , user.name=Ann%20Lee"})
    assert dict(baggage.get_all(ctx)) == {"session.id": "abc", "user.name": "Ann Lee"}


def test_invalid_ids_are_dropped_with_one_warning_naming_them(caplog):
    header = "session.id=bad%20id,user.id=" + "x" * 200 + ",otel_session.log_level=LOUD,user.name=ok,junk"
    ctx = extract_headers({"traceparent": "00-zzz-bad", "baggage": header})
    assert dict(baggage.get_all(ctx)) == {"user.name": "ok"}
    (warning,) = _warnings(caplog)
    for named in ("session.id", "user.id", "otel_session.log_level", "'junk'", "malformed traceparent"):
        assert named in warning


def test_w3c_limits_are_enforced(caplog):
    many = ",".join(f"k{i}=v" for i in range(200))
    assert len(baggage.get_all(extract_headers({"baggage": many}))) == 180
    big_entry = "big=" + "v" * 4100
    assert dict(baggage.get_all(extract_headers({"baggage": f"{big_entry},session.id=s"}))) == {"session.id": "s"}
    total = ",".join(f"k{i}={'v' * 1000}" for i in range(12))  # ~12 kB: only what fits in 8192 bytes
    kept = baggage.get_all(extract_headers({"baggage": total}))
    assert len(kept) == 8 and sum(len(k) + len(v) + 1 for k, v in kept.items()) + 7 <= 8192
    huge = "a=" + "b" * 1_000_000
    assert dict(baggage.get_all(extract_headers({"baggage": huge}))) == {}
    warnings = _warnings(caplog)
    assert len(warnings) == 4
    assert "20 entries over the 180-entry limit" in warnings[0]
    assert "an entry of 4104 bytes" in warnings[1]
    assert "4 entries over the 8192-byte limit" in warnings[2]
    assert "ignored" in warnings[3]


@pytest.mark.parametrize(
    "payload",
    [None, 42, "not a dict", [1, 2], {}, {"otel": "nope"}, {"otel": {"traceparent": 7, "baggage": ["x"]}},
     {"otel": {"traceparent": "00-" + "f" * 10_000, "baggage": "session.id=ok"}}],
)
def test_garbage_payloads_give_an_empty_or_partial_context_and_a_warning(payload, caplog):
    ctx = extract_payload(payload)
    assert _trace_id(ctx) == 0
    assert len(_warnings(caplog)) == 1
    assert set(baggage.get_all(ctx)) <= {"session.id"}


def test_non_mapping_headers_do_not_raise(caplog):
    assert dict(extract_headers("traceparent: x")) == {}  # type: ignore[arg-type]
    assert len(_warnings(caplog)) == 1


def test_inject_payload_refuses_a_non_mapping():
    with pytest.raises(TypeError, match="mapping"):
        inject_payload(["not", "a", "dict"])  # type: ignore[arg-type]


def test_attach_continues_the_trace_and_session():
    ctx = extract_headers({"traceparent": TRACEPARENT, "baggage": "session.id=remote,user.id=u9"})
    with attach(ctx):
        assert current().session_id == "remote"
        assert trace.get_current_span().get_span_context().trace_id == TRACE_ID
    assert current() is None


header_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=300) | st.text(
    alphabet="abc.=,;%+ _-:@0123456789", max_size=300
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(
    headers=st.dictionaries(
        st.sampled_from(["traceparent", "tracestate", "baggage", "Baggage", "other"]),
        header_text | st.lists(header_text, max_size=3),
    )
)
def test_any_header_input_never_raises_and_keeps_only_valid_entries(headers):
    ctx = extract_headers(headers)
    entries = baggage.get_all(ctx)
    assert len(entries) <= 180
    for key, value in entries.items():
        assert entry_error(key, value) is None


@settings(max_examples=200, deadline=None)
@given(
    session_id=st.from_regex(r"[A-Za-z0-9._:@-]{1,128}", fullmatch=True),
    user_name=st.text(
        alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), min_size=1, max_size=256
    ),
)
def test_any_valid_session_round_trips_through_every_carrier(session_id, user_name):
    try:
        scope = session(session_id=session_id, user_name=user_name)
    except ValueError:
        return  # control characters outside Cc (e.g. C1 controls) are refused by design
    with scope:
        carriers = [
            extract_headers(inject_headers({})),
            extract_env(inject_env({})),
            extract_payload(inject_payload({})),
        ]
    for ctx in carriers:
        assert dict(baggage.get_all(ctx)) == {"session.id": session_id, "user.name": user_name}
