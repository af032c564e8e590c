"""Long polls on launch records: one Redis subscription per gateway process wakes every waiter on a launch.

Each script that changes a record's status publishes on the record's own key (`save_record` in
`bot.launch_scripts`); `StatusWatch.run` pattern-subscribes to those channels on a connection of its own
(`bot.signals`), so a thousand waiting clients cost one connection and no polling. A waiter still re-reads its
record every
`recheck_s` (a message lost in a Redis blip, a bot whose lock lapsed: that `failed` is read, not published),
and more often while the subscription is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

from bot.keys import Keys
from bot.signals import follow, glob_escape

T = TypeVar("T")

RECHECK_S = 5.0  # a waiter re-reads its record this often while the subscription is up (a lapsed lock's TTL is 30 s)
QUEUED_RECHECK_S = 15.0  # ... a queued one less often: it cannot lapse, and a backlog is thousands of waiters
FALLBACK_S = 0.25  # ... and this often while it is down
TERMINAL = ("ended", "failed")


class StatusWatch:
    """Waiters by launch id, woken by the subscription. `waiting` is what a test counts: nothing stays behind."""

    def __init__(self, redis: Any, keys: Keys) -> None:
        self.redis, self.keys = redis, keys
        self.channels = keys.launch("")  # every record key starts with this; the launch id follows
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self.subscribed = False

    @property
    def waiting(self) -> int:
        return sum(len(events) for events in self._waiters.values())

    @property
    def recheck_s(self) -> float:
        return RECHECK_S if self.subscribed else FALLBACK_S

    @contextlib.contextmanager
    def watching(self, launch_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever `launch_id`'s record may have changed; unregistered on exit, whatever happens."""
        event = asyncio.Event()
        self._waiters.setdefault(launch_id, set()).add(event)
        try:
            yield event
        finally:
            events = self._waiters.get(launch_id)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._waiters[launch_id]

    def _wake(self, launch_id: str) -> None:
        for event in self._waiters.get(launch_id, ()):
            event.set()

    def _wake_all(self) -> None:
        for events in self._waiters.values():
            for event in events:
                event.set()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Follow every record's channel until `stop` or cancelled; never raises."""
        await follow(self.redis, glob_escape(self.channels) + "*", self._message, self._state, pattern=True,
                     stop=stop)

    def _message(self, channel: str) -> None:
        self._wake(channel[len(self.channels):])

    def _state(self, up: bool) -> None:
        self.subscribed = up
        self._wake_all()  # up: messages may have been missed while it was down; down: poll on the timer

    async def wait_change(self, launch_id: str, read: Callable[[], Awaitable[dict[str, Any] | None]],
                          seen: str | None, wait_s: float) -> dict[str, Any] | None:
        """The record as soon as its status is not `seen` (None: the status when called), or at `wait_s`.

        A terminal `seen` answers at once: it will not change again.
        """
        deadline = time.monotonic() + wait_s
        with self.watching(launch_id) as woken:
            while True:
                woken.clear()  # before the read: a change published during it still wakes the wait below
                record = await read()
                if record is None:
                    return None
                status = record.get("status")
                if seen is None:
                    seen = status
                left = deadline - time.monotonic()
                if status != seen or status in TERMINAL or left <= 0:
                    return record
                recheck = QUEUED_RECHECK_S if status == "queued" and self.subscribed else self.recheck_s
                with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                    await asyncio.wait_for(woken.wait(), min(left, recheck))


class WaitQueryError(ValueError):
    """A bad `wait_s` or `seen`: the 422's detail, in the shape of every other 422 (`bot.http`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.detail = [{"loc": ["query", field], "msg": message, "type": "value_error"}]


def wait_query(params: Any, max_wait_s: float, statuses: tuple[str, ...]) -> tuple[float, str | None] | None:
    """`(seconds, seen)` of a long poll (seconds capped at `max_wait_s`), None for a plain read."""
    raw, seen = params.get("wait_s"), params.get("seen")
    if seen is not None and seen not in statuses:
        raise WaitQueryError("seen", f"seen must be one of {', '.join(statuses)}")
    if raw is None:
        if seen is not None:
            raise WaitQueryError("seen", "seen goes with wait_s")
        return None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = float("nan")
    if not 0 <= seconds < float("inf"):  # NaN too
        raise WaitQueryError("wait_s", f"wait_s must be a number of seconds, 0 or more (at most {max_wait_s:g} "
                                       "are waited)")
    return min(seconds, max_wait_s), seen


async def unless_disconnected(receive: Callable[[], Awaitable[Any]], work: Awaitable[T]) -> tuple[bool, T | None]:
    """`(True, result)` of `work`, or `(False, None)` as soon as the client went away (`work` is cancelled,
    so its waiter is gone with it)."""
    async def gone() -> None:
        while (await receive()).get("type") != "http.disconnect":
            pass

    worker, watcher = asyncio.ensure_future(work), asyncio.ensure_future(gone())
    try:
        await asyncio.wait({worker, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (worker, watcher):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(worker, watcher, return_exceptions=True)
    if worker.done() and not worker.cancelled():
        return True, worker.result()
    return False, None
