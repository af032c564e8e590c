"""`otel_session.live.urls`: every URL form the bot services and the live wing accept, and the bad ones."""

from __future__ import annotations

import pytest

from otel_session.live import urls
from otel_session.live.urls import RedisURLError, parse

SECRET = "s3cr3t-pa55"


@pytest.mark.parametrize("url, kind, db, user, password", [
    ("redis://127.0.0.1:6379/0", "single", 0, None, None),
    (f"redis://:{SECRET}@h:1/2", "single", 2, None, SECRET),
    (f"rediss://alice:{SECRET}@h", "single", 0, "alice", SECRET),
    ("unix:///tmp/redis.sock?db=3", "single", 3, None, None),
    (f"redis+cluster://bob:{SECRET}@a:7000,b:7001/", "cluster", 0, "bob", SECRET),
    ("redis+cluster://a:7000", "cluster", 0, None, None),
    ("redis+cluster://a:7000/0", "cluster", 0, None, None),
    (f"redis+sentinel://:{SECRET}@a:26379,b:26380/mymaster", "sentinel", 0, None, SECRET),
    ("redis+sentinel://a/mymaster/4/", "sentinel", 4, None, None),
])
def test_every_form_parses(url, kind, db, user, password):
    target = parse(url)
    assert (target.kind, target.db, target.username, target.password) == (kind, db, user, password)
    assert SECRET not in repr(target) and SECRET not in target.safe


def test_node_lists_keep_order_and_fill_default_ports():
    assert parse("redis+sentinel://a:1,b,[::1]:5/m").nodes == (("a", 1), ("b", 26379), ("::1", 5))
    assert parse("redis+cluster://x,y:7001/").nodes == (("x", 6379), ("y", 7001))
    assert parse("redis+sentinel://a/m").master == "m"


def test_percent_encoded_credentials_are_decoded():
    target = parse("redis+cluster://us%40er:p%2Fw%40rd@a:7000/")
    assert (target.username, target.password) == ("us@er", "p/w@rd")


@pytest.mark.parametrize("url, why", [
    ("", "empty Redis URL"),
    (f"http://:{SECRET}@h:6379", "unknown scheme http://"),
    ("h:6379", "unknown scheme (none)"),
    (f"redis+cluster://:{SECRET}@a:7000/1", "db 0 only"),
    (f"redis+cluster://:{SECRET}@a:7000/?ssl=true", "no ?options"),
    (f"redis+sentinel://:{SECRET}@a:26379/", "name the master"),
    (f"redis+sentinel://:{SECRET}@a:26379/m/x", "must be a number"),
    (f"redis+sentinel://:{SECRET}@a:26379/m/1/2", "name the master"),
    (f"redis+sentinel://:{SECRET}@a:99999/m", "bad port"),
    (f"redis+sentinel://:{SECRET}@a:p/m", "bad port"),
    (f"redis+cluster://:{SECRET}@a:1,,b:2/", "bad host"),
    (f"redis+cluster://:{SECRET}@[::1/", "Invalid IPv6 URL"),
    (f"redis+cluster://:{SECRET}@a b:1/", "bad host"),
    (f"redis://:{SECRET}@h:port/0", "Port could not be cast"),
    (f"redis://:{SECRET}@h:6379/zero", "must be a db number"),
    (f"redis://h:6379/0?password={SECRET}&db=x", "Invalid value for 'db'"),
])
def test_a_bad_url_is_one_line_without_the_password(url, why):
    with pytest.raises(RedisURLError) as caught:
        parse(url)
    message = str(caught.value)
    assert why in message
    assert "\n" not in message
    assert SECRET not in message
    assert isinstance(caught.value, ValueError)


def test_safe_url_hides_passwords_everywhere():
    assert urls.safe_url(f"redis+sentinel://bob:{SECRET}@a:1,b:2/m") == "redis+sentinel://bob@a:1,b:2/m"
    assert urls.safe_url(f"redis://:{SECRET}@h/0") == "redis://h/0"
    assert urls.safe_url(f"redis://h/0?password={SECRET}") == "redis://h/0?password=***"
