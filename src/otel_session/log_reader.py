"""Reading OTLP-JSON log files: what `OtlpJsonFileExporter` writes and what an OpenTelemetry
Collector's `file` exporter writes (one `ExportLogsServiceRequest` a line, protobuf JSON mapping,
hex ids), rotated (`logs-2026-11-23T10-00-00.000.json`) and gzip-compressed (`*.gz`) files included.

Files are streamed line by line and every log record becomes a small frozen `LogEntry`; only the
records that pass the `LogFilter` are kept. Lines that cannot be read (a writer mid-write, garbage,
JSON that is not an OTLP request) and files that cannot be opened are counted in `ReadStats`, never
raised. `LogTail` reads a directory incrementally, so a follower sees appended lines, new files and
rotated files (followed by inode, so a renamed file is not read twice).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import gzip
import heapq
import json
import math
import os
import re
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from otel_session._levels import parse_level, severity_of

SESSION_ID = "session.id"
USER_ID = "user.id"
EXCEPTION_STACKTRACE = "exception.stacktrace"
SERVICE_NAME = "service.name"
UNKNOWN_SERVICE = "unknown_service"

# OTLP requests of other signals, which a Collector may write into the same file: not log lines, not errors.
_OTHER_SIGNALS = ("resourceSpans", "resourceMetrics", "resourceProfiles")
_SEVERITY_BANDS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
_SEVERITY_ENUM = {f"SEVERITY_NUMBER_{name}{'' if i == 0 else i + 1}": band * 4 + i + 1
                  for band, name in enumerate(_SEVERITY_BANDS) for i in range(4)}
_HEX = re.compile(r"[0-9a-fA-F]+")


def severity_text(number: int) -> str:
    """OTel's short name for a severity number: TRACE, DEBUG, INFO, WARN, ERROR, FATAL."""
    if 1 <= number <= 24:
        return _SEVERITY_BANDS[(number - 1) // 4]
    return "UNSPECIFIED"


def min_severity(level: str) -> int:
    """The lowest severity number a level name (any case, `WARN`, `TRACE`, a stdlib number) admits."""
    if level.strip().upper() == "TRACE":
        return 1
    return severity_of(parse_level(level))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc_time(time_unix_nano: int) -> datetime:
    """A Unix time in nanoseconds as an aware UTC datetime (to the microsecond, exactly)."""
    return _EPOCH + timedelta(microseconds=time_unix_nano // 1000)


def iso_time(time_unix_nano: int, timespec: str = "microseconds") -> str:
    """ISO 8601 in UTC with a `Z`: `2026-11-23T10:00:00.123456Z`."""
    return utc_time(time_unix_nano).isoformat(timespec=timespec).replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One log record as read from a file."""

    time_unix_nano: int
    service: str
    severity_number: int
    level: str
    logger: str
    message: str
    attributes: Mapping[str, Any]
    trace_id: str | None = None  # 32 lowercase hex digits
    span_id: str | None = None  # 16 lowercase hex digits
    resource: Mapping[str, Any] = field(default_factory=dict)

    @property
    def time(self) -> datetime:
        return utc_time(self.time_unix_nano)

    def _text(self, key: str) -> str | None:
        value = self.attributes.get(key)
        return value if isinstance(value, str) else None

    @property
    def session_id(self) -> str | None:
        return self._text(SESSION_ID)

    @property
    def user_id(self) -> str | None:
        return self._text(USER_ID)

    @property
    def exception(self) -> str | None:
        """The `exception.stacktrace` attribute, if any."""
        return self._text(EXCEPTION_STACKTRACE)

    def as_dict(self) -> dict[str, Any]:
        """The `otel-session logs --json` object: the ids and names first, the other attributes last."""
        return {
            "time": iso_time(self.time_unix_nano),
            "service": self.service,
            "level": self.level,
            "logger": self.logger,
            "message": self.message,
            "session_id": self.session_id,
            "user_id": self.user_id,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "attributes": {k: v for k, v in self.attributes.items() if k not in (SESSION_ID, USER_ID)},
        }


@dataclass(frozen=True, slots=True)
class LogFilter:
    """Which records to keep; an empty set means any. All given conditions must hold."""

    sessions: frozenset[str] = frozenset()
    users: frozenset[str] = frozenset()
    services: frozenset[str] = frozenset()
    traces: frozenset[str] = frozenset()  # lowercase hex
    min_severity: int = 0
    since_unix_nano: int | None = None

    def matches(self, entry: LogEntry) -> bool:
        return (
            entry.severity_number >= self.min_severity
            and (self.since_unix_nano is None or entry.time_unix_nano >= self.since_unix_nano)
            and (not self.services or entry.service in self.services)
            and (not self.sessions or entry.session_id in self.sessions)
            and (not self.users or entry.user_id in self.users)
            and (not self.traces or entry.trace_id in self.traces)
        )


@dataclass
class ReadStats:
    """What could not be read: bad lines per file, and files that could not be opened or decompressed."""

    bad_lines: dict[str, int] = field(default_factory=dict)
    unreadable_files: dict[str, str] = field(default_factory=dict)  # path -> reason

    def bad_line(self, path: str | os.PathLike[str], count: int = 1) -> None:
        key = os.fspath(path)
        self.bad_lines[key] = self.bad_lines.get(key, 0) + count

    def unreadable(self, path: str | os.PathLike[str], reason: object) -> None:
        self.unreadable_files.setdefault(os.fspath(path), str(reason))

    @property
    def skipped_lines(self) -> int:
        return sum(self.bad_lines.values())

    def summary(self) -> str | None:
        """One line for stderr, or None when everything was read."""
        parts = []
        if self.bad_lines:
            lines, files = self.skipped_lines, len(self.bad_lines)
            parts.append(f"skipped {lines} unreadable {_plural(lines, 'line')} in {files} {_plural(files, 'file')}")
        if self.unreadable_files:
            count = len(self.unreadable_files)
            path, reason = next(iter(self.unreadable_files.items()))
            parts.append(f"could not read {count} {_plural(count, 'file')} ({path}: {reason})")
        return "; ".join(parts) or None


def _plural(count: int, word: str) -> str:
    return word if count == 1 else word + "s"


class NotOtlpError(ValueError):
    """A line that is JSON but not an OTLP `ExportLogsServiceRequest`."""


# --- decoding --------------------------------------------------------------------------------------


def _int(value: object) -> int:
    if isinstance(value, bool):
        raise NotOtlpError(f"expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            raise NotOtlpError(f"expected an integer, got {value!r}") from None
    if value is None:
        return 0
    raise NotOtlpError(f"expected an integer, got {value!r}")


def _list(value: object) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise NotOtlpError(f"expected a list, got {type(value).__name__}")
    return value


def _dict(value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise NotOtlpError(f"expected an object, got {type(value).__name__}")
    return value


def any_value(value: object) -> Any:
    """An OTLP `AnyValue` (JSON mapping) as a plain JSON-friendly Python value."""
    value = _dict(value)
    if "stringValue" in value:
        return str(value["stringValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "intValue" in value:
        return _int(value["intValue"])
    if "doubleValue" in value:
        raw = value["doubleValue"]
        try:
            number = float(raw)
        except (TypeError, ValueError):
            raise NotOtlpError(f"bad doubleValue {raw!r}") from None
        return number if math.isfinite(number) else str(raw)  # "NaN", "Infinity" stay text: JSON has no such number
    if "arrayValue" in value:
        return [any_value(v) for v in _list(_dict(value["arrayValue"]).get("values"))]
    if "kvlistValue" in value:
        return key_values(_dict(value["kvlistValue"]).get("values"))
    if "bytesValue" in value:
        return str(value["bytesValue"])  # base64, as the JSON mapping writes it
    return None


def key_values(items: object) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in _list(items):
        item = _dict(item)
        out[str(item.get("key", ""))] = any_value(item.get("value"))
    return out


def _id(value: object, size: int) -> str | None:
    """A trace or span id: hex (OTLP JSON), or base64 (protobuf's own JSON mapping); all zeros is none."""
    if not value or not isinstance(value, str):
        return None
    if len(value) == size * 2 and _HEX.fullmatch(value):
        hex_id = value.lower()
    else:
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return None
        if len(raw) != size:
            return None
        hex_id = raw.hex()
    return None if hex_id.strip("0") == "" else hex_id


def _severity(record: dict[str, Any]) -> tuple[int, str]:
    raw = record.get("severityNumber", 0)
    number = _SEVERITY_ENUM.get(raw, 0) if isinstance(raw, str) and not raw.isdigit() else _int(raw)
    text = record.get("severityText")
    text = text if isinstance(text, str) and text else ""
    if not number and text:  # a record with only a level name
        with contextlib.suppress(ValueError):
            number = min_severity(text)
    return number, text or severity_text(number)


def _message(body: object) -> str:
    value = any_value(body)
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False)


def decode_request(line: str | bytes) -> list[LogEntry]:
    """The log records of one OTLP-JSON line, in file order. Raises `ValueError` (a `json` error,
    or `NotOtlpError`) for a line that is not an OTLP request; an OTLP request of another signal
    (spans, metrics) holds no log records and gives []."""
    request = json.loads(line)
    if not isinstance(request, dict):
        raise NotOtlpError("not a JSON object")
    if "resourceLogs" not in request:
        if any(key in request for key in _OTHER_SIGNALS):
            return []
        raise NotOtlpError("no resourceLogs")
    entries: list[LogEntry] = []
    for resource_logs in _list(request["resourceLogs"]):
        resource_logs = _dict(resource_logs)
        resource = key_values(_dict(resource_logs.get("resource")).get("attributes"))
        service = resource.get(SERVICE_NAME)
        service = service if isinstance(service, str) and service else UNKNOWN_SERVICE
        for scope_logs in _list(resource_logs.get("scopeLogs")):
            scope_logs = _dict(scope_logs)
            scope_name = _dict(scope_logs.get("scope")).get("name")
            logger = scope_name if isinstance(scope_name, str) else ""
            for record in _list(scope_logs.get("logRecords")):
                record = _dict(record)
                number, level = _severity(record)
                entries.append(LogEntry(
                    time_unix_nano=_int(record.get("timeUnixNano")) or _int(record.get("observedTimeUnixNano")),
                    service=service,
                    severity_number=number,
                    level=level,
                    logger=logger,
                    message=_message(record.get("body")),
                    attributes=key_values(record.get("attributes")),
                    trace_id=_id(record.get("traceId"), 16),
                    span_id=_id(record.get("spanId"), 8),
                    resource=resource,
                ))
    return entries


# --- files -----------------------------------------------------------------------------------------


def _is_log_file(name: str) -> bool:
    return ".json" in name and not name.startswith(".")


def find_log_files(path: str | os.PathLike[str], stats: ReadStats | None = None) -> list[Path]:
    """`path` itself when it is a file; else every `*.json*` file under it (`.json`, `.jsonl`,
    rotated and `.gz` ones), recursively, in name order. Raises `FileNotFoundError` when `path`
    does not exist."""
    root = Path(path)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"no such file or directory: {root}")

    def failed(error: OSError) -> None:
        if stats is not None and error.filename is not None:
            stats.unreadable(error.filename, error.strerror or error)

    found: list[Path] = []
    for directory, subdirs, files in os.walk(root, onerror=failed):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        found.extend(Path(directory, name) for name in sorted(files) if _is_log_file(name))
    return found


def _decode_into(line: bytes, log_filter: LogFilter, out: list[LogEntry]) -> bool:
    """Decode one line, append its matching records; False when the line is unreadable."""
    try:
        entries = decode_request(line)
    except (ValueError, TypeError, RecursionError):
        return False
    out.extend(e for e in entries if log_filter.matches(e))
    return True


def read_file(path: str | os.PathLike[str], log_filter: LogFilter | None = None,
              stats: ReadStats | None = None) -> Iterator[LogEntry]:
    """The matching records of one whole file (plain or gzip), streamed line by line."""
    tail = _FileTail(Path(path))
    yield from tail.read(log_filter or LogFilter(), stats if stats is not None else ReadStats(), final=True)


class _FileTail:
    """One file's read position: complete lines are consumed; a last line without its newline is
    consumed once it parses (a writer that ends without one), else left for the next read or, on
    the final read, counted as unreadable."""

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path = path
        self.offset = offset
        self.pending = False  # an incomplete last line is waiting
        self.done = False  # gzip files are read once

    @property
    def compressed(self) -> bool:
        return self.path.name.endswith(".gz")

    def read(self, log_filter: LogFilter, stats: ReadStats, *, final: bool) -> Iterator[LogEntry]:
        if self.done:
            return
        if self.compressed:
            self.done = True
            yield from self._read_gzip(log_filter, stats)
            return
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 - closed below, generator-safe
        except FileNotFoundError:
            return  # rotated away or deleted since it was listed
        except OSError as exc:
            stats.unreadable(self.path, exc.strerror or exc)
            return
        with handle:
            try:
                size = os.fstat(handle.fileno()).st_size
                if size < self.offset:  # truncated in place (copytruncate): start again
                    self.offset = 0
                handle.seek(self.offset)
                self.pending = False
                batch: list[LogEntry] = []
                for line in handle:
                    complete = line.endswith(b"\n")
                    if not line.strip():
                        self.offset += len(line)
                        continue
                    if _decode_into(line, log_filter, batch):
                        self.offset += len(line)
                    elif complete or final:
                        self.offset += len(line)
                        stats.bad_line(self.path)
                    else:
                        self.pending = True  # a writer mid-write: read it again next time
                        break
                    if batch:
                        yield from batch
                        batch.clear()
            except OSError as exc:
                stats.unreadable(self.path, exc.strerror or exc)

    def _read_gzip(self, log_filter: LogFilter, stats: ReadStats) -> Iterator[LogEntry]:
        batch: list[LogEntry] = []
        try:
            with gzip.open(self.path, "rb") as handle:
                for line in handle:
                    if line.strip() and not _decode_into(line, log_filter, batch):
                        stats.bad_line(self.path)
                    if batch:
                        yield from batch
                        batch.clear()
        except FileNotFoundError:
            return
        except (OSError, EOFError, zlib.error) as exc:  # not gzip, or cut short
            stats.unreadable(self.path, getattr(exc, "strerror", None) or exc)


def _last(entries: Iterable[LogEntry], limit: int | None) -> list[LogEntry]:
    """In time order; with a limit, only the last `limit`, keeping no more than that many in memory."""
    if limit is None:
        return sorted(entries, key=_time)
    return sorted(heapq.nlargest(limit, entries, key=_time), key=_time)


def _time(entry: LogEntry) -> int:
    return entry.time_unix_nano


class LogTail:
    """The log files of a directory (or one file), read incrementally.

    The first `read()` returns the matching records already there; each later one returns what was
    appended since, including files that appeared. Files are tracked by inode, so a file a Collector
    renames while rotating is continued, not read again; a file truncated in place is read from its
    start. Compressed rotated files (`*.gz`) are read by the first `read()` only: one that appears
    later holds what was already read under its uncompressed name.
    """

    def __init__(self, path: str | os.PathLike[str], log_filter: LogFilter | None = None,
                 stats: ReadStats | None = None) -> None:
        self.path = Path(path)
        self.filter = log_filter or LogFilter()
        self.stats = stats if stats is not None else ReadStats()
        self._files: dict[tuple[int, int], _FileTail] = {}
        self._first = True

    def read(self, *, limit: int | None = None, final: bool = False) -> list[LogEntry]:
        """New matching records in time order (the last `limit` of them when given). With
        `final=True`, an incomplete last line counts as unreadable instead of waiting for the
        rest of it. Raises `FileNotFoundError` when the path does not exist."""
        return _last(self._read(final), limit)

    def _read(self, final: bool) -> Iterator[LogEntry]:
        first, self._first = self._first, False
        try:
            paths = find_log_files(self.path, self.stats)
        except FileNotFoundError:
            if first:
                raise
            paths = []  # removed while followed: nothing new until it comes back
        seen: dict[tuple[int, int], _FileTail] = {}
        for path in paths:
            try:
                info = path.stat()
            except FileNotFoundError:
                continue
            except OSError as exc:
                self.stats.unreadable(path, exc.strerror or exc)
                continue
            key = (info.st_dev, info.st_ino)
            if key in seen:  # a hard link to a file already listed
                continue
            tail = self._files.get(key)
            if tail is None:
                tail = _FileTail(path)
                tail.done = not first and tail.compressed
            tail.path = path  # renamed files keep their position
            seen[key] = tail
        self._files = seen  # forget files that are gone, so a reused inode starts from 0
        for tail in seen.values():
            yield from tail.read(self.filter, self.stats, final=final)

    def finish(self) -> None:
        """Count the incomplete last lines still waiting as unreadable (a follower stopping)."""
        for tail in self._files.values():
            if tail.pending:
                tail.pending = False
                self.stats.bad_line(tail.path)


def read_records(path: str | os.PathLike[str], log_filter: LogFilter | None = None, *,
                 stats: ReadStats | None = None) -> Iterator[LogEntry]:
    """Every matching record under `path` (a directory or one file), streamed in file order, not sorted."""
    stats = stats if stats is not None else ReadStats()
    for file in find_log_files(path, stats):
        yield from read_file(file, log_filter, stats)


def read_logs(path: str | os.PathLike[str], log_filter: LogFilter | None = None, *,
              limit: int | None = None, stats: ReadStats | None = None) -> list[LogEntry]:
    """Every matching record under `path` in time order (the last `limit` when given)."""
    return LogTail(path, log_filter, stats).read(limit=limit, final=True)


# --- flag values -----------------------------------------------------------------------------------

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
    delta = stamp - _EPOCH
    return (delta // timedelta(microseconds=1)) * 1000


def parse_trace_id(text: str) -> str:
    """`--trace`: 32 hex digits (not all zero), as lowercase. Raises `ValueError`."""
    value = text.strip().lower()
    if len(value) != 32 or not _HEX.fullmatch(value) or value.strip("0") == "":
        raise ValueError(f"invalid trace id {text!r}: use 32 hex digits, not all zero")
    return value


__all__ = [
    "LogEntry",
    "LogFilter",
    "LogTail",
    "NotOtlpError",
    "ReadStats",
    "any_value",
    "decode_request",
    "find_log_files",
    "iso_time",
    "min_severity",
    "parse_since",
    "parse_trace_id",
    "read_file",
    "read_logs",
    "read_records",
    "severity_text",
    "utc_time",
]
