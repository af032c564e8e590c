import asyncio
import logging

import pytest
from opentelemetry import baggage

from otel_session import SessionInfo, attach, current, extract_headers, inject_headers, session


def test_session_puts_ids_and_level_in_baggage_and_current_reads_them():
    assert current() is None
    with session(session_id="s-1", user_id="u-1", user_name="Ada Lovelace", log_level="warn") as info:
        assert info == SessionInfo("s-1", "u-1", "Ada Lovelace", logging.WARNING)
        assert current() == info
        assert baggage.get_all() == {
            "session.id": "s-1", "user.id": "u-1", "user.name": "Ada Lovelace", "otel_session.log_level": "WARNING",
        }
    assert current() is None


def test_none_arguments_keep_the_outer_values():
    with session(session_id="outer", user_id="u", log_level="DEBUG"), session(user_name="Bob") as inner:
        assert inner == SessionInfo("outer", "u", "Bob", logging.DEBUG)
    with session(session_id="a"):
        with session(session_id="b"):
            assert current().session_id == "b"
        assert current().session_id == "a"


def test_edge_starts_from_clean_baggage_so_client_values_do_not_survive():
    client = {"baggage": "user.id=admin,otel_session.log_level=DEBUG,tenant=evil"}
    with attach(extract_headers(client)):
        assert current().user_id == "admin"
        with session(session_id="s-edge", edge=True) as info:
            assert info == SessionInfo("s-edge", None, None, None)
            assert dict(baggage.get_all()) == {"session.id": "s-edge"}


def test_extra_entries_travel_with_the_session():
    with session(session_id="s", extra={"bot.launch_id": "L-1", "bot.room": "Room 1"}):
        assert baggage.get_baggage("bot.launch_id") == "L-1"
        headers = inject_headers({})
    assert baggage.get_all(extract_headers(headers))["bot.room"] == "Room 1"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"session_id": ""}, "session.id"),
        ({"session_id": "has space"}, "not a valid id"),
        ({"session_id": "x" * 129}, "1-128 characters"),
        ({"user_id": "ü"}, "user.id"),
        ({"user_id": 42}, "must be a string"),
        ({"user_name": "a\nb"}, "control characters"),
        ({"user_name": "n" * 257}, "at most 256"),
        ({"log_level": "LOUD"}, "invalid log level"),
        ({"extra": {"Bot.Launch": "x"}}, "lowercase dotted name"),
        ({"extra": {"session.id": "x"}}, "its own argument"),
        ({"extra": {"bot.launch_id": "not an id!"}}, "not a valid id"),
    ],
)
def test_invalid_values_raise_a_clear_value_error_and_attach_nothing(kwargs, message):
    with pytest.raises(ValueError, match=message):
        session(**kwargs)
    assert current() is None


def test_session_works_in_async_code_and_tasks_stay_apart():
    async def worker(sid: str, seen: list):
        async with session(session_id=sid):
            await asyncio.sleep(0.01)
            seen.append((sid, current().session_id))

    async def main():
        seen: list = []
        await asyncio.gather(*(worker(f"s{i}", seen) for i in range(20)))
        return seen

    seen = asyncio.run(main())
    assert len(seen) == 20 and all(a == b for a, b in seen)


def test_attach_applies_the_travelling_level_like_session(otel_logs):
    with session(session_id="s-hop", log_level="DEBUG"):
        headers = inject_headers({})
    with attach(extract_headers(headers)) as info:
        assert info.log_level == logging.DEBUG
        logging.getLogger("hop").debug("debug after the hop")
        assert logging.getLogger().level == logging.INFO  # no logger is lowered for it
    logging.getLogger("hop").debug("debug outside")
    assert otel_logs.messages() == ["debug after the hop"]


def test_a_context_manager_instance_cannot_be_entered_twice():
    scope = session(session_id="s")
    with scope, pytest.raises(RuntimeError):
        scope.__enter__()
