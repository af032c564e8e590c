"""Redis key names, in one place.

Every key shares the `{bot}` hash tag, so one Lua script can move a launch atomically on one Redis and
on a Redis Cluster alike (where the tag puts the whole platform on one shard: docs/bot-platform.md).
Rooms are named by the hash of their canonical URL (`bot.rooms`): a room URL's secrets never become
part of a key name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    """`prefix` (env `BOT_KEY_PREFIX`) lets several deployments or test runs share one Redis."""

    prefix: str = ""

    @classmethod
    def from_env(cls) -> Keys:
        return cls(os.environ.get("BOT_KEY_PREFIX", ""))

    @property
    def tag(self) -> str:
        """What every launch key starts with; the scripts build keys from it."""
        return f"{self.prefix}{{bot}}:"

    @property
    def launch_queue(self) -> str:
        return f"{self.tag}launch:queue"

    @property
    def processing(self) -> str:
        return f"{self.tag}launch:processing"

    @property
    def dead_letter(self) -> str:
        return f"{self.tag}launch:dead"

    @property
    def owners(self) -> str:
        """sha1 of a job in the processing list -> the operator that holds it."""
        return f"{self.tag}launch:owners"

    @property
    def claims(self) -> str:
        """launch id -> its pending lock, for every launch that is queued: renewed while it waits."""
        return f"{self.tag}launch:claims"

    @property
    def operators(self) -> str:
        """Sorted set: operator id -> its last heartbeat (Redis time, ms)."""
        return f"{self.tag}operators"

    @property
    def cold_slots(self) -> str:
        """Sorted set: launch id -> when its cold slot expires unless renewed (Redis time, ms)."""
        return f"{self.tag}cold"

    @property
    def queued_channel(self) -> str:
        """Pub/sub: a launch was queued (a hint that wakes idle operators; never a key)."""
        return f"{self.tag}queued"

    @property
    def standby_pool(self) -> str:
        """Warm runners' URLs. Under the tag too (it was `<prefix>bot:standby:pool`): on a Cluster the whole
        platform is on one shard, up or down together."""
        return f"{self.tag}standby:pool"

    def launch(self, launch_id: str) -> str:
        return f"{self.tag}launch:{launch_id}"

    def leave(self, launch_id: str) -> str:
        return f"{self.tag}leave:{launch_id}"

    def admin_queue(self, launch_id: str) -> str:
        return f"{self.tag}admin:{launch_id}"

    def room_active(self, room: str) -> str:
        """`room` is the room's hash (`bot.rooms.room_hash`)."""
        return f"{self.tag}room_active:{room}"

    def room_keepalive(self, room: str) -> str:
        return f"{self.tag}room_keepalive:{room}"
