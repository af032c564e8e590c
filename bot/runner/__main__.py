"""`python -m bot.runner --warm` (an HTTP server in the standby pool) or `--job` (one cold bot from its environment).

It only picks: the work lives in `bot.runner.app` and `bot.runner.cold`, whose loggers keep their names.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from bot.settings import Settings, check_redis_urls


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bot.runner", description="bot runner")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--warm", action="store_true", help="serve /start and wait in the standby pool (the default)")
    mode.add_argument("--job", action="store_true", help="run one session from BOT_* env vars, then exit")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--public-url", default=os.environ.get("RUNNER_URL"),
                        help="the URL the operator reaches this runner at (default http://HOST:PORT)")
    parser.add_argument("--slots", type=int, default=1, help="sessions a warm runner offers at once")
    args = parser.parse_args(argv)
    if args.job:
        from bot.runner.cold import run_job

        try:
            check_redis_urls(os.environ)  # without a Redis there is no telemetry to report it through
        except ValueError as exc:
            parser.exit(2, f"bot runner: {exc}\n")
        sys.exit(asyncio.run(run_job()))
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        parser.exit(2, f"bot runner: {exc}\n")
    if args.slots < 1:
        parser.error("--slots must be at least 1")
    from bot.runner.app import serve_warm

    serve_warm(args.host, args.port, args.public_url or f"http://{args.host}:{args.port}", args.slots, settings)


if __name__ == "__main__":
    main()
