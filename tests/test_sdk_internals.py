"""Fails loudly when the SDK changes the internals `otel_session._sdk` leans on."""

import logging

from opentelemetry._logs import LogRecord
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk._logs import LogRecordLimits, ReadWriteLogRecord

from otel_session import _sdk, session

ITEMS = (("session.id", "s"), ("user.id", "u"))


def _record(attributes=None, limits=None):
    kwargs = {"limits": limits} if limits else {}
    return ReadWriteLogRecord(LogRecord(body="x", attributes=attributes), **kwargs)


def test_the_fast_path_is_taken_on_this_sdk():
    record = _record({"a": 1})
    attributes = record.log_record.attributes
    assert type(attributes) is BoundedAttributes
    assert type(attributes._dict) is dict and attributes._immutable is False
    assert _sdk.raw_dict(attributes, adding=2, longest=1) is attributes._dict
    _sdk.add_attributes(record.log_record, ITEMS, 1)
    assert dict(record.log_record.attributes) == {"a": 1, "session.id": "s", "user.id": "u"}


def test_existing_attributes_win_and_limits_fall_back_to_the_public_path():
    record = _record({"session.id": "caller"})
    _sdk.add_attributes(record.log_record, ITEMS, 1)
    assert record.log_record.attributes["session.id"] == "caller"

    full = _record({"a": 1, "b": 2}, LogRecordLimits(max_attributes=2))
    assert _sdk.raw_dict(full.log_record.attributes, adding=1, longest=1) is None
    _sdk.add_attributes(full.log_record, ITEMS, 1)
    assert len(full.log_record.attributes) == 2 and full.log_record.attributes.dropped >= 1

    short = _record(None, LogRecordLimits(max_attribute_length=3))
    _sdk.add_attributes(short.log_record, (("user.name", "abcdef"),), 6)
    assert short.log_record.attributes["user.name"] == "abc"


def test_severity_lookup_covers_every_member():
    from opentelemetry._logs import SeverityNumber

    assert [_sdk.severity_value(s) for s in SeverityNumber] == [s.value for s in SeverityNumber]
    assert _sdk.severity_value(None) == 0


def test_exported_records_are_the_same_as_through_the_public_path(otel_logs):
    with session(session_id="s", user_id="u"):
        logging.getLogger("tests.sdk").warning("x", extra={"k": "v"})
    (record,) = otel_logs.exporter.get_finished_logs()
    assert dict(record.log_record.attributes) == {"k": "v", "session.id": "s", "user.id": "u"}
    assert record.log_record.attributes.dropped == 0
