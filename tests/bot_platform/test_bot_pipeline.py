import asyncio
import time
import warnings

import pytest

with warnings.catch_warnings():  # Pipecat imports the deprecated `audioop`
    warnings.simplefilter("ignore", DeprecationWarning)
    pytest.importorskip("pipecat")
    from bot.pipeline import run_pipeline

import otel_session
from otel_session import capture, session

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def logs(otel_logs):
    otel_session.install_loguru_bridge()
    otel_logs.configure(baggage_keys=("session.*", "user.*", "bot.*"))
    return otel_logs


def _inbox(*messages):
    inbox: asyncio.Queue[str | None] = asyncio.Queue()
    for message in messages:
        inbox.put_nowait(message)
    return inbox


def _pipecat(records):
    return [r for r in records if r.logger.startswith("pipecat.")]


def test_pipecat_records_carry_the_session_and_its_debug_level(logs):
    async def main():
        async with session(session_id="s-pipe", log_level="DEBUG", extra={"bot.launch_id": "L1"}):
            with capture() as run:
                replies = await run_pipeline(_inbox("hello", "how are you", None))
        return replies, run

    replies, run = asyncio.run(main())
    assert replies == ["HELLO", "HOW ARE YOU"]
    records = logs.records
    pipecat = _pipecat(records)
    assert any(r.level == "DEBUG" and r.message.startswith("Linking ") for r in pipecat)
    assert all(r.session_id == "s-pipe" and r.attributes.get("bot.launch_id") == "L1" for r in records)
    ours = [(r.level, r.message) for r in records if r.logger == "bot.pipeline"]
    assert [m for m in ours if m[0] == "INFO"] == [("INFO", "bot heard: hello"), ("INFO", "bot heard: how are you")]
    assert [m for m in ours if m[0] == "DEBUG"] == [  # through loguru; each processor runs in its own task
        ("DEBUG", "replying 'HELLO' to 'hello'"),
        ("DEBUG", "replying 'HOW ARE YOU' to 'how are you'"),
    ]
    assert _pipecat(run.records) and len(run.records) == len(records)  # a run's capture sees Pipecat's lines


def test_a_session_at_info_exports_no_pipecat_debug(logs):
    async def main():
        async with session(session_id="s-info", log_level="INFO", extra={"bot.launch_id": "L2"}):
            return await run_pipeline(_inbox("hi", None))

    assert asyncio.run(main()) == ["HI"]
    records = logs.records
    assert not [r for r in _pipecat(records) if r.severity_number < 9]
    assert [r.message for r in records if r.logger == "bot.pipeline"] == ["bot heard: hi"]


def test_concurrent_pipelines_keep_their_own_sessions(logs):
    async def one(session_id, level, *messages):
        async with session(session_id=session_id, log_level=level):
            return await run_pipeline(_inbox(*messages, None), name=f"bot-{session_id}")

    async def main():
        return await asyncio.gather(one("s-a", "DEBUG", "a1", "a2"), one("s-b", "INFO", "b1"))

    assert asyncio.run(main()) == [["A1", "A2"], ["B1"]]
    records = logs.records
    assert _pipecat(records) and all(r.session_id == "s-a" for r in _pipecat(records))
    heard = {(r.session_id, r.message) for r in records if r.logger == "bot.pipeline" and r.level == "INFO"}
    assert heard == {("s-a", "bot heard: a1"), ("s-a", "bot heard: a2"), ("s-b", "bot heard: b1")}


def test_cancelling_stops_the_pipeline_promptly_and_leaves_no_tasks(logs):
    async def main():
        async with session(session_id="s-cancel", log_level="DEBUG"):
            inbox = _inbox("still talking")
            task = asyncio.create_task(run_pipeline(inbox))
            deadline = time.monotonic() + 5
            while "bot heard: still talking" not in logs.messages() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert not task.done()
            started = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            elapsed = time.monotonic() - started
            await asyncio.sleep(0)
            return elapsed, {t.get_name() for t in asyncio.all_tasks()} - {asyncio.current_task().get_name()}

    elapsed, left = asyncio.run(main())
    assert elapsed < 5
    assert left == set()
    records = logs.records
    assert any("cancel" in r.message.lower() for r in _pipecat(records))
    assert all(r.session_id == "s-cancel" for r in records)
    assert not [r for r in records if r.severity_number >= 13]  # no warnings, such as dangling tasks
