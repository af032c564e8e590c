"""Redis key names, in one place. Keys used together in one command share a Redis Cluster hash tag."""

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
    def launch_queue(self) -> str:
        return f"{self.prefix}{{bot}}:launch:queue"

    @property
    def processing(self) -> str:
        return f"{self.prefix}{{bot}}:launch:processing"

    @property
    def dead_letter(self) -> str:
        return f"{self.prefix}{{bot}}:launch:dead"

    @property
    def standby_pool(self) -> str:
        return f"{self.prefix}bot:standby:pool"

    def room_active(self, room_url: str) -> str:
        return f"{self.prefix}room_active:{room_url}"

    def room_keepalive(self, room_url: str) -> str:
        return f"{self.prefix}room_keepalive:{room_url}"

    def admin_queue(self, room_url: str) -> str:
        return f"{self.prefix}admin:queue:{room_url}"
