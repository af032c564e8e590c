"""How a cold bot is started. A small interface, so a Kubernetes Job launcher can replace the process one."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Protocol

logger = logging.getLogger(__name__)


class Launcher(Protocol):
    def launch(self, launch_id: str, env: Mapping[str, str]) -> int:
        """Start one cold bot with exactly this environment; return its id (here a pid)."""
        ...

    def alive(self, bot_id: int) -> bool:
        """Whether that bot still runs (a bot that ended is collected on the way)."""
        ...

    def kill(self, bot_id: int) -> None:
        """Stop a bot that did not start in time (it never took its launch, or it was fenced)."""
        ...

    def reap(self) -> list[tuple[str, int]]:
        """Collect bots that have ended (no zombies): (launch id, bot id) of each."""
        ...


class ProcessLauncher:
    """`python -m bot.runner --job` as a child process in its own session (it outlives an operator restart)."""

    def __init__(self, command: Sequence[str] | None = None, cwd: str | None = None) -> None:
        self.command = list(command or [sys.executable, "-m", "bot.runner", "--job"])
        self.cwd = cwd or os.getcwd()
        self.children: dict[int, tuple[str, subprocess.Popen[bytes]]] = {}
        self._ended: list[tuple[str, int]] = []

    def launch(self, launch_id: str, env: Mapping[str, str]) -> int:
        proc = subprocess.Popen(self.command, env=dict(env), cwd=self.cwd, start_new_session=True)
        self.children[proc.pid] = (launch_id, proc)
        return proc.pid

    def alive(self, bot_id: int) -> bool:
        child = self.children.get(bot_id)
        if child is None:
            return False
        if child[1].poll() is None:
            return True
        self._collect(bot_id)
        return False

    def kill(self, bot_id: int) -> None:
        child = self.children.get(bot_id)
        if child is None or child[1].poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(bot_id, signal.SIGKILL)  # its own session: the bot and anything it started
        with contextlib.suppress(subprocess.TimeoutExpired):
            child[1].wait(5)
            self._collect(bot_id)

    def reap(self) -> list[tuple[str, int]]:
        for pid, (_, proc) in list(self.children.items()):
            if proc.poll() is not None:
                self._collect(pid)
        ended, self._ended = self._ended, []
        return ended

    def _collect(self, pid: int) -> None:
        launch_id, proc = self.children.pop(pid)
        code = proc.returncode
        log = logger.info if code == 0 else logger.warning
        log("Cold bot %s (pid %d) exited with %d", launch_id, pid, code)
        self._ended.append((launch_id, pid))
