"""A configured process for the cross-process flush tests: `python -m tests.buffer_worker MODE`.

It logs in the trace and session its environment carries (TRACEPARENT, BAGGAGE), prints "ready",
and then waits for a line on stdin: "error" logs an ERROR in that trace, "exit" ends it.
MODE "held": one DEBUG record, held. Buffering, Redis and the log directory come from the env.
"""

from __future__ import annotations

import logging
import sys

import otel_session

log = logging.getLogger("tests.buffer_worker")


def main() -> None:
    otel_session.configure(exporter="file")
    with otel_session.attach(otel_session.extract_env()):
        log.debug("held in %s", otel_session.configured().service_name)  # type: ignore[union-attr]
        print("ready", flush=True)
        for line in sys.stdin:
            if line.strip() == "error":
                log.error("failed in the worker")
                print("logged", flush=True)
            elif line.strip() == "stats":
                print(otel_session.configured().stats(), flush=True)  # type: ignore[union-attr]
            else:
                break
    otel_session.configured().shutdown()  # type: ignore[union-attr]


if __name__ == "__main__":
    main()
