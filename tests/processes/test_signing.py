"""Levels that travel in baggage cannot be forged when a signing key is set (`otel_session._signing`).

Real SDK pipeline (the `otel_logs` fixture), our real propagators and OTel's own W3C propagator.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from opentelemetry import baggage, context, propagate
from opentelemetry.context import Context

from otel_session import _signing, attach, current, extract_env, extract_headers, inject_env, inject_headers, session
from otel_session._keys import LOG_LEVEL, LOG_LEVEL_SIG, SESSION_ID
from otel_session._signing import canonical, sign, verify
from otel_session._state import STATE

KEY = "k3y-for-tests-0123456789abcdef0123456789"
OTHER_KEY = "another-key-0123456789abcdef0123456789ab"
log = logging.getLogger("tests.signing")


class Warnings(logging.Handler):
    """What the signing logger let through its rate limit."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def warnings() -> Iterator[Warnings]:
    handler = Warnings()
    _signing._log.addHandler(handler)
    yield handler
    _signing._log.removeHandler(handler)


@pytest.fixture
def signed(otel_logs):
    otel_logs.configure(signing_key=KEY)
    return otel_logs


@pytest.fixture
def fresh() -> Iterator[None]:
    """Run in an empty current context, as a process receiving a hop does."""
    token = context.attach(Context())
    yield
    context.detach(token)


def _headers(**kwargs) -> dict[str, str]:
    with session(**kwargs):
        return inject_headers({})


def _members(header: str) -> dict[str, str]:
    return dict(m.split("=", 1) for m in header.split(","))


def _header(members: dict[str, str]) -> dict[str, str]:
    return {"baggage": ",".join(f"{k}={v}" for k, v in members.items())}


def _debug_burst(headers: dict[str, str], tag: str, contexts: int = 20, records: int = 20) -> None:
    """Many hops carrying the same baggage, many DEBUG records in each."""
    for _ in range(contexts):
        with attach(extract_headers(headers)):
            for _ in range(records):
                log.debug("%s debug", tag)
            log.info("%s info", tag)


# -- sign / verify --------------------------------------------------------------------------


def test_the_signed_bytes_and_the_member_value():
    assert canonical("s-1", "debug", 1_800_000_000.9) == b"otel_session.log_level.v1\ns-1\nDEBUG\n1800000000"
    assert canonical(None, 10, 5) == b"otel_session.log_level.v1\n\nDEBUG\n5"
    value = sign("s-1", "DEBUG", 1_800_000_000.9, KEY)
    expiry, _, mac = value.partition(".")
    assert expiry == "1800000000" and len(mac) == 64 and int(mac, 16) >= 0


def test_verify_accepts_only_this_session_this_level_this_key_before_expiry():
    later = time.time() + 60
    sig = sign("s-1", "DEBUG", later, KEY)
    assert verify("s-1", "DEBUG", sig, KEY)
    assert verify("s-1", 10, sig, KEY.encode())  # the level's meaning is signed, not its spelling
    assert not verify("s-2", "DEBUG", sig, KEY)
    assert not verify("s-1", "INFO", sig, KEY)
    assert not verify("s-1", "DEBUG", sig, OTHER_KEY)
    assert not verify(None, "DEBUG", sig, KEY)
    assert not verify("s-1", "DEBUG", sig, KEY, now=later + 1)
    expiry, _, mac = sig.partition(".")
    assert not verify("s-1", "DEBUG", f"{int(expiry) + 3600}.{mac}", KEY)  # a longer life is a forgery
    assert not verify("s-1", "DEBUG", f"{expiry}.{'0' * 64}", KEY)
    assert not verify("s-1", "DEBUG", None, KEY)
    assert not verify("s-1", "DEBUG", "garbage", KEY)
    assert not verify("bad id\n", "DEBUG", sign("bad id\n", "DEBUG", later, KEY), KEY)


# -- a signed level travels and counts ------------------------------------------------------


def test_a_signed_level_counts_after_our_propagators(signed, fresh, warnings):
    headers = _headers(session_id="s-ok", log_level="DEBUG")
    members = _members(headers["baggage"])
    assert members[LOG_LEVEL] == "DEBUG" and LOG_LEVEL_SIG in members
    with attach(extract_headers(headers)) as info:
        assert info is not None and info.log_level == logging.DEBUG
        log.debug("signed debug")
    env = inject_env({}, extract_headers(headers))
    with attach(extract_env(env)):
        log.debug("signed debug via env")
    assert signed.messages() == ["signed debug", "signed debug via env"]
    assert warnings.messages == []


def test_a_signed_level_counts_after_otel_propagate_and_context_attach(signed, fresh, warnings):
    with session(session_id="s-otel", log_level="DEBUG"):
        carrier: dict[str, str] = {}
        propagate.inject(carrier)  # OTel's own W3C baggage propagator
        assert baggage.get_baggage(LOG_LEVEL_SIG) is not None
    extracted = propagate.extract(carrier)
    assert baggage.get_baggage(LOG_LEVEL_SIG, extracted) is not None
    token = context.attach(extracted)  # what an instrumentation such as the ASGI middleware does
    try:
        log.debug("debug after an instrumentation's attach")
    finally:
        context.detach(token)
    assert signed.messages() == ["debug after an instrumentation's attach"]
    assert warnings.messages == []


def test_the_signature_survives_both_propagators_unchanged(signed, fresh):
    with session(session_id="s-wire", log_level="WARNING"):
        sig = baggage.get_baggage(LOG_LEVEL_SIG)
        ours = inject_headers({})
        theirs: dict[str, str] = {}
        propagate.inject(theirs)
    assert isinstance(sig, str)
    assert baggage.get_baggage(LOG_LEVEL_SIG, extract_headers(ours)) == sig
    assert baggage.get_baggage(LOG_LEVEL_SIG, propagate.extract(theirs)) == sig
    assert baggage.get_baggage(LOG_LEVEL_SIG, extract_headers(theirs)) == sig


# -- what is ignored ------------------------------------------------------------------------


def _assert_ignored(otel_logs, warnings, headers: dict[str, str], tag: str, why: str) -> None:
    _debug_burst(headers, tag)
    assert otel_logs.messages() == [f"{tag} info"] * 20  # no export level of its own: the app's INFO stands
    assert len(warnings.messages) == 1, warnings.messages  # one for the whole burst
    assert why in warnings.messages[0]
    with attach(extract_headers(headers)) as info:
        assert info is not None and info.log_level is None


def test_a_forged_signature_is_ignored_with_one_warning(signed, fresh, warnings):
    members = _members(_headers(session_id="s-f", log_level="DEBUG")["baggage"])
    expiry = members[LOG_LEVEL_SIG].partition(".")[0]
    members[LOG_LEVEL_SIG] = f"{expiry}.{'ab' * 32}"
    _assert_ignored(signed, warnings, _header(members), "forged", "bad signature")


def test_a_level_changed_after_signing_is_ignored(signed, fresh, warnings):
    members = _members(_headers(session_id="s-c", log_level="WARNING")["baggage"])
    members[LOG_LEVEL] = "DEBUG"
    _assert_ignored(signed, warnings, _header(members), "changed", "bad signature")


def test_a_signature_for_another_session_is_ignored(signed, fresh, warnings):
    members = _members(_headers(session_id="s-mine", log_level="DEBUG")["baggage"])
    members[SESSION_ID] = "s-theirs"
    _assert_ignored(signed, warnings, _header(members), "other", "bad signature")


def test_an_expired_signature_is_ignored(signed, fresh, warnings):
    sig = sign("s-old", "DEBUG", time.time() - 1, KEY)
    headers = _header({SESSION_ID: "s-old", LOG_LEVEL: "DEBUG", LOG_LEVEL_SIG: sig})
    _assert_ignored(signed, warnings, headers, "expired", "expired")


def test_a_level_signed_for_a_short_life_expires(signed, fresh, warnings):
    headers = _headers(session_id="s-short", log_level="DEBUG", log_level_ttl_s=1)
    with attach(extract_headers(headers)):
        log.debug("still valid")
    assert signed.messages() == ["still valid"]
    signed.clear()
    time.sleep(1.05)
    _assert_ignored(signed, warnings, headers, "short", "expired")


def test_an_unsigned_level_is_ignored(signed, fresh, warnings):
    headers = _header({SESSION_ID: "s-u", LOG_LEVEL: "DEBUG"})
    _assert_ignored(signed, warnings, headers, "unsigned", "unsigned")


def test_an_unsigned_level_through_otel_attach_is_ignored(signed, fresh, warnings):
    token = context.attach(propagate.extract({"baggage": "session.id=asgi,otel_session.log_level=DEBUG"}))
    try:
        for _ in range(50):
            log.debug("forced")
        log.info("kept")
    finally:
        context.detach(token)
    assert signed.messages() == ["kept"]
    assert len(warnings.messages) == 1 and "unsigned" in warnings.messages[0]


def test_a_malformed_signature_member_is_dropped_at_extraction(signed, fresh):
    headers = _header({SESSION_ID: "s-m", LOG_LEVEL: "DEBUG", LOG_LEVEL_SIG: "not-a-signature"})
    dropped = Warnings()
    logging.getLogger("otel_session._propagation").addHandler(dropped)
    try:
        ctx = extract_headers(headers)
    finally:
        logging.getLogger("otel_session._propagation").removeHandler(dropped)
    assert baggage.get_baggage(LOG_LEVEL_SIG, ctx) is None
    assert baggage.get_baggage(SESSION_ID, ctx) == "s-m"
    assert len(dropped.messages) == 1 and LOG_LEVEL_SIG in dropped.messages[0]


def test_a_process_with_another_key_rejects_by_env(signed, fresh):
    """Another process, its key from `OTEL_SESSION_SIGNING_KEY` (read by `configure()`)."""
    with session(session_id="s-proc", log_level="DEBUG"):
        env = inject_env(dict(os.environ))
    child = (
        "import json, logging, otel_session\n"
        "t = otel_session.configure(service_name='child', exporter='memory', level='INFO')\n"
        "with otel_session.attach(otel_session.extract_env()):\n"
        "    logging.getLogger('child').debug('child debug')\n"
        "    logging.getLogger('child').info('child info')\n"
        "print(json.dumps([r.log_record.body for r in t.memory_exporter.get_finished_logs()]))\n"
    )

    def run(key: str) -> tuple[list[str], str]:
        done = subprocess.run([sys.executable, "-c", child], env={**env, "OTEL_SESSION_SIGNING_KEY": key},
                              capture_output=True, text=True, timeout=60, check=True)
        return json.loads(done.stdout.splitlines()[-1]), done.stderr

    accepted, err = run(KEY)
    assert accepted == ["child debug", "child info"] and "ignored the log level" not in err
    rejected, err = run(OTHER_KEY)
    assert rejected == ["child info"]
    assert err.count("ignored the log level DEBUG") == 1 and "bad signature" in err


def test_a_new_key_judges_contexts_already_interpreted(signed, fresh):
    ctx = extract_headers(_headers(session_id="s-k", log_level="DEBUG"))
    with attach(ctx):
        log.debug("first key")
    signed.configure(signing_key=OTHER_KEY)
    with attach(ctx):
        log.debug("after the key changed")
    assert signed.messages() == ["first key"]


# -- in the signing process -----------------------------------------------------------------


def test_a_session_in_the_signing_process_keeps_its_level(signed, warnings):
    with session(session_id="s-local", log_level="DEBUG") as info:
        assert info is not None and info.log_level == logging.DEBUG
        log.debug("local debug")
        with session(session_id="s-child"):  # a new id: the level is signed again for it
            log.debug("child debug")
            moved = inject_headers({})
        with session(user_id="u-1"):  # no new id: the signature stands
            log.debug("user debug")
    assert signed.messages() == ["local debug", "child debug", "user debug"]
    assert warnings.messages == []
    sig = _members(moved["baggage"])[LOG_LEVEL_SIG]
    assert verify("s-child", "DEBUG", sig, KEY)


def test_a_level_set_without_a_session_id_is_signed_for_none(signed):
    with session(log_level="DEBUG"):
        log.debug("no id")
        sig = baggage.get_baggage(LOG_LEVEL_SIG)
    assert verify(None, "DEBUG", sig, KEY)  # type: ignore[arg-type]
    assert signed.messages() == ["no id"]


def test_an_inherited_unsigned_level_is_not_laundered_by_a_new_session_id(signed, fresh, warnings):
    with attach(extract_headers(_header({SESSION_ID: "s-x", LOG_LEVEL: "DEBUG"}))), session(session_id="s-y"):
        log.debug("laundered")
        log.info("plain")
        assert baggage.get_baggage(LOG_LEVEL_SIG) is None
    assert signed.messages() == ["plain"]
    assert len(warnings.messages) == 1


def test_verification_costs_no_hmac_per_record(signed, fresh, monkeypatch):
    """A context is verified when its meaning is computed (once per Context object); contexts derived
    from it (spans, the SDK's export context of a synchronous processor) reuse the verdict."""
    macs = []
    real = _signing.sign
    monkeypatch.setattr(_signing, "sign", lambda *a, **k: macs.append(1) or real(*a, **k))
    ctx = extract_headers(_headers(session_id="s-once", log_level="DEBUG"))
    with attach(ctx):
        before = len(macs)
        for _ in range(200):
            log.debug("many")
    assert len(macs) == before == 2  # one to sign in session(), one to verify on attach; none per record
    assert len(signed.messages()) == 200


# -- what does not change -------------------------------------------------------------------


def test_the_signature_is_never_a_record_attribute(signed, fresh):
    signed.configure(signing_key=KEY, baggage_keys=("session.*", "otel_session.*", LOG_LEVEL_SIG))
    headers = _headers(session_id="s-attr", log_level="DEBUG")
    with attach(extract_headers(headers)):
        log.debug("remote")
    with session(session_id="s-attr2", log_level="DEBUG"):
        log.debug("local")
    records = signed.records
    assert [r.message for r in records] == ["remote", "local"]
    for record in records:
        assert LOG_LEVEL_SIG not in record.attributes
        assert record.attributes[LOG_LEVEL] == "DEBUG"


def test_without_a_key_unsigned_levels_work_as_before(otel_logs, fresh, warnings):
    assert STATE.signing.key is None
    with attach(extract_headers(_header({SESSION_ID: "s-plain", LOG_LEVEL: "DEBUG"}))) as info:
        assert info is not None and info.log_level == logging.DEBUG
        log.debug("unsigned debug")
    with session(session_id="s-plain2", log_level="DEBUG"):
        assert baggage.get_baggage(LOG_LEVEL_SIG) is None  # nothing is signed without a key
        assert current().log_level == logging.DEBUG  # type: ignore[union-attr]
        log.debug("local debug")
    assert otel_logs.messages() == ["unsigned debug", "local debug"]
    assert warnings.messages == []


def test_without_a_key_a_new_level_drops_a_stale_signature(otel_logs, fresh):
    headers = _header({SESSION_ID: "s-st", LOG_LEVEL: "WARNING",
                       LOG_LEVEL_SIG: sign("s-st", "WARNING", time.time() + 60, KEY)})
    with attach(extract_headers(headers)), session(log_level="DEBUG"):
        assert baggage.get_baggage(LOG_LEVEL_SIG) is None


def test_the_key_from_the_environment_and_bad_settings(otel_logs, monkeypatch):
    monkeypatch.setenv("OTEL_SESSION_SIGNING_KEY", KEY)
    otel_logs.configure()
    assert STATE.signing.key == KEY.encode()
    monkeypatch.delenv("OTEL_SESSION_SIGNING_KEY")
    otel_logs.configure()  # no key given: the one set stays
    assert STATE.signing.key == KEY.encode()
    with pytest.raises(ValueError, match="signing key"):
        otel_logs.configure(signing_key="")
    assert STATE.signing.key == KEY.encode()
    STATE.reset()
    assert STATE.signing.key is None


@pytest.mark.parametrize("ttl", [0, -1, float("inf"), float("nan"), 8 * 24 * 3600, "60", True])
def test_a_bad_level_lifetime_is_refused(ttl):
    with pytest.raises(ValueError, match="log_level_ttl_s"):
        session(session_id="s", log_level="DEBUG", log_level_ttl_s=ttl)


def test_a_lifetime_without_a_level_is_refused():
    with pytest.raises(ValueError, match="log_level_ttl_s"):
        session(session_id="s", log_level_ttl_s=60)


def test_extra_cannot_set_the_signature():
    with pytest.raises(ValueError, match="extra"):
        session(extra={LOG_LEVEL_SIG: sign("s", "DEBUG", time.time() + 60, KEY)})
