"""How a cold bot is started. A small interface, so a Kubernetes Job launcher can replace the process one."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Protocol

logger = logging.getLogger(__name__)


class Launcher(Protocol):
    def launch(self, launch_id: str, env: Mapping[str, str]) -> int:
        """Start one cold bot with exactly this environment; return its id (here a pid)."""
        ...

    def reap(self) -> None:
        """Collect bots that have ended (no zombies)."""
        ...


class ProcessLauncher:
    """`python -m bot.runner --job` as a child process in its own session (it outlives an operator restart)."""

    def __init__(self, command: Sequence[str] | None = None, cwd: str | None = None) -> None:
        self.command = list(command or [sys.executable, "-m", "bot.runner", "--job"])
        self.cwd = cwd or os.getcwd()
        self.children: dict[int, tuple[str, subprocess.Popen[bytes]]] = {}

    def launch(self, launch_id: str, env: Mapping[str, str]) -> int:
        proc = subprocess.Popen(self.command, env=dict(env), cwd=self.cwd, start_new_session=True)
        self.children[proc.pid] = (launch_id, proc)
        return proc.pid

    def reap(self) -> None:
        for pid, (launch_id, proc) in list(self.children.items()):
            code = proc.poll()
            if code is not None:
                del self.children[pid]
                log = logger.info if code == 0 else logger.warning
                log("Cold bot %s (pid %d) exited with %d", launch_id, pid, code)
