"""The bot's Pipecat pipeline: text in from an inbox, replies out; no transport, no network.

Everything Pipecat starts is created inside `run_pipeline`, so its tasks (and Pipecat's loguru records)
carry the caller's session context.
"""

from __future__ import annotations

import asyncio
import logging

from loguru import logger as loguru_logger
from pipecat.frames.frames import EndFrame, Frame, TextFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner

logger = logging.getLogger(__name__)

STOP_TIMEOUT_S = 3.0  # a cancelled pipeline gets this long to tear down before its task is cancelled


class Listener(FrameProcessor):
    """Logs what the bot heard (stdlib logging)."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TextFrame):
            logger.info("bot heard: %s", frame.text)
        await self.push_frame(frame, direction)


class Replier(FrameProcessor):
    """Turns each text into the bot's reply (logs through loguru, as Pipecat code does)."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TextFrame):
            reply = frame.text.upper()
            loguru_logger.debug("replying {!r} to {!r}", reply, frame.text)
            frame = TextFrame(text=reply)
        await self.push_frame(frame, direction)


class ReplyCollector(FrameProcessor):
    """The end of the pipeline: keeps every reply."""

    def __init__(self, replies: list[str]) -> None:
        super().__init__()
        self.replies = replies

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TextFrame):
            self.replies.append(frame.text)
        await self.push_frame(frame, direction)


async def _feed(inbox: asyncio.Queue[str | None], worker: PipelineWorker) -> None:
    while True:
        text = await inbox.get()
        if text is None:
            await worker.queue_frame(EndFrame())
            return
        await worker.queue_frame(TextFrame(text=text))


async def run_pipeline(inbox: asyncio.Queue[str | None], *, name: str = "bot") -> list[str]:
    """Run a Pipecat pipeline until `None` arrives in the inbox (or the coroutine is cancelled)."""
    replies: list[str] = []
    worker = PipelineWorker(
        Pipeline([Listener(), Replier(), ReplyCollector(replies)]),
        name=name,
        idle_timeout_secs=None,  # a chat waits for its user as long as the session lasts
        cancel_on_idle_timeout=False,
        enable_rtvi=False,  # no client to talk RTVI to
        enable_turn_tracking=False,  # no voice turns
    )
    runner = WorkerRunner(handle_sigint=False, handle_sigterm=False)  # signals are the host's
    await runner.add_workers(worker)
    feeder = asyncio.create_task(_feed(inbox, worker), name=f"{name}-inbox")
    # `WorkerRunner.run()` swallows the cancellation of the task awaiting it and returns normally: it runs
    # in a task of its own behind a shield, and a cancelled `run_pipeline` cancels it, waits, and re-raises.
    running = asyncio.create_task(runner.run(), name=f"{name}-pipeline")
    try:
        await asyncio.shield(running)
    except asyncio.CancelledError:
        await runner.cancel(reason="session left")
        done, _ = await asyncio.wait({running}, timeout=STOP_TIMEOUT_S)
        if not done:
            logger.warning("Pipeline %s did not stop within %.0f s; cancelling its task", name, STOP_TIMEOUT_S)
            running.cancel()
        elif not running.cancelled() and running.exception() is not None:
            logger.error("Pipeline %s failed while stopping", name, exc_info=running.exception())
        raise
    finally:
        feeder.cancel()
        await asyncio.gather(feeder, return_exceptions=True)
    return replies
