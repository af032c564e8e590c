"""`otel-session`: the command line.

`otel-session logs` prints the records of the OTLP-JSON log files that `configure(exporter="file")` or
a Collector's `file` exporter wrote, in time order across services, filtered by session, user,
service, trace, level and time; `--follow` keeps printing as the files grow. (The whole-platform
demo lives with the platform, in the repository: `python -m bot.demo`.)

`otel-session view` serves one session across every service on one page in the browser, over the same files
(`otel_session.view`).

`otel-session debug on|off|list|audit` makes, revokes and lists live debug grants held in Redis and
prints their audit stream (`otel_session.grants` is the same as a library).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shlex
import signal
import sqlite3
import sys
import threading
import time
import typing
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import TextIO, TypeVar
from urllib.parse import quote

from otel_session._file_exporter import log_dir
from otel_session._follow import LogFilter, LogTail, ReadStats
from otel_session._levels import parse_level
from otel_session._record import EPOCH, Record, iso_time
from otel_session._severity import TRACE, severity_of
from otel_session._validation import parse_trace_id

T = TypeVar("T")
PROG = "otel-session"
POLL_S = 0.5

# (lowest severity number, SGR code): FATAL bold red, ERROR red, WARN yellow, INFO green, DEBUG/TRACE dim
_COLOURS = ((21, "1;31"), (17, "31"), (13, "33"), (9, "32"), (1, "2"))
_CAPS = {"service": 24, "level": 11, "session": 36, "logger": 32}  # widest a column grows; longer values overflow
_INDENT = "    "


# --- argument types: a bad value is argparse's "argument --x: ..." and exit 2 -------------------------


def _type(convert: Callable[[str], T]) -> Callable[[str], T]:
    def parse(text: str) -> T:
        try:
            return convert(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def parse_count(text: str) -> int:
    """`--limit`: a whole number, 0 or more. Raises `ValueError`."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"invalid count {text!r}: use a whole number, 0 or more")
    return value


def min_severity(level: str) -> int:
    """`--level`: the lowest severity number a level name (any case, `WARN`, `TRACE`, a stdlib number)
    admits. Raises `ValueError`."""
    if level.strip().upper() == "TRACE":
        return TRACE
    return severity_of(parse_level(level))


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, now_unix_nano: int | None = None) -> int:
    """`--since`: a duration back from now (`30s`, `10m`, `2h`, `1d`, `1h30m`) or an ISO-8601 time
    (UTC when it has no offset), as a Unix time in nanoseconds. Raises `ValueError`."""
    value = text.strip().lower()
    if value and _DURATION.sub("", value) == "":
        seconds = sum(float(n) * _UNITS[unit] for n, unit in _DURATION.findall(value))
        now = now_unix_nano if now_unix_nano is not None else time.time_ns()
        return now - int(seconds * 1e9)
    try:
        stamp = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"invalid time {text!r}: use a duration such as 30s, 10m, 2h, 1d, "
                         "or an ISO-8601 time such as 2026-11-23T10:00:00Z") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return ((stamp - EPOCH) // timedelta(microseconds=1)) * 1000


def trace_hex(text: str) -> str:
    """`--trace`: 32 hex digits (not all zero), as lowercase. Raises `ValueError`."""
    return format(parse_trace_id(text), "032x")


def _add_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, metavar="DIR",
                        help="a directory (every *.json* file in it, recursively) or one file; "
                             f"default: $OTEL_SESSION_LOG_DIR, else {log_dir({})}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Session-scoped OpenTelemetry logs.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    logs = commands.add_parser(
        "logs", help="print log records from OTLP-JSON files, in time order across services",
        description="Print the log records of OTLP-JSON lines files (what configure(exporter='file') and a "
                    "Collector's file exporter write) in time order across services and files. Filters combine; "
                    "a filter given twice admits either value.",
    )
    _add_dir(logs)
    logs.add_argument("--session", action="append", metavar="ID", help="only this session.id")
    logs.add_argument("--user", action="append", metavar="ID", help="only this user.id")
    logs.add_argument("--service", action="append", metavar="NAME", help="only this service.name")
    logs.add_argument("--trace", action="append", metavar="ID", type=_type(trace_hex),
                      help="only this trace (32 hex digits)")
    logs.add_argument("--level", metavar="LEVEL", type=_type(min_severity),
                      help="this level and above: TRACE, DEBUG, INFO, WARN(ING), ERROR, CRITICAL/FATAL, any case")
    logs.add_argument("--since", metavar="WHEN", type=_type(parse_since),
                      help="records from this long ago (30s, 10m, 2h, 1d) or from an ISO-8601 time (UTC unless it "
                           "has an offset)")
    logs.add_argument("--limit", metavar="N", type=_type(parse_count),
                      help="only the last N matching records (with --follow: the last N, then new ones)")
    logs.add_argument("-f", "--follow", action="store_true",
                      help="keep printing records as files grow and new files appear, until Ctrl-C")
    logs.add_argument("--json", action="store_true",
                      help="one JSON object a line: time, service, level, logger, message, session_id, user_id, "
                           "trace_id, span_id, attributes")
    logs.set_defaults(handler=_logs, parser=logs)

    view = commands.add_parser(
        "view", help="browse sessions in a local web page: a timeline per service, every record, live",
        description="Serve a local web page over the OTLP-JSON files (what configure(exporter='file') and a "
                    "Collector's file exporter write): every session, and one session across every service on a "
                    "timeline with its traces and records, following the files as they grow.",
    )
    _add_dir(view)
    view.add_argument("--host", default="127.0.0.1", metavar="HOST",
                      help="the address to listen on (default 127.0.0.1: this machine only)")
    view.add_argument("--port", type=_type(_port), default=8321, metavar="PORT",
                      help="the port to listen on (default 8321; 0: any free port)")
    view.add_argument("--open", action="store_true", help="open the page in a web browser")
    view.add_argument("--db", type=Path, metavar="FILE",
                      help="keep the index in this SQLite file, continued by the next run (default: a temporary "
                           "file, removed on exit)")
    view.set_defaults(handler=_view, parser=view)

    _add_debug(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # what parse_args does, but a `debug` action says it in its own one line
        (args.parser if args.command == "debug" else parser).error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    code: int = args.handler(args)
    return code


# --- logs ------------------------------------------------------------------------------------------


def _logs(args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args.parser
    path: Path = args.dir if args.dir is not None else log_dir()
    if not path.exists():
        if args.dir is not None:
            parser.error(f"argument --dir: {path}: no such file or directory")
        parser.error(f"no log directory at {path}: set OTEL_SESSION_LOG_DIR or pass --dir")
    log_filter = LogFilter(
        sessions=frozenset(args.session or ()),
        users=frozenset(args.user or ()),
        services=frozenset(args.service or ()),
        traces=frozenset(args.trace or ()),
        min_severity=args.level or 0,
        since_unix_nano=args.since,
    )
    out = sys.stdout
    if isinstance(out, io.TextIOWrapper):
        out.reconfigure(errors="backslashreplace")  # a message never fails to print
    printer = JsonPrinter(out) if args.json else HumanPrinter(out, colour=use_colour(out))
    stats = ReadStats()
    tail = LogTail(path, log_filter, stats)
    try:
        printer.write(tail.read(limit=args.limit, final=not args.follow))
        out.flush()
        _view_hint(out, path, args.session)
        if args.follow:
            with _interrupted_by_sigterm(), contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(POLL_S)
                    entries = tail.read()
                    if entries:
                        printer.write(entries)
                        out.flush()
            tail.finish()
    except BrokenPipeError:  # `| head` stopped reading: not an error
        _silence_stdout()
        return 0
    except KeyboardInterrupt:  # Ctrl-C while reading, before any following
        return 130
    summary = stats.summary()
    if summary:
        print(f"{PROG}: {summary}", file=sys.stderr)
    return 0


VIEW_URL = "http://127.0.0.1:8321"  # where `otel-session view` listens by default


def _view_hint(out: TextIO, path: Path, sessions: Sequence[str] | None) -> None:
    """Once, and only for a person at a terminal (stderr, so no pipe ever reads it): the same directory in
    the browser, and the page of the one session asked for."""
    try:
        if not out.isatty():
            return
    except (AttributeError, ValueError):
        return
    hint = f"{PROG}: the same in the browser: {PROG} view --dir {shlex.quote(str(path))}"
    if sessions and len(set(sessions)) == 1:
        hint += f", then {VIEW_URL}/sessions/{quote(sessions[0], safe='')}"
    print(hint, file=sys.stderr, flush=True)


# --- view ------------------------------------------------------------------------------------------


def _port(text: str) -> int:
    """`--port`: 0 to 65535. Raises `ValueError`."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise ValueError(f"invalid port {text!r}: use a number from 0 to 65535")
    return value


def _view(args: argparse.Namespace) -> int:
    from otel_session.view.index import Index
    from otel_session.view.server import is_loopback, serve

    prog = f"{PROG} view"
    path: Path = args.dir if args.dir is not None else log_dir()
    if not path.exists():
        hint = "" if args.dir is not None else " (set OTEL_SESSION_LOG_DIR or pass --dir)"
        print(f"{prog}: error: no such directory: {path}{hint}", file=sys.stderr)
        return 2
    if not is_loopback(args.host):
        print(f"{prog}: warning: listening on {args.host}: the logs are readable by anyone who can reach it",
              file=sys.stderr)
    try:
        index = Index(path, args.db)
    except (OSError, sqlite3.Error) as exc:
        print(f"{prog}: error: cannot open the index {args.db}: {exc}", file=sys.stderr)
        return 2
    try:
        with _interrupted_by_sigterm(), contextlib.suppress(KeyboardInterrupt):
            serve(index, args.host, args.port, open_browser=args.open)
    except OSError as exc:  # the port is taken, the address is not ours
        print(f"{prog}: error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    finally:
        index.close()
    return 0


def use_colour(out: TextIO) -> bool:
    """ANSI colour only for a terminal, and never with NO_COLOR set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False


class JsonPrinter:
    """`--json`: one object a line, `Record.as_dict()`."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def write(self, entries: Sequence[Record]) -> None:
        for entry in entries:
            self.out.write(json.dumps(entry.as_dict(), ensure_ascii=False) + "\n")


class HumanPrinter:
    """Aligned columns: time, service, level, session, logger, message; a stack trace indented
    under its record. Column widths fit the records printed so far (up to a cap) and only grow."""

    def __init__(self, out: TextIO, colour: bool = False) -> None:
        self.out = out
        self.colour = colour
        self.widths = {"service": 7, "level": 5, "session": 7, "logger": 6}

    def write(self, entries: Sequence[Record]) -> None:
        rows = [(entry, self._cells(entry)) for entry in entries]
        for _, cells in rows:
            for name, value in cells.items():
                self.widths[name] = max(self.widths[name], min(len(value), _CAPS[name]))
        for entry, cells in rows:
            self.out.write(self.format(entry, cells) + "\n")

    @staticmethod
    def _cells(entry: Record) -> dict[str, str]:
        return {"service": entry.service, "level": entry.level, "session": entry.session_id or "-",
                "logger": entry.logger or "-"}

    def format(self, entry: Record, cells: dict[str, str] | None = None) -> str:
        cells = cells or self._cells(entry)
        padded = {name: value.ljust(self.widths[name]) for name, value in cells.items()}
        stamp = iso_time(entry.time_unix_nano, "milliseconds")
        level = padded["level"]
        if self.colour:
            code = next((c for floor, c in _COLOURS if entry.severity_number >= floor), None)
            stamp = f"\033[2m{stamp}\033[0m"
            if code:
                level = f"\033[{code}m{level}\033[0m"
        message, *more = entry.message.split("\n")
        lines = [f"{stamp}  {padded['service']}  {level}  {padded['session']}  {padded['logger']}  {message}"]
        lines.extend(_INDENT + line for line in more)
        if entry.exception:
            lines.extend(_INDENT + line for line in entry.exception.rstrip("\n").split("\n"))
        return "\n".join(lines)


@contextlib.contextmanager
def _interrupted_by_sigterm() -> Iterator[None]:
    """SIGTERM stops a follower like Ctrl-C does: output flushed, summary printed, exit 0."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the interpreter's final flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        pass


# --- debug: live debug grants in Redis ------------------------------------------------------------------


class _OneLineParser(argparse.ArgumentParser):
    """A bad `debug` argument is one line on stderr (`otel-session debug on: error: ...`) and exit 2."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_duration(text: str) -> float:
    """`--for`/`--since`: `90s`, `15m`, `2h`, `1d`, `1h30m`, or plain seconds, as seconds. Raises
    `ValueError`."""
    value = text.strip().lower()
    try:
        seconds = float(value)
    except ValueError:
        if not value or _DURATION.sub("", value) != "":
            raise ValueError(f"invalid duration {text!r}: use 90s, 15m, 2h, 1d or a number of seconds") from None
        seconds = sum(float(n) * _UNITS[unit] for n, unit in _DURATION.findall(value))
    if seconds != seconds or seconds < 0 or seconds == float("inf"):
        raise ValueError(f"invalid duration {text!r}: use 90s, 15m, 2h, 1d or a number of seconds")
    return seconds


def _add_debug(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from otel_session.live.store import DEFAULT_REDIS_URL

    redis_help = f"the Redis holding the grants; default: $OTEL_SESSION_REDIS_URL, else $REDIS_URL, else " \
                 f"{DEFAULT_REDIS_URL} (keys behind $OTEL_SESSION_REDIS_PREFIX)"
    debug = commands.add_parser(
        "debug", help="live debug grants: a level for one session or user across every service, audited",
        description="Grant a log level to one live session or user in every service that reads the same "
                    "Redis, for a while; revoke it, list the live grants, print the audit stream.",
    )
    actions = debug.add_subparsers(dest="debug_command", metavar="ACTION", parser_class=_OneLineParser)
    debug.set_defaults(handler=lambda args: _usage(debug), parser=debug)

    on = actions.add_parser("on", help="grant a level to a session or a user",
                            description="Export the records of one session (or user) at LEVEL in every service "
                                        "until the grant expires or is revoked.")
    target = on.add_mutually_exclusive_group(required=True)
    target.add_argument("--session", metavar="ID", help="the session.id to debug")
    target.add_argument("--user", metavar="ID", help="the user.id to debug")
    on.add_argument("--level", metavar="LEVEL", default="DEBUG", help="the granted level (default DEBUG)")
    on.add_argument("--for", dest="ttl", metavar="DURATION", type=_type(parse_duration), default=900.0,
                    help="how long: 90s, 15m, 2h or seconds, at most 24h (default 15m)")
    on.add_argument("--reason", metavar="TEXT", default="", help="why, for the audit")
    on.add_argument("--by", metavar="NAME", default="", help="who, for the audit (default: the OS user name)")

    off = actions.add_parser("off", help="revoke the grants of a session, a user, or one grant",
                             description="Revoke every live grant for a session or a user, or one grant by id.")
    which = off.add_mutually_exclusive_group(required=True)
    which.add_argument("--session", metavar="ID", help="every grant for this session.id")
    which.add_argument("--user", metavar="ID", help="every grant for this user.id")
    which.add_argument("--id", dest="grant_id", metavar="GRANT", help="this grant")
    off.add_argument("--by", metavar="NAME", default="", help="who, for the audit (default: the OS user name)")

    listing = actions.add_parser("list", help="the live grants", description="Print the live grants.")
    listing.add_argument("--json", action="store_true", help="one JSON object a grant")

    audit = actions.add_parser("audit", help="print the audit stream",
                               description="Print the audit stream: grants created, revoked, expired, and their "
                                           "first use in each service.")
    audit.add_argument("--since", metavar="DURATION", type=_type(parse_duration),
                       help="entries from this long ago: 90s, 15m, 2h, 1d or seconds (default: all)")
    audit.add_argument("--json", action="store_true", help="one JSON object an entry")

    for action, handler in ((on, _debug_on), (off, _debug_off), (listing, _debug_list), (audit, _debug_audit)):
        action.add_argument("--redis-url", metavar="URL", help=redis_help)
        action.set_defaults(handler=_debug(handler), parser=action)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _debug(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Bad input or an unreachable Redis: one line on stderr, exit 2. The audit records go to the
    exporter the environment names (`OTEL_LOGS_EXPORTER`, an OTLP endpoint), else nowhere: stdout
    already says what happened."""

    def run(args: argparse.Namespace) -> int:
        parser: argparse.ArgumentParser = args.parser
        telemetry = _audit_export()
        try:
            return handler(args)
        except ValueError as exc:
            print(f"{parser.prog}: error: {exc}", file=sys.stderr)
            return 2
        except BrokenPipeError:
            _silence_stdout()
            return 0
        finally:
            if telemetry is not None:
                telemetry.shutdown()

    return run


def _audit_export() -> typing.Any:
    import logging

    from otel_session.live.store import DEFAULT_SERVICE, audit_logger

    wanted = ("OTEL_LOGS_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT")
    if any(os.environ.get(name, "").strip() for name in wanted):
        from otel_session._configure import configure, configured

        if configured() is None:
            return configure(service_name=os.environ.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE)
        return None
    if not audit_logger.handlers and not logging.getLogger().handlers:
        audit_logger.addHandler(logging.NullHandler())  # not the stdlib's last-resort echo on stderr
    return None


def _target(grant: typing.Any) -> str:
    return str(grant.target)


def _debug_on(args: argparse.Namespace) -> int:
    from otel_session import grants

    made = grants.grant(session_id=args.session, user_id=args.user, level=args.level, ttl_s=args.ttl,
                        reason=args.reason, by=args.by, redis_url=args.redis_url)
    print(f"{made.id}: {made.level} for {_target(made)} until {_when(made.expires_at)} "
          f"({_span(made.remaining_s())}), by {made.by}" + (f": {made.reason}" if made.reason else ""))
    return 0


def _debug_off(args: argparse.Namespace) -> int:
    from otel_session import grants

    gone = grants.revoke(args.grant_id, session_id=args.session, user_id=args.user, by=args.by,
                         redis_url=args.redis_url)
    if not gone:
        what = f"grant {args.grant_id}" if args.grant_id else f"grant for {'session' if args.session else 'user'} " \
               f"{args.session or args.user}"
        print(f"no live {what}: nothing revoked")
    for grant in gone:
        print(f"revoked {grant.id}: {grant.level} for {_target(grant)} (was until {_when(grant.expires_at)})")
    return 0


def _debug_list(args: argparse.Namespace) -> int:
    from otel_session import grants

    live = grants.active(redis_url=args.redis_url)
    if args.json:
        for grant in live:
            print(json.dumps(grant.as_dict(), ensure_ascii=False))
        return 0
    if not live:
        print("no live grants")
        return 0
    _table(("ID", "TARGET", "LEVEL", "UNTIL", "LEFT", "BY", "REASON"),
           [(g.id, _target(g), g.level, _when(g.expires_at), _span(g.remaining_s()), g.by, g.reason) for g in live])
    return 0


def _debug_audit(args: argparse.Namespace) -> int:
    from otel_session import grants

    entries = grants.audit(since_s=args.since, redis_url=args.redis_url)
    if args.json:
        for entry in entries:
            print(json.dumps(entry, ensure_ascii=False))
        return 0
    if not entries:
        print("no audit entries")
        return 0
    rows = []
    for entry in entries:
        target = f"session {entry['session_id']}" if entry["session_id"] else f"user {entry['user_id'] or '-'}"
        rows.append((_when(entry["at"]) if entry["at"] is not None else "-", entry["event"], entry["grant_id"],
                     target, entry["level"], entry["service"], entry["by"], entry["reason"]))
    _table(("TIME", "EVENT", "GRANT", "TARGET", "LEVEL", "SERVICE", "BY", "REASON"), rows)
    return 0


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    cleaned = [[_CONTROL_CHARS.sub("?", cell) for cell in row] for row in rows]
    widths = [max(len(header[i]), *(len(row[i]) for row in cleaned)) for i in range(len(header) - 1)]
    for row in (header, *cleaned):
        print("  ".join([cell.ljust(width) for cell, width in zip(row, widths, strict=False)] + [row[-1]]).rstrip())


_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _when(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _span(seconds: float) -> str:
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "") + (f"{secs}s" if secs or not whole
                                                                                   else "")


if __name__ == "__main__":
    sys.exit(main())
