"""The view's index: the OTLP-JSON files of a directory in SQLite, built once and then incrementally.

`Index(directory).refresh()` reads what was appended since the last refresh and stores every record (and every
span, once span lines are read) with its session, so a session's page is an indexed lookup however large the
directory. Per file it remembers the inode, size and offset it got to:

- a file renamed by a rotating writer (a Collector) keeps its inode and is continued, not read again;
- a file truncated in place is read again from its start;
- a last line without its newline (a writer mid-write) waits until it is complete; one that parses and has not
  grown by the next refresh (a writer that ended without a newline) is indexed then;
- a `.gz` file is read whole (again only when its size changes);
- a line identical to one already indexed (a rotated file that reappears compressed, a copy) is not indexed twice;
- an unreadable line is counted (and the first few remembered, with their offsets), never fatal.

Sessions are kept as running aggregates (records, warnings, errors, first and last time, services), so the
list of sessions does not scan the records. Debug-grant audit records (logger `otel_session.audit`) and the
debug buffer's flushed records (`otel_session.buffered`) are kept as a session's events.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import gzip
import hashlib
import itertools
import json
import multiprocessing
import os
import shutil
import sqlite3
import tempfile
import threading
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from otel_session._keys import BUFFERED, EVICTED, SESSION_ID, USER_ID
from otel_session.log_reader import ReadStats, Record, Span, decode_line, find_log_files, iso_time

SCHEMA_VERSION = 2
CHUNK = 4 << 20  # bytes read at a time
PARALLEL_BYTES = 64 << 20  # a refresh with this much new to read decodes its lines in worker processes
PARALLEL_CHUNK = 32 << 20  # bytes read at a time then
PARALLEL_LINES = 4  # lines a worker decodes per task
MAX_WORKERS = 4
COMMIT_EVERY = 50_000  # rows per transaction during a long build
MAX_SKIPPED_KEPT = 20  # unreadable lines remembered per file (all are counted)
MAX_SESSION_RECORDS = 20_000  # records one session answer carries at most (the last ones)
MAX_SESSION_SPANS = 20_000
MAX_SEARCH_MATCHES = 100_000  # a text search looks at the records that match it, newest first, up to this many

AUDIT_LOGGER = "otel_session.audit"
AUDIT_EVENT = "otel_session.audit.event"
WARN, ERROR = 13, 17

FLAG_BUFFERED = 1
FLAG_EVICTED = 2
FLAG_AUDIT = 4

_SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE files(
    id INTEGER PRIMARY KEY, path TEXT NOT NULL, dev INTEGER, ino INTEGER, size INTEGER NOT NULL DEFAULT 0,
    offset INTEGER NOT NULL DEFAULT 0, gz INTEGER NOT NULL DEFAULT 0, pending INTEGER NOT NULL DEFAULT -1,
    lines INTEGER NOT NULL DEFAULT 0, records INTEGER NOT NULL DEFAULT 0, spans INTEGER NOT NULL DEFAULT 0,
    skipped INTEGER NOT NULL DEFAULT 0, duplicates INTEGER NOT NULL DEFAULT 0, error TEXT,
    gone INTEGER NOT NULL DEFAULT 0);
CREATE TABLE skipped(file_id INTEGER NOT NULL, offset INTEGER NOT NULL, reason TEXT NOT NULL);
CREATE TABLE lines(hash INTEGER PRIMARY KEY);
CREATE TABLE records(
    id INTEGER PRIMARY KEY, gen INTEGER NOT NULL, time INTEGER NOT NULL, severity INTEGER NOT NULL,
    level TEXT NOT NULL, service TEXT NOT NULL, logger TEXT NOT NULL, message TEXT NOT NULL,
    session_id TEXT, user_id TEXT, trace_id TEXT, span_id TEXT, flags INTEGER NOT NULL, attributes TEXT NOT NULL);
CREATE INDEX records_session ON records(session_id, time) WHERE session_id IS NOT NULL;
CREATE TABLE sessions(
    session_id TEXT PRIMARY KEY, user_id TEXT, records INTEGER NOT NULL, warnings INTEGER NOT NULL,
    errors INTEGER NOT NULL, first INTEGER NOT NULL, last INTEGER NOT NULL, buffered INTEGER NOT NULL,
    gen INTEGER NOT NULL);
CREATE INDEX sessions_last ON sessions(last);
CREATE TABLE session_services(
    session_id TEXT NOT NULL, service TEXT NOT NULL, records INTEGER NOT NULL,
    PRIMARY KEY(session_id, service)) WITHOUT ROWID;
CREATE TABLE grant_events(
    id INTEGER PRIMARY KEY, gen INTEGER NOT NULL, record_id INTEGER NOT NULL, time INTEGER NOT NULL,
    event TEXT NOT NULL, grant_id TEXT NOT NULL, session_id TEXT, user_id TEXT, level TEXT, expires_at REAL,
    service TEXT NOT NULL, by TEXT, reason TEXT);
CREATE TABLE spans(
    id INTEGER PRIMARY KEY, gen INTEGER NOT NULL, trace_id TEXT NOT NULL, span_id TEXT NOT NULL,
    parent_span_id TEXT, name TEXT NOT NULL, service TEXT NOT NULL, start INTEGER NOT NULL, end INTEGER NOT NULL,
    session_id TEXT, data TEXT NOT NULL);
CREATE INDEX spans_trace ON spans(trace_id);
CREATE INDEX spans_session ON spans(session_id) WHERE session_id IS NOT NULL;
CREATE TABLE span_links(trace_id TEXT NOT NULL, linked_trace_id TEXT NOT NULL);
CREATE INDEX links_from ON span_links(trace_id);
CREATE INDEX links_to ON span_links(linked_trace_id);
"""
# The messages of session records, for search: substrings of 3 characters or more are found through the
# index (SQLite's FTS5 trigram tokenizer, 3.34 and later); without it a search scans the records.
_TEXTS = ("CREATE VIRTUAL TABLE texts USING fts5(message, content='records', content_rowid='id', "
          "tokenize='trigram', detail='none')")


@dataclass
class IndexStats:
    """What one `refresh()` read: files looked at, lines, records and spans indexed, lines skipped as
    unreadable, duplicate lines not indexed again, bytes read, and how long it took."""

    files: int = 0
    lines: int = 0
    records: int = 0
    spans: int = 0
    skipped_lines: int = 0
    duplicate_lines: int = 0
    bytes_read: int = 0
    seconds: float = 0.0
    generation: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _line_hash(line: bytes) -> int:
    """A line's identity for de-duplication: 64 bits of BLAKE2b, as a signed SQLite integer."""
    return int.from_bytes(hashlib.blake2b(line, digest_size=8).digest(), "big", signed=True)


def _ms(time_unix_nano: int) -> float:
    return time_unix_nano / 1e6


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# One record as stored (after the generation): time, severity, level, service, logger, message, session id,
# user id, trace id, span id, flags, attributes (JSON, without session.id and user.id).
RecordRow = tuple[int, int, str, str, str, str, "str | None", "str | None", "str | None", "str | None", int, str]
# One span as stored: trace id, span id, parent span id, name, service, start, end, session id, the span (JSON).
SpanRow = tuple[str, str, "str | None", str, str, int, int, "str | None", str]
# What one line gives: record rows, span rows, links between traces (from, to), or why it is unreadable.
Decoded = tuple[list[RecordRow], list[SpanRow], list[tuple[str, str]], "str | None"]


def _record_row(record: Record) -> RecordRow:
    attributes = record.attributes
    session_id = attributes.get(SESSION_ID)
    user_id = attributes.get(USER_ID)
    flags = 0
    if attributes.get(BUFFERED) is True:
        flags |= FLAG_BUFFERED
    if EVICTED in attributes:
        flags |= FLAG_EVICTED
    if record.logger == AUDIT_LOGGER and isinstance(attributes.get(AUDIT_EVENT), str):
        flags |= FLAG_AUDIT
    others = {k: v for k, v in attributes.items() if k != SESSION_ID and k != USER_ID}
    return (record.time_unix_nano, record.severity_number, record.level, record.service, record.logger,
            record.message, session_id if isinstance(session_id, str) and session_id else None,
            user_id if isinstance(user_id, str) and user_id else None, record.trace_id, record.span_id, flags,
            json.dumps(others, ensure_ascii=False, separators=(",", ":")) if others else "{}")


def _span_row(span: Span) -> SpanRow:
    session_id = span.attributes.get(SESSION_ID)
    return (span.trace_id, span.span_id, span.parent_span_id, span.name, span.service, span.start_unix_nano,
            span.end_unix_nano, session_id if isinstance(session_id, str) and session_id else None,
            json.dumps(span.as_dict(), ensure_ascii=False, separators=(",", ":")))


def _decode(line: bytes) -> Decoded:
    """One line as rows to store (run in worker processes during a large build)."""
    try:
        decoded = decode_line(line)
    except (ValueError, TypeError, RecursionError) as exc:
        return [], [], [], _reason(exc)
    links = [(span.trace_id, link.trace_id) for span in decoded.spans for link in span.links
             if link.trace_id and link.trace_id != span.trace_id]
    return [_record_row(r) for r in decoded.records], [_span_row(s) for s in decoded.spans], links, None


def _decode_many(lines: list[bytes]) -> list[Decoded]:
    return [_decode(line) for line in lines]


class _ClosedError(Exception):
    """`close()` was called during a refresh: roll it back and stop."""


class _Batch:
    """Rows waiting for one transaction, and the per-session aggregates they change."""

    def __init__(self) -> None:
        self.records: list[tuple[Any, ...]] = []
        self.audit: list[int] = []  # indexes in self.records of audit records
        self.spans: list[tuple[Any, ...]] = []
        self.links: list[tuple[str, str]] = []
        # session -> [user_id, records, warnings, errors, first, last, buffered]
        self.sessions: dict[str, list[Any]] = {}
        self.services: dict[tuple[str, str], int] = {}

    def __len__(self) -> int:
        return len(self.records) + len(self.spans)


class Index:
    """A SQLite index of the OTLP-JSON files under `directory` (or of one file).

    `db_path`: where the index lives; None keeps it in a temporary file removed by `close()`. A kept index is
    continued by the next `Index` over the same directory (an index of another directory, or of an older
    schema, is rebuilt). Safe to share between threads: every call holds one lock.
    """

    def __init__(self, directory: str | os.PathLike[str], db_path: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory)
        self._tempdir: str | None = None
        if db_path is None:
            self._tempdir = tempfile.mkdtemp(prefix="otel-session-view-")
            db_path = Path(self._tempdir, "index.sqlite3")
        self.db_path = Path(db_path)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=OFF")  # a cache: a crash costs a rebuild, never wrong data
        self._db.execute("PRAGMA temp_store=MEMORY")
        self._db.execute("PRAGMA cache_size=-65536")  # 64 MiB
        self._init_schema()
        # Answers come from a second connection: with WAL it reads the last committed state while a long
        # refresh writes, so the view answers during a first build of a large directory.
        self._rd = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None)
        self._rd.execute("PRAGMA query_only = ON")
        self._rd.execute("PRAGMA cache_size=-65536")
        self._read_lock = threading.RLock()
        self._generation = int(self._meta("generation") or 0)
        self._committed = self._generation
        self._closing = False
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self.parallel = True  # a large refresh may decode in worker processes
        self._texts = self._db.execute("SELECT 1 FROM sqlite_master WHERE name = 'texts'").fetchone() is not None
        self.last_refresh: IndexStats | None = None
        self.last_refresh_at: float | None = None
        self.totals = IndexStats()

    # --- setup -------------------------------------------------------------------------------------------

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _init_schema(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        source = str(self.directory.resolve())
        if version == SCHEMA_VERSION and self._meta("directory") == source:
            return
        tables = [row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        self._db.execute("BEGIN")
        for table in tables:
            self._db.execute(f'DROP TABLE IF EXISTS "{table}"')
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                self._db.execute(statement)
        with contextlib.suppress(sqlite3.OperationalError):  # an SQLite without FTS5 or its trigram tokenizer
            self._db.execute(_TEXTS)
        self._db.execute("INSERT INTO meta VALUES ('directory', ?), ('generation', '0')", (source,))
        self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self._db.execute("COMMIT")

    def close(self) -> None:
        """Stop a refresh in progress (rolled back: nothing half-read stays), close, remove a temporary index."""
        self._closing = True
        with self._lock, self._read_lock:
            with contextlib.suppress(sqlite3.Error):
                self._rd.close()
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            if self._tempdir is not None:
                shutil.rmtree(self._tempdir, ignore_errors=True)
                self._tempdir = None

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def generation(self) -> int:
        """The last finished `refresh()`'s number; rows carry the generation that indexed them (the `after`
        cursor)."""
        return self._committed

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[None]:
        """One read transaction: every query of an answer sees the same committed state."""
        if self._rd.in_transaction:  # nested (an answer built from others)
            yield
            return
        self._rd.execute("BEGIN")
        try:
            yield
        finally:
            self._rd.execute("COMMIT")

    # --- reading files -----------------------------------------------------------------------------------

    def refresh(self) -> IndexStats:
        """Index what was added to the files since the last refresh. Raises `FileNotFoundError` when the
        directory does not exist (any other problem is counted in the stats and in `status()`)."""
        with self._lock:
            if self._closing:
                return IndexStats(generation=self._committed)
            started = time.perf_counter()
            self._generation += 1
            stats = IndexStats(generation=self._generation)
            read_stats = ReadStats()
            paths = find_log_files(self.directory, read_stats)
            batch = _Batch()
            self._pool = self._workers(paths)
            self._db.execute("BEGIN")
            try:
                seen: set[int] = set()
                for path in paths:
                    file_id = self._track(path, seen, stats)
                    if file_id is None:
                        continue
                    stats.files += 1
                    batch = self._read_file(file_id, path, stats, batch)
                # files not listed any more: forget their inode (a new file may reuse it), keep their records
                for (file_id,) in self._db.execute("SELECT id FROM files WHERE gone = 0").fetchall():
                    if file_id not in seen:
                        self._db.execute("UPDATE files SET gone = 1, dev = NULL, ino = NULL WHERE id = ?", (file_id,))
                for bad_path, reason in read_stats.unreadable_files.items():
                    self._file_error(bad_path, reason)
                self._flush(batch)
                self._db.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (str(self._generation),))
                self._db.execute("COMMIT")
                self._committed = self._generation
            except _ClosedError:
                self._db.execute("ROLLBACK")
                return stats
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            finally:
                if self._pool is not None:
                    self._pool.shutdown(wait=False, cancel_futures=True)
                    self._pool = None
            stats.seconds = time.perf_counter() - started
            self.last_refresh, self.last_refresh_at = stats, time.time()
            for name in ("files", "lines", "records", "spans", "skipped_lines", "duplicate_lines", "bytes_read"):
                setattr(self.totals, name, getattr(self.totals, name) + getattr(stats, name))
            self.totals.files = stats.files
            self.totals.seconds += stats.seconds
            self.totals.generation = self._generation
            return stats

    def _workers(self, paths: Sequence[Path]) -> concurrent.futures.ProcessPoolExecutor | None:
        """Worker processes that decode lines, when this refresh has much to read and there is more than one
        core; else None (lines are decoded here)."""
        cores = os.cpu_count() or 1
        if cores < 2 or not self.parallel:
            return None
        todo = 0
        for path in paths:
            with contextlib.suppress(OSError):
                todo += path.stat().st_size
        known = self._db.execute("SELECT coalesce(sum(offset), 0) FROM files WHERE gone = 0").fetchone()[0]
        if todo - known < PARALLEL_BYTES:
            return None
        # spawned, not forked: this process has threads (the server's) and open SQLite connections
        try:
            return concurrent.futures.ProcessPoolExecutor(max_workers=min(cores, MAX_WORKERS),
                                                          mp_context=multiprocessing.get_context("spawn"))
        except (OSError, ValueError):  # no processes to be had: decode here
            return None

    def _file_error(self, path: str, reason: str) -> None:
        row = self._db.execute("SELECT id FROM files WHERE path = ? ORDER BY id DESC", (path,)).fetchone()
        if row is None:
            self._db.execute("INSERT INTO files(path, error, gone) VALUES (?, ?, 1)", (path, reason))
        else:
            self._db.execute("UPDATE files SET error = ? WHERE id = ?", (reason, row[0]))

    def _track(self, path: Path, seen: set[int], stats: IndexStats) -> int | None:
        """The file's row (by device and inode, so a renamed file keeps its position), made if new. A link
        to a file outside the directory is not read."""
        try:
            if path.is_symlink() and self.directory.is_dir() and \
                    not path.resolve().is_relative_to(self.directory.resolve()):
                self._file_error(str(path), "a link to a file outside the directory: not read")
                return None
            info = path.stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._file_error(str(path), exc.strerror or str(exc))
            return None
        row = self._db.execute("SELECT id, path FROM files WHERE dev = ? AND ino = ? AND gone = 0",
                               (info.st_dev, info.st_ino)).fetchone()
        if row is None:
            cursor = self._db.execute("INSERT INTO files(path, dev, ino, gz) VALUES (?, ?, ?, ?)",
                                      (str(path), info.st_dev, info.st_ino, int(path.name.endswith(".gz"))))
            file_id = int(cursor.lastrowid or 0)
        else:
            file_id = int(row[0])
            if file_id in seen:  # a hard link to a file already listed
                return None
            if row[1] != str(path):  # renamed (rotated): same file, same position
                self._db.execute("UPDATE files SET path = ? WHERE id = ?", (str(path), file_id))
        seen.add(file_id)
        return file_id

    def _read_file(self, file_id: int, path: Path, stats: IndexStats, batch: _Batch) -> _Batch:
        size, offset, gz, pending = self._db.execute(
            "SELECT size, offset, gz, pending FROM files WHERE id = ?", (file_id,)).fetchone()
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            return batch
        except OSError as exc:
            self._db.execute("UPDATE files SET error = ? WHERE id = ?", (exc.strerror or str(exc), file_id))
            return batch
        counts = {"lines": 0, "records": 0, "spans": 0, "skipped": 0, "duplicates": 0}
        error: str | None = None
        with handle:
            now = os.fstat(handle.fileno()).st_size
            if gz:
                if now == size and offset:  # read whole already, and unchanged since
                    return batch
                try:
                    with gzip.GzipFile(fileobj=handle) as unzipped:
                        numbered = _numbered(unzipped)
                        while part := list(itertools.islice(numbered, 256)):
                            batch = self._lines(file_id, part, counts, stats, batch)
                except (OSError, EOFError, zlib.error) as exc:  # not gzip, or cut short (still being written)
                    error = str(exc) or type(exc).__name__
                stats.bytes_read += now
                size, offset, pending = now, now, -1
            else:
                if now < offset:  # truncated in place: read it again from the start
                    offset, pending = 0, -1
                if now == offset:
                    return batch
                handle.seek(offset)
                rest = b""
                read_to = offset
                while True:
                    chunk = handle.read(CHUNK if self._pool is None else PARALLEL_CHUNK)
                    if not chunk:
                        break
                    stats.bytes_read += len(chunk)
                    data = rest + chunk if rest else chunk
                    lines = data.split(b"\n")
                    rest = lines.pop()
                    pairs = []
                    for line in lines:
                        pairs.append((read_to, line))
                        read_to += len(line) + 1
                    batch = self._lines(file_id, pairs, counts, stats, batch)
                end = read_to + len(rest)
                if rest.strip():
                    # a last line without its newline: a writer mid-write. Indexed once it is complete, or
                    # when it parses and the file has not grown since the last refresh (the writer ended).
                    if pending == end and _parses(rest):
                        batch = self._lines(file_id, [(read_to, rest)], counts, stats, batch)
                        read_to, pending = end, -1
                    else:
                        pending = end
                else:
                    read_to, pending = end, -1
                size, offset = end, read_to
        self._db.execute(
            "UPDATE files SET size = ?, offset = ?, pending = ?, lines = lines + ?, records = records + ?, "
            "spans = spans + ?, skipped = skipped + ?, duplicates = duplicates + ?, error = ? WHERE id = ?",
            (size, offset, pending, counts["lines"], counts["records"], counts["spans"], counts["skipped"],
             counts["duplicates"], error, file_id))
        return batch

    def _lines(self, file_id: int, lines: Iterable[tuple[int, bytes]], counts: dict[str, int], stats: IndexStats,
               batch: _Batch) -> _Batch:
        """Index these (offset, line) pairs of one file; a line already indexed is a duplicate."""
        if self._closing:
            raise _ClosedError
        fresh: list[tuple[int, bytes, int]] = []
        copies: dict[int, list[int]] = {}  # lines here identical to one waiting to be decoded: their offsets
        for offset, raw in lines:
            line = raw.strip()
            if not line:
                continue
            counts["lines"] += 1
            stats.lines += 1
            digest = _line_hash(line)
            if self._db.execute("INSERT OR IGNORE INTO lines VALUES (?)", (digest,)).rowcount == 1:
                fresh.append((offset, line, digest))
                copies[digest] = []
            elif digest in copies:
                copies[digest].append(offset)
            else:
                counts["duplicates"] += 1
                stats.duplicate_lines += 1
        decoded = self._decode_all([line for _, line, _ in fresh])
        for (offset, _, digest), (records, spans, links, error) in zip(fresh, decoded, strict=True):
            if self._closing:
                raise _ClosedError
            again = copies[digest]
            if error is not None:  # unreadable, and so is each copy of it
                self._db.execute("DELETE FROM lines WHERE hash = ?", (digest,))  # a mended copy may come
                for at in (offset, *again):
                    self._skipped(file_id, at, error, counts, stats)
                continue
            counts["duplicates"] += len(again)
            stats.duplicate_lines += len(again)
            for row in records:
                self._add_record(row, batch)
            generation = self._generation
            batch.spans.extend((generation, *row) for row in spans)
            batch.links.extend(links)
            counts["records"] += len(records)
            counts["spans"] += len(spans)
            stats.records += len(records)
            stats.spans += len(spans)
            if len(batch) >= COMMIT_EVERY:
                self._flush(batch)
                self._db.execute("COMMIT")
                self._db.execute("BEGIN")
                batch = _Batch()
        return batch

    def _skipped(self, file_id: int, offset: int, reason: str, counts: dict[str, int], stats: IndexStats) -> None:
        counts["skipped"] += 1
        stats.skipped_lines += 1
        if self._db.execute("SELECT count(*) FROM skipped WHERE file_id = ?", (file_id,)).fetchone()[0] \
                < MAX_SKIPPED_KEPT:
            self._db.execute("INSERT INTO skipped VALUES (?, ?, ?)", (file_id, offset, reason))

    def _decode_all(self, lines: list[bytes]) -> Iterator[Decoded]:
        """The lines decoded in order: by the worker processes of a large build, else here."""
        pool = self._pool
        if pool is None or len(lines) < 2:
            yield from map(_decode, lines)
            return
        parts = [lines[i:i + PARALLEL_LINES] for i in range(0, len(lines), PARALLEL_LINES)]
        try:
            futures = [pool.submit(_decode_many, part) for part in parts]
        except Exception:  # the workers could not start (or broke): decode here from now on
            pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
            yield from map(_decode, lines)
            return
        for part, future in zip(parts, futures, strict=True):
            try:
                results = future.result()
            except Exception:  # a worker died, or could not start: decode here
                results = _decode_many(part)
            yield from results

    def _add_record(self, row: RecordRow, batch: _Batch) -> None:
        flags = row[10]
        if flags & FLAG_AUDIT:
            batch.audit.append(len(batch.records))
        batch.records.append((self._generation, *row))
        session_id = row[6]
        if session_id is None:
            return
        user_id = row[7]
        aggregate = batch.sessions.get(session_id)
        stamp = row[0]
        if aggregate is None:
            aggregate = batch.sessions[session_id] = [user_id, 0, 0, 0, stamp, stamp, 0]
        elif aggregate[0] is None:
            aggregate[0] = user_id
        aggregate[1] += 1
        severity = row[1]
        if severity >= ERROR:
            aggregate[3] += 1
        elif severity >= WARN:
            aggregate[2] += 1
        if stamp < aggregate[4]:
            aggregate[4] = stamp
        if stamp > aggregate[5]:
            aggregate[5] = stamp
        if flags & FLAG_BUFFERED:
            aggregate[6] = 1
        key = (session_id, row[3])
        batch.services[key] = batch.services.get(key, 0) + 1

    def _flush(self, batch: _Batch) -> None:
        db = self._db
        if batch.records:
            cursor = db.execute("SELECT coalesce(max(id), 0) FROM records")
            first_id = int(cursor.fetchone()[0]) + 1
            db.executemany(
                "INSERT INTO records(gen, time, severity, level, service, logger, message, session_id, user_id, "
                "trace_id, span_id, flags, attributes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                batch.records)
            if self._texts:
                db.execute("INSERT INTO texts(rowid, message) SELECT id, message FROM records "
                           "WHERE id >= ? AND session_id IS NOT NULL", (first_id,))
            audit_rows = []
            for position in batch.audit:
                row = batch.records[position]
                attributes = json.loads(row[12])
                expires = attributes.get("otel_session.grant.expires_at")
                audit_rows.append((
                    self._generation, first_id + position, row[1], str(attributes[AUDIT_EVENT]),
                    str(attributes.get("otel_session.grant_id", "")),
                    _text(attributes.get("otel_session.grant.session_id")),
                    _text(attributes.get("otel_session.grant.user_id")),
                    _text(attributes.get("otel_session.grant.level")),
                    float(expires) if isinstance(expires, (int, float)) and not isinstance(expires, bool) else None,
                    _text(attributes.get("otel_session.service")) or row[4],
                    _text(attributes.get("otel_session.audit.by")),
                    _text(attributes.get("otel_session.grant.reason")),
                ))
            db.executemany(
                "INSERT INTO grant_events(gen, record_id, time, event, grant_id, session_id, user_id, level, "
                "expires_at, service, by, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", audit_rows)
        if batch.spans:
            db.executemany(
                "INSERT INTO spans(gen, trace_id, span_id, parent_span_id, name, service, start, end, session_id, "
                "data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", batch.spans)
            db.executemany("INSERT INTO span_links VALUES (?, ?)", batch.links)
        if batch.sessions:
            db.executemany(
                "INSERT INTO sessions(session_id, user_id, records, warnings, errors, first, last, buffered, gen) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(session_id) DO UPDATE SET "
                "user_id = coalesce(user_id, excluded.user_id), records = records + excluded.records, "
                "warnings = warnings + excluded.warnings, errors = errors + excluded.errors, "
                "first = min(first, excluded.first), last = max(last, excluded.last), "
                "buffered = max(buffered, excluded.buffered), gen = excluded.gen",
                [(sid, *values, self._generation) for sid, values in batch.sessions.items()])
            db.executemany(
                "INSERT INTO session_services VALUES (?, ?, ?) ON CONFLICT(session_id, service) DO UPDATE SET "
                "records = records + excluded.records",
                [(sid, service, count) for (sid, service), count in batch.services.items()])

    # --- answers -----------------------------------------------------------------------------------------

    def sessions(self, query: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
        """Sessions, newest (last record) first: up to `limit`. `query` keeps those whose session id or user
        id contains it, or with a record whose message contains it (any case for ASCII letters; of a text
        that most records hold, the newest 100,000 such records are looked at)."""
        with self._read_lock, self._snapshot():
            limit = max(0, int(limit))
            if query is None or not query.strip():
                rows = self._rd.execute(
                    "SELECT session_id, user_id, records, warnings, errors, first, last, buffered FROM sessions "
                    "ORDER BY last DESC LIMIT ?", (limit,)).fetchall()
            else:
                rows = self._search(query.strip(), limit)
            if not rows:
                return []
            services = self._services([row[0] for row in rows])
            grants = self._grant_windows()
            return [self._summary(row, services.get(row[0], []), grants) for row in rows]

    def _search(self, text: str, limit: int) -> list[tuple[Any, ...]]:
        pattern = _like(text)
        columns = "session_id, user_id, records, warnings, errors, first, last, buffered"
        found = self._rd.execute(
            f"SELECT {columns} FROM sessions WHERE session_id LIKE ?1 ESCAPE '\\' OR user_id LIKE ?1 ESCAPE '\\'",
            (pattern,)).fetchall()
        if self._texts and len(text) >= 3 and not any(c in text for c in "%_\\"):
            # the trigram index answers LIKE without ESCAPE; nothing in the text needs escaping
            matching = f"SELECT rowid FROM texts WHERE message LIKE ?1 ORDER BY rowid DESC LIMIT {MAX_SEARCH_MATCHES}"
            pattern = f"%{text}%"
        else:
            matching = ("SELECT id FROM records WHERE session_id IS NOT NULL AND message LIKE ?1 ESCAPE '\\' "
                        f"ORDER BY id DESC LIMIT {MAX_SEARCH_MATCHES}")
        found += self._rd.execute(
            f"SELECT {columns} FROM sessions WHERE session_id IN "
            f"(SELECT DISTINCT session_id FROM records WHERE id IN ({matching}))", (pattern,)).fetchall()
        unique = {row[0]: row for row in found}
        return sorted(unique.values(), key=lambda row: (row[6], row[0]), reverse=True)[:limit]

    def _read_generation(self) -> int:
        """The generation of the last refresh whose rows this read sees whole."""
        row = self._rd.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(row[0]) if row else 0

    def _services(self, session_ids: Sequence[str]) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for start in range(0, len(session_ids), 500):
            part = session_ids[start:start + 500]
            marks = ",".join("?" * len(part))
            for sid, service in self._rd.execute(
                    f"SELECT session_id, service FROM session_services WHERE session_id IN ({marks}) "
                    "ORDER BY session_id, service", part):
                found.setdefault(sid, []).append(service)
        return found

    def _grant_windows(self) -> dict[str, tuple[str | None, str | None, int, int]]:
        """Each debug grant seen in an audit record: (session id, user id, from, to) in Unix nanoseconds,
        from its first audit record to its expiry (or its revocation, when that came first)."""
        grants: dict[str, list[Any]] = {}
        for grant_id, event, at, sid, uid, expires in self._rd.execute(
                "SELECT grant_id, event, time, session_id, user_id, expires_at FROM grant_events ORDER BY time"):
            window = grants.get(grant_id)
            end = int(expires * 1e9) if expires is not None else at
            if window is None:
                window = grants[grant_id] = [sid, uid, at, end]
            window[0] = window[0] or sid
            window[1] = window[1] or uid
            window[2] = min(window[2], at)
            window[3] = at if event in ("revoked", "expired") else max(window[3], end)
        return {grant_id: (w[0], w[1], w[2], w[3]) for grant_id, w in grants.items()}

    @staticmethod
    def _granted(session_id: str, user_id: str | None, first: int, last: int,
                 grants: Iterable[tuple[str | None, str | None, int, int]]) -> bool:
        """Whether a debug grant for this session, or for its user, was live while it logged."""
        for sid, uid, start, end in grants:
            if (sid == session_id or (uid is not None and uid == user_id)) and start <= last and end >= first:
                return True
        return False

    def _summary(self, row: Sequence[Any], services: list[str],
                 grants: dict[str, tuple[str | None, str | None, int, int]]) -> dict[str, Any]:
        sid, uid, records, warnings, errors, first, last, buffered = row
        return {
            "session_id": sid,
            "user_id": uid,
            "services": services,
            "records": records,
            "warnings": warnings,
            "errors": errors,
            "first": iso_time(first),
            "last": iso_time(last),
            "buffered": bool(buffered),
            "granted": self._granted(sid, uid, first, last, grants.values()),
        }

    def session(self, session_id: str, after: int | None = None) -> dict[str, Any] | None:
        """One session: its summary (the number of records as `record_count`), `records` (in time order,
        each `Record.as_dict()` with `id`, `severity_number` and `time_ms` added), `spans` (every span of the
        traces its records belong to, and of the traces linked to those), `traces` and `events` (debug grants,
        buffer flushes).
        `after`: a `generation` from an earlier answer; then only the records and spans indexed since come
        back (the summary, `traces` and `events` are always whole): the page follows a session this way.
        None when no record carries this session id."""
        with self._read_lock, self._snapshot():
            row = self._rd.execute(
                "SELECT session_id, user_id, records, warnings, errors, first, last, buffered FROM sessions "
                "WHERE session_id = ?", (session_id,)).fetchone()
            if row is None:
                return None
            since = -1 if after is None else int(after)
            grants = self._grant_windows()
            answer = self._summary(row, self._services([session_id]).get(session_id, []), grants)
            answer["generation"] = self._read_generation()
            answer["record_count"] = answer.pop("records")  # `records` is the list below
            records = self._records(session_id, since)
            answer["truncated"] = len(records) > MAX_SESSION_RECORDS
            records = records[-MAX_SESSION_RECORDS:]
            answer["records"] = [_record_dict(r) for r in records]
            traces, spans = self._spans(session_id, since)
            answer["traces"] = traces
            answer["spans"] = spans
            answer["events"] = self._events(session_id, row[1], row[5], row[6], grants)
            return answer

    def _records(self, session_id: str, since: int) -> list[tuple[Any, ...]]:
        return self._rd.execute(
            "SELECT id, time, severity, level, service, logger, message, session_id, user_id, trace_id, span_id, "
            "flags, attributes FROM records WHERE session_id = ? AND gen > ? ORDER BY time, id",
            (session_id, since)).fetchall()

    def _trace_ids(self, session_id: str) -> tuple[list[str], set[str]]:
        """The session's traces (those of its records and of spans that carry its id), and linked ones."""
        own = [t for (t,) in self._rd.execute(
            "SELECT DISTINCT trace_id FROM records WHERE session_id = ? AND trace_id IS NOT NULL "
            "UNION SELECT DISTINCT trace_id FROM spans WHERE session_id = ?", (session_id, session_id))]
        linked: set[str] = set()
        for start in range(0, len(own), 400):
            part = own[start:start + 400]
            marks = ",".join("?" * len(part))
            for a, b in self._rd.execute(
                    f"SELECT trace_id, linked_trace_id FROM span_links WHERE trace_id IN ({marks}) "
                    f"OR linked_trace_id IN ({marks})", part + part):
                linked.update((a, b))
        linked.difference_update(own)
        return own, linked

    def _spans(self, session_id: str, since: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        own, linked = self._trace_ids(session_id)
        every = own + sorted(linked)
        traces: dict[str, dict[str, Any]] = {
            t: {"trace_id": t, "linked": t in linked, "spans": 0, "services": [], "start": None, "end": None,
                "root": None} for t in every}
        spans: list[dict[str, Any]] = []
        for start in range(0, len(every), 400):
            part = every[start:start + 400]
            marks = ",".join("?" * len(part))
            for trace_id, gen, data, begin, end, service, parent, name in self._rd.execute(
                    f"SELECT trace_id, gen, data, start, end, service, parent_span_id, name FROM spans "
                    f"WHERE trace_id IN ({marks}) ORDER BY start, id", part):
                summary = traces[trace_id]
                summary["spans"] += 1
                if service not in summary["services"]:
                    summary["services"].append(service)
                summary["start"] = begin if summary["start"] is None else min(summary["start"], begin)
                summary["end"] = end if summary["end"] is None else max(summary["end"], end)
                if parent is None and summary["root"] is None:
                    summary["root"] = name
                if gen > since and len(spans) < MAX_SESSION_SPANS:
                    span = json.loads(data)
                    span["start_ms"], span["end_ms"] = _ms(begin), _ms(end)
                    span["linked"] = trace_id in linked
                    spans.append(span)
        for summary in traces.values():
            for key in ("start", "end"):
                if summary[key] is not None:
                    summary[key + "_ms"] = _ms(summary[key])
                    summary[key] = iso_time(summary[key])
        return list(traces.values()), spans

    def _events(self, session_id: str, user_id: str | None, first: int, last: int,
                grants: dict[str, tuple[str | None, str | None, int, int]]) -> list[dict[str, Any]]:
        """The session's debug-grant audit records (grants for it, or for its user while it logged) and its
        buffer flushes (one per service and trace: the records the debug buffer exported when it failed)."""
        events: list[dict[str, Any]] = []
        rows = self._rd.execute(
            "SELECT record_id, time, event, grant_id, session_id, user_id, level, expires_at, service, by, reason "
            "FROM grant_events WHERE session_id = ? OR (user_id IS NOT NULL AND user_id = ?) ORDER BY time, id",
            (session_id, user_id)).fetchall()
        for record_id, at, event, grant_id, sid, uid, level, expires, service, by, reason in rows:
            if sid != session_id:  # a user's grant: only one that covered this session
                window = grants.get(grant_id)
                if window is None or not (window[2] <= last and window[3] >= first):
                    continue
            events.append({
                "kind": "grant", "event": event, "time": iso_time(at), "time_ms": _ms(at), "grant_id": grant_id,
                "target": f"session {sid}" if sid else f"user {uid}", "level": level,
                "expires": iso_time(int(expires * 1e9)) if expires is not None else None,
                "service": service, "by": by, "reason": reason, "record_id": record_id,
            })
        # A flush exports records held earlier, with their own times: the event is placed at its eviction notice
        # (made by the flush), else at the failure that set it off (the trace's first ERROR record after the
        # records held), else at the last record it exported.
        flushes: dict[tuple[str, str | None], dict[str, Any]] = {}
        for record_id, at, service, trace_id, flags, attributes in self._rd.execute(
                "SELECT id, time, service, trace_id, flags, attributes FROM records WHERE session_id = ? "
                "AND flags & ? != 0 ORDER BY time, id", (session_id, FLAG_BUFFERED | FLAG_EVICTED)):
            key = (service, trace_id)
            flush = flushes.get(key)
            if flush is None:
                flush = flushes[key] = {"kind": "flush", "service": service, "trace_id": trace_id, "records": 0,
                                        "evicted": 0, "record_id": record_id, "first_held": iso_time(at)}
            if flags & FLAG_EVICTED:
                flush["notice"] = (record_id, at)
                with contextlib.suppress(ValueError, TypeError, AttributeError):
                    flush["evicted"] += int(json.loads(attributes).get(EVICTED, 0))
            else:
                flush["records"] += 1
                flush["last"] = at
        for flush in flushes.values():
            last = flush.pop("last", None)
            found = flush.pop("notice", None)
            if found is None and last is not None:
                found = self._rd.execute(
                    "SELECT id, time FROM records WHERE session_id = ? AND trace_id IS ? AND severity >= ? "
                    "AND time >= ? ORDER BY time, id LIMIT 1", (session_id, flush["trace_id"], ERROR, last)).fetchone()
            record_id, at = found if found is not None else (flush["record_id"], last)
            flush["record_id"] = record_id
            flush["time"], flush["time_ms"] = iso_time(at), _ms(at)
        events.extend(flushes.values())
        events.sort(key=lambda e: e["time_ms"])
        return events

    def status(self) -> dict[str, Any]:
        """What was read: every file (its path, size, position, lines, records, spans, lines skipped and
        where, an error), the totals of every refresh so far, and the last refresh's own counts."""
        with self._read_lock, self._snapshot():
            files = []
            skipped: dict[int, list[dict[str, Any]]] = {}
            for file_id, offset, reason in self._rd.execute("SELECT file_id, offset, reason FROM skipped"):
                skipped.setdefault(file_id, []).append({"offset": offset, "reason": reason})
            for (file_id, path, size, offset, gz, pending, lines, records, spans, bad, duplicates, error,
                 gone) in self._rd.execute(
                    "SELECT id, path, size, offset, gz, pending, lines, records, spans, skipped, duplicates, error, "
                    "gone FROM files ORDER BY path, id"):
                files.append({
                    "path": _relative(path, self.directory), "size": size, "offset": offset,
                    "compressed": bool(gz), "waiting": pending >= 0, "lines": lines, "records": records,
                    "spans": spans, "skipped_lines": bad, "skipped": skipped.get(file_id, []),
                    "duplicate_lines": duplicates, "error": error, "gone": bool(gone),
                })
            counts = self._rd.execute(
                "SELECT (SELECT count(*) FROM records), (SELECT count(*) FROM spans), "
                "(SELECT count(*) FROM sessions)").fetchone()
            return {
                "directory": str(self.directory),
                "generation": self._read_generation(),
                "records": counts[0],
                "spans": counts[1],
                "sessions": counts[2],
                "skipped_lines": sum(f["skipped_lines"] for f in files),
                "files": files,
                "last_refresh": self.last_refresh.as_dict() if self.last_refresh else None,
                "last_refresh_at": iso_time(int(self.last_refresh_at * 1e9)) if self.last_refresh_at else None,
                "totals": self.totals.as_dict(),
            }


def _numbered(handle: Any) -> Iterator[tuple[int, bytes]]:
    offset = 0
    for line in handle:
        yield offset, line
        offset += len(line)


def _parses(line: bytes) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _relative(path: str, directory: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(Path(path).relative_to(directory))
    return Path(path).name


def _record_dict(row: Sequence[Any]) -> dict[str, Any]:
    (record_id, stamp, severity, level, service, logger, message, session_id, user_id, trace_id, span_id, _flags,
     attributes) = row
    return {
        "time": iso_time(stamp),
        "service": service,
        "level": level,
        "logger": logger,
        "message": message,
        "session_id": session_id,
        "user_id": user_id,
        "trace_id": trace_id,
        "span_id": span_id,
        "attributes": json.loads(attributes),
        "id": record_id,
        "severity_number": severity,
        "time_ms": _ms(stamp),
    }


__all__ = ["Index", "IndexStats"]
