"""Reading OTLP-JSON log files from disk: whole files, directories, and directories that grow.

Files are streamed line by line and only the records that pass the `LogFilter` are kept. Lines that
cannot be read (a writer mid-write, garbage, JSON that is not an OTLP request) and files that cannot
be opened are counted in `ReadStats`, never raised. `LogTail` reads a directory incrementally, so a
follower sees appended lines, new files and rotated files (`logs-2026-11-23T10-00-00.000.json`,
`*.gz`), followed by inode so a renamed file is not read twice.
"""

from __future__ import annotations

import gzip
import heapq
import os
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from otel_session._metric import MetricPoint
from otel_session._otlp_json import LOGS, OTHER, TRACES, Decoded, decode_line, decode_metrics
from otel_session._record import Record
from otel_session._span import Span


@dataclass(frozen=True, slots=True)
class LogFilter:
    """Which records to keep; an empty set means any. All given conditions must hold."""

    sessions: frozenset[str] = frozenset()
    users: frozenset[str] = frozenset()
    services: frozenset[str] = frozenset()
    traces: frozenset[str] = frozenset()  # lowercase hex
    min_severity: int = 0
    since_unix_nano: int | None = None

    def matches(self, record: Record) -> bool:
        return (
            record.severity_number >= self.min_severity
            and (self.since_unix_nano is None or record.time_unix_nano >= self.since_unix_nano)
            and (not self.services or record.service in self.services)
            and (not self.sessions or record.session_id in self.sessions)
            and (not self.users or record.user_id in self.users)
            and (not self.traces or record.trace_id in self.traces)
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


class Chunk(NamedTuple):
    """What one line of a file held: `kind` is `"logs"` (its `records`), `"traces"` (its `spans`), `"other"`
    (metrics, profiles: nothing to show) or `"bad"` (unreadable: counted in `ReadStats` too). `start` and
    `end` are the line's byte offsets (of the uncompressed text, for a `.gz` file): read on from `end`."""

    kind: str
    records: list[Record]
    spans: list[Span]
    start: int
    end: int


BAD = "bad"


def _decoded(line: bytes, spans: bool) -> Decoded | None:
    try:
        return decode_line(line, spans=spans)
    except (ValueError, TypeError, RecursionError):
        return None


def read_file(path: str | os.PathLike[str], log_filter: LogFilter | None = None,
              stats: ReadStats | None = None) -> Iterator[Record]:
    """The matching records of one whole file (plain or gzip), streamed line by line."""
    tail = _FileTail(Path(path))
    yield from tail.read(log_filter or LogFilter(), stats if stats is not None else ReadStats(), final=True)


def read_chunks(path: str | os.PathLike[str], offset: int = 0, *, final: bool = False,
                stats: ReadStats | None = None) -> Iterator[Chunk]:
    """One file (plain or gzip) read from byte `offset` on, a `Chunk` a line: log records, spans, or a bad
    line, each with the offset to read on from. A last line without its newline that does not parse yet (a
    writer mid-write) is left for the next call, unless `final`, when it is a bad line. A file now shorter
    than `offset` (truncated in place) is read from its start: the first chunk's `start` is then below
    `offset`. A file that does not exist (rotated away) gives nothing."""
    tail = _FileTail(Path(path), offset)
    yield from tail.chunks(stats if stats is not None else ReadStats(), final=final)


def read_spans(path: str | os.PathLike[str], *, stats: ReadStats | None = None) -> list[Span]:
    """Every span under `path` (a directory or one file: our `*.spans.jsonl` files, a Collector's traces
    file, rotated and `.gz` ones), in start-time order. Log lines are skipped silently; unreadable lines
    and files are counted in `stats`."""
    stats = stats if stats is not None else ReadStats()
    spans = [span for file in find_log_files(path, stats)
             for chunk in read_chunks(file, final=True, stats=stats) for span in chunk.spans]
    spans.sort(key=_start)
    return spans


def _start(span: Span) -> int:
    return span.start_unix_nano


def read_metrics(path: str | os.PathLike[str], *, stats: ReadStats | None = None) -> dict[str, list[MetricPoint]]:
    """Every metric data point under `path` (a directory or one file: our `*.metrics.jsonl` files, a Collector's
    metrics file, rotated and `.gz` ones), by metric name, each name's points in time order. Lines of other
    signals are passed over undecoded; unreadable metrics lines and files are counted in `stats`."""
    stats = stats if stats is not None else ReadStats()
    found: dict[str, list[MetricPoint]] = {}
    for file in find_log_files(path, stats):
        for line in _lines(file, stats):
            if b'"resourceMetrics"' not in line:
                continue
            try:
                points = decode_metrics(line)
            except (ValueError, TypeError, RecursionError):
                stats.bad_line(file)
                continue
            for point in points:
                found.setdefault(point.name, []).append(point)
    for points in found.values():
        points.sort(key=_point_time)
    return found


def _point_time(point: MetricPoint) -> int:
    return point.time_unix_nano


def _lines(path: Path, stats: ReadStats) -> Iterator[bytes]:
    """The lines of one whole file, plain or gzip; a file that cannot be read is counted, never raised."""
    try:
        with (gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")) as handle:
            yield from handle
    except FileNotFoundError:
        return  # rotated away or deleted since it was listed
    except (OSError, EOFError, zlib.error) as exc:
        stats.unreadable(path, getattr(exc, "strerror", None) or exc)


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

    def read(self, log_filter: LogFilter, stats: ReadStats, *, final: bool) -> Iterator[Record]:
        """The matching log records of what was appended since the last read; span lines are not log lines."""
        for chunk in self.chunks(stats, final=final, spans=False):
            for record in chunk.records:
                if log_filter.matches(record):
                    yield record

    def chunks(self, stats: ReadStats, *, final: bool, spans: bool = True) -> Iterator[Chunk]:
        """A chunk a line read since the last call (span lines decoded only when `spans`)."""
        if self.done:
            return
        if self.compressed:
            self.done = True
            yield from self._read_gzip(stats, spans)
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
                for line in handle:
                    start = self.offset
                    if not line.strip():
                        self.offset += len(line)
                        continue
                    decoded = _decoded(line, spans)
                    if decoded is None:
                        if not (line.endswith(b"\n") or final):
                            self.pending = True  # a writer mid-write: read it again next time
                            break
                        stats.bad_line(self.path)
                    self.offset += len(line)
                    yield _chunk(decoded, start, self.offset)
            except OSError as exc:
                stats.unreadable(self.path, exc.strerror or exc)

    def _read_gzip(self, stats: ReadStats, spans: bool) -> Iterator[Chunk]:
        position = 0
        try:
            with gzip.open(self.path, "rb") as handle:
                for line in handle:
                    start, position = position, position + len(line)
                    if start < self.offset or not line.strip():
                        continue
                    decoded = _decoded(line, spans)
                    if decoded is None:
                        stats.bad_line(self.path)
                    self.offset = position
                    yield _chunk(decoded, start, position)
        except FileNotFoundError:
            return
        except (OSError, EOFError, zlib.error) as exc:  # not gzip, or cut short
            stats.unreadable(self.path, getattr(exc, "strerror", None) or exc)


def _chunk(decoded: Decoded | None, start: int, end: int) -> Chunk:
    if decoded is None:
        return Chunk(BAD, [], [], start, end)
    return Chunk(decoded.kind, decoded.records, decoded.spans, start, end)


def _last(records: Iterable[Record], limit: int | None) -> list[Record]:
    """In time order; with a limit, only the last `limit`, keeping no more than that many in memory."""
    if limit is None:
        return sorted(records, key=_time)
    return sorted(heapq.nlargest(limit, records, key=_time), key=_time)


def _time(record: Record) -> int:
    return record.time_unix_nano


class _Files:
    """The files of a directory (or one file), each with its read position, tracked by inode: a file a
    Collector renames while rotating keeps its position; a gone file is forgotten, so a reused inode starts
    from 0; a `.gz` file that appears after the first listing is never read (it holds what was already read
    under its uncompressed name)."""

    def __init__(self, path: str | os.PathLike[str], stats: ReadStats | None = None) -> None:
        self.path = Path(path)
        self.stats = stats if stats is not None else ReadStats()
        self._files: dict[tuple[int, int], _FileTail] = {}
        self._first = True

    def _tails(self) -> list[_FileTail]:
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
        self._files = seen
        return list(seen.values())

    def finish(self) -> None:
        """Count the incomplete last lines still waiting as unreadable (a follower stopping)."""
        for tail in self._files.values():
            if tail.pending:
                tail.pending = False
                self.stats.bad_line(tail.path)


class LogTail(_Files):
    """The log files of a directory (or one file), read incrementally.

    The first `read()` returns the matching records already there; each later one returns what was
    appended since, including files that appeared. Files are tracked by inode, so a file a Collector
    renames while rotating is continued, not read again; a file truncated in place is read from its
    start. Compressed rotated files (`*.gz`) are read by the first `read()` only: one that appears
    later holds what was already read under its uncompressed name. Span lines are not log lines:
    skipped undecoded, never counted.
    """

    def __init__(self, path: str | os.PathLike[str], log_filter: LogFilter | None = None,
                 stats: ReadStats | None = None) -> None:
        super().__init__(path, stats)
        self.filter = log_filter or LogFilter()

    def read(self, *, limit: int | None = None, final: bool = False) -> list[Record]:
        """New matching records in time order (the last `limit` of them when given). With
        `final=True`, an incomplete last line counts as unreadable instead of waiting for the
        rest of it. Raises `FileNotFoundError` when the path does not exist."""
        return _last(self._read(final), limit)

    def _read(self, final: bool) -> Iterator[Record]:
        for tail in self._tails():
            yield from tail.read(self.filter, self.stats, final=final)


class ChunkTail(_Files):
    """Every OTLP-JSON file of a directory (or one file), logs and traces alike, read incrementally, each
    file once: what an indexer wants. Files are followed as `LogTail` follows them (by inode, rotation,
    truncation, `.gz` read by the first `read()` only)."""

    def read(self, *, final: bool = False) -> Iterator[tuple[Path, Chunk]]:
        """(file, chunk) for every line appended since the last read, file by file, in file order. With
        `final=True`, an incomplete last line is a bad line instead of waiting for the rest of it. Raises
        `FileNotFoundError` when the path does not exist at the first read."""
        for tail in self._tails():
            for chunk in tail.chunks(self.stats, final=final):
                yield tail.path, chunk


def read_records(path: str | os.PathLike[str], log_filter: LogFilter | None = None, *,
                 stats: ReadStats | None = None) -> Iterator[Record]:
    """Every matching record under `path` (a directory or one file), streamed in file order, not sorted."""
    stats = stats if stats is not None else ReadStats()
    for file in find_log_files(path, stats):
        yield from read_file(file, log_filter, stats)


def read_logs(path: str | os.PathLike[str], log_filter: LogFilter | None = None, *,
              limit: int | None = None, stats: ReadStats | None = None) -> list[Record]:
    """Every matching record under `path` in time order (the last `limit` when given)."""
    return LogTail(path, log_filter, stats).read(limit=limit, final=True)


__all__ = [
    "BAD",
    "LOGS",
    "OTHER",
    "TRACES",
    "Chunk",
    "ChunkTail",
    "LogFilter",
    "LogTail",
    "ReadStats",
    "find_log_files",
    "read_chunks",
    "read_file",
    "read_logs",
    "read_metrics",
    "read_records",
    "read_spans",
]
