"""A configured process for the cross-process flush tests: `python -m tests.helpers.buffer_worker [many]`.

Buffering, Redis and the log directory come from the environment. It prints "ready", then answers
lines on stdin until "exit":
- default: it logs one DEBUG record (held) in the trace and session its environment carries
  (TRACEPARENT, BAGGAGE); "error" logs an ERROR there, "stats" prints `Telemetry.stats()`;
- `many`: a JSON line `[[traceparent, session id, fails], ...]` runs one asyncio task per entry,
  all at once, each logging DEBUG records in its own trace and session, and an ERROR if it fails.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys

import otel_session

log = logging.getLogger("tests.buffer_worker")


async def _sessions(entries: list[list[object]]) -> None:
    async def one(traceparent: str, session_id: str, fails: bool) -> None:
        ctx = otel_session.extract_headers({"traceparent": traceparent, "baggage": f"session.id={session_id}"})
        async with otel_session.attach(ctx):
            for step in range(3):
                log.debug("worker %s step %d", session_id, step)
                await asyncio.sleep(0.01)
            if fails:
                log.error("worker %s failed", session_id)

    await asyncio.gather(*(one(str(t), str(s), bool(f)) for t, s, f in entries))


def main() -> None:
    telemetry = otel_session.configure(exporter="file")
    many = sys.argv[1:] == ["many"]
    with otel_session.attach(otel_session.extract_env()):
        if not many:
            log.debug("held in %s", telemetry.service_name)
        print("ready", flush=True)
        for line in sys.stdin:
            command = line.strip()
            if many and command.startswith("["):
                asyncio.run(_sessions(json.loads(command)))
                print("done", flush=True)
            elif command == "error":
                log.error("failed in the worker")
                print("logged", flush=True)
            elif command == "stats":
                print(telemetry.stats(), flush=True)
            else:
                break
    telemetry.shutdown()


if __name__ == "__main__":
    main()
