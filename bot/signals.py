"""Redis pub/sub that outlives Redis: what lets a process wait for a change instead of asking every few ms.

`follow` keeps one subscription up on a client of its own, resubscribing after any failure with a backoff.
A message is only ever a hint to read again: whoever waits on one also re-reads now and then (a message is
lost while the subscription is down), so no guarantee rests on pub/sub.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

BACKOFF_S = (0.1, 5.0)  # resubscribing after a failure: first and longest pause
WARN_EVERY_S = 30.0
IDLE_READ_S = 2.0  # how long one read for a message may block


def glob_escape(text: str) -> str:
    """`text` as a literal inside a PSUBSCRIBE pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


async def follow(redis: Any, what: str, on_message: Callable[[str], None], on_state: Callable[[bool], None],
                 pattern: bool = False, stop: asyncio.Event | None = None) -> None:
    """Subscribe to channel `what` (a glob with `pattern`); `on_message(channel)` for each message and
    `on_state(up)` whenever the subscription comes up or goes down. Never raises; ends on `stop` (within one
    read) or a cancel (`stop_following`: redis-py's asyncio client now and then swallows a cancel)."""
    stop = stop or asyncio.Event()
    backoff, last_warning = BACKOFF_S[0], -WARN_EVERY_S
    while not stop.is_set():
        pubsub = redis.pubsub(ignore_subscribe_messages=True)
        try:
            await (pubsub.psubscribe(what) if pattern else pubsub.subscribe(what))
            backoff = BACKOFF_S[0]
            on_state(True)
            while not stop.is_set():
                message = await pubsub.get_message(timeout=IDLE_READ_S)
                if message and message.get("type") in ("message", "pmessage"):
                    channel = message["channel"]
                    on_message(channel.decode() if isinstance(channel, bytes) else str(channel))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            on_state(False)
            if time.monotonic() - last_warning >= WARN_EVERY_S:
                last_warning = time.monotonic()
                logger.warning("Redis subscription to %s lost (%s); reading again on a timer until it is back",
                               what, type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff)
            backoff = min(backoff * 2, BACKOFF_S[1])
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()


async def stop_following(task: asyncio.Task[None], stop: asyncio.Event) -> None:
    """Ends a `follow` task: within one read even if the cancel is swallowed."""
    stop.set()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, TimeoutError):
        await asyncio.wait_for(task, IDLE_READ_S + 1)
