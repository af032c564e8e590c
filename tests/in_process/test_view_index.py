"""The view's index (`otel_session.view.index.Index`) over hand-written OTLP-JSON lines: sessions and their
answers, search, and the files a real directory holds (rotated, compressed, torn, growing, truncated, garbage)."""

from __future__ import annotations

import gzip
import os
import threading
import time

import pytest

from otel_session.view.index import Index
from tests.helpers.view import line, record, span, span_line

TRACE_A = "0af7651916cd43dd8448eb211c80319c"
TRACE_B = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture
def index(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    with Index(logs) as made:
        yield made


def test_sessions_are_aggregated_across_services_newest_first(index):
    (index.directory / "gw.1.jsonl").write_text(
        line(record("joined", at_ms=0, session="s-1", user="u-1", trace=TRACE_A),
             record("slow", at_ms=5, session="s-1", user="u-1", severity=13, level="WARN"),
             record("no session", at_ms=6), service="gateway")
        + line(record("other", at_ms=50, session="s-2", user="u-2"), service="gateway"))
    (index.directory / "rn.2.jsonl").write_text(
        line(record("failed", at_ms=10, session="s-1", severity=17, level="ERROR"),
             record("boom", at_ms=11, session="s-1", severity=21, level="FATAL"), service="runner"))
    stats = index.refresh()
    assert (stats.files, stats.lines, stats.records, stats.skipped_lines) == (2, 3, 6, 0)
    assert stats.bytes_read == sum(p.stat().st_size for p in index.directory.iterdir())

    listed = index.sessions()
    assert [s["session_id"] for s in listed] == ["s-2", "s-1"]  # newest (last record) first
    one = listed[1]
    assert one == {
        "session_id": "s-1", "user_id": "u-1", "services": ["gateway", "runner"], "records": 4, "warnings": 1,
        "errors": 2, "first": "2026-11-30T00:53:20.000000Z", "last": "2026-11-30T00:53:20.011000Z",
        "buffered": False, "granted": False,
    }
    assert index.sessions(limit=1) == listed[:1]


def test_one_session_has_its_records_in_time_order_with_the_logs_json_fields(index):
    (index.directory / "a.jsonl").write_text(
        line(record("second", at_ms=2, session="s-1", trace=TRACE_A, span="00f067aa0ba902b7", **{"job.n": 3}),
             service="a")
        + line(record("elsewhere", at_ms=1, session="s-9"), service="a"))
    (index.directory / "b.jsonl").write_text(line(record("first", at_ms=1, session="s-1", user="u-1"), service="b"))
    index.refresh()
    answer = index.session("s-1")
    assert answer is not None
    assert answer["record_count"] == 2 and answer["services"] == ["a", "b"]
    assert [r["message"] for r in answer["records"]] == ["first", "second"]  # time order across files
    second = answer["records"][1]
    expected_keys = {"time", "service", "level", "logger", "message", "session_id", "user_id", "trace_id", "span_id",
                     "attributes"}
    assert expected_keys <= set(second)
    assert second["attributes"] == {"job.n": 3}  # session.id / user.id are fields, not attributes (as --json)
    assert (second["trace_id"], second["span_id"], second["service"]) == (TRACE_A, "00f067aa0ba902b7", "a")
    assert [t["trace_id"] for t in answer["traces"]] == [TRACE_A]
    assert index.session("nobody") is None


def test_search_by_session_user_or_message_text(index):
    (index.directory / "a.jsonl").write_text(
        line(record("payment accepted", session="order-77", user="ada"),
             record("hello 100%_done", at_ms=1, session="s-2", user="bob"),
             record("payment text without a session", at_ms=2)))
    index.refresh()
    ids = lambda q: [s["session_id"] for s in index.sessions(q)]  # noqa: E731
    assert ids("order") == ["order-77"]
    assert ids("BOB") == ["s-2"]  # any case
    assert ids("PAYMENT") == ["order-77"]
    assert ids("100%_") == ["s-2"]  # LIKE's wildcards are literal
    assert ids("0%d") == []
    assert ids("nothing like it") == []
    assert len(ids("  ")) == 2  # blank: everything


def test_refresh_is_incremental_and_after_returns_only_what_is_new(index):
    path = index.directory / "a.jsonl"
    path.write_text(line(record("one", session="s-1")))
    first = index.refresh()
    assert first.records == 1
    generation = index.session("s-1")["generation"]
    assert index.refresh().lines == 0  # nothing new: nothing read
    with path.open("a") as out:
        out.write(line(record("two", at_ms=1, session="s-1")))
    again = index.refresh()
    assert (again.lines, again.records, again.bytes_read) == (1, 1, len(line(record("two", at_ms=1, session="s-1"))))
    later = index.session("s-1", after=generation)
    assert [r["message"] for r in later["records"]] == ["two"]
    assert later["record_count"] == 2
    assert index.session("s-1", after=later["generation"])["records"] == []


def test_a_rotated_file_is_continued_not_read_again(index):
    """A Collector's file exporter renames the file it wrote and starts a new one under the old name."""
    live = index.directory / "logs.json"
    live.write_text(line(record("before", session="s-1")))
    index.refresh()
    with live.open("a") as out:
        out.write(line(record("appended, then rotated", at_ms=1, session="s-1")))
    live.rename(index.directory / "logs-2026-11-23T10-00-00.000-size.json")
    live.write_text(line(record("after", at_ms=2, session="s-1")))
    stats = index.refresh()
    assert (stats.records, stats.duplicate_lines) == (2, 0)
    assert [r["message"] for r in index.session("s-1")["records"]] == ["before", "appended, then rotated", "after"]
    paths = sorted(f["path"] for f in index.status()["files"])
    assert paths == ["logs-2026-11-23T10-00-00.000-size.json", "logs.json"]


def test_gzip_files_are_read_and_a_compressed_copy_is_not_indexed_twice(index):
    lines = line(record("one", session="s-1")) + line(record("two", at_ms=1, session="s-1"))
    (index.directory / "logs-old.json.gz").write_bytes(gzip.compress(lines.encode()))
    first = index.refresh()
    assert first.records == 2
    # the same lines again, as a rotated-and-compressed copy: recognised, not counted twice
    (index.directory / "logs-copy.json.gz").write_bytes(gzip.compress(lines.encode()))
    (index.directory / "plain.json").write_text(lines)
    again = index.refresh()
    assert (again.records, again.duplicate_lines) == (0, 4)
    assert index.session("s-1")["record_count"] == 2
    # a broken gzip file is reported, not fatal
    (index.directory / "broken.json.gz").write_bytes(b"\x1f\x8b\x08\x00 not really gzip")
    index.refresh()
    broken = next(f for f in index.status()["files"] if f["path"] == "broken.json.gz")
    assert broken["error"] and broken["compressed"]


def test_a_torn_last_line_waits_until_it_is_complete(index):
    path = index.directory / "a.jsonl"
    whole = line(record("torn", session="s-1"))
    path.write_text(line(record("whole", session="s-1")) + whole[:40])
    stats = index.refresh()
    assert (stats.records, stats.skipped_lines) == (1, 0)
    assert next(f for f in index.status()["files"])["waiting"] is True
    assert index.refresh().records == 0  # still torn: never indexed half, never counted as garbage
    with path.open("a") as out:
        out.write(whole[40:])
    stats = index.refresh()
    assert (stats.records, stats.skipped_lines) == (1, 0)
    assert [r["message"] for r in index.session("s-1")["records"]] == ["whole", "torn"]
    assert next(f for f in index.status()["files"])["waiting"] is False


def test_a_last_line_without_newline_is_indexed_once_the_writer_stopped(index):
    path = index.directory / "a.jsonl"
    path.write_text(line(record("no newline at the end", session="s-1")).rstrip("\n"))
    assert index.refresh().records == 0  # it may still be written to
    assert index.refresh().records == 1  # unchanged since, and whole: the writer ended without a newline
    with path.open("a") as out:
        out.write("\n" + line(record("next", at_ms=1, session="s-1")))
    stats = index.refresh()
    assert (stats.records, stats.skipped_lines) == (1, 0)
    assert index.session("s-1")["record_count"] == 2


def test_unreadable_lines_are_counted_with_where_they_are_never_fatal(index):
    good = line(record("good", session="s-1"))
    path = index.directory / "a.jsonl"
    path.write_text("garbage\n" + good + '{"resourceLogs": 5}\n' + "[1, 2]\n" + "\n")
    stats = index.refresh()
    assert (stats.records, stats.skipped_lines) == (1, 3)
    status = index.status()
    assert status["skipped_lines"] == 3
    entry = status["files"][0]
    assert [s["offset"] for s in entry["skipped"]] == [0, 8 + len(good), 8 + len(good) + 20]
    assert all(s["reason"] for s in entry["skipped"])
    (index.directory / "unreadable.json").write_text(good)
    os.chmod(index.directory / "unreadable.json", 0)
    try:
        if os.access(index.directory / "unreadable.json", os.R_OK):  # root reads anything
            return
        index.refresh()
        assert any(f["error"] for f in index.status()["files"] if f["path"] == "unreadable.json")
    finally:
        os.chmod(index.directory / "unreadable.json", 0o644)


def test_a_file_truncated_in_place_is_read_from_its_start(index):
    path = index.directory / "a.jsonl"
    path.write_text(line(record("old", session="s-1")) + line(record("old too", at_ms=1, session="s-1")))
    index.refresh()
    path.write_text(line(record("new after truncation", at_ms=5, session="s-1")))
    assert index.refresh().records == 1
    assert index.session("s-1")["records"][-1]["message"] == "new after truncation"


def test_a_file_that_grows_while_it_is_read(index):
    """A writer appends whole lines (one write each, as the exporter does) while the index refreshes."""
    path = index.directory / "a.jsonl"
    total = 400
    done = threading.Event()

    def write() -> None:
        with path.open("a", buffering=1) as out:
            for n in range(total):
                text = line(*(record(f"r{n}.{k}", at_ms=n, session=f"s-{n % 7}") for k in range(5)))
                half = len(text) // 2
                out.write(text[:half])  # a line split over two writes: a reader may see it torn
                out.flush()
                out.write(text[half:])
                out.flush()
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    skipped = 0
    while not done.is_set():
        skipped += index.refresh().skipped_lines
        time.sleep(0.001)
    writer.join()
    skipped += index.refresh().skipped_lines
    assert skipped == 0
    assert index.status()["records"] == total * 5
    assert sum(s["records"] for s in index.sessions()) == total * 5


def test_a_kept_index_is_continued_by_the_next_run(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.jsonl").write_text(line(record("one", session="s-1")))
    db = tmp_path / "index.sqlite3"
    with Index(logs, db) as first:
        assert first.refresh().records == 1
    with (logs / "a.jsonl").open("a") as out:
        out.write(line(record("two", at_ms=1, session="s-1")))
    with Index(logs, db) as second:
        assert second.refresh().records == 1  # only the new line
        assert second.session("s-1")["record_count"] == 2
    other = tmp_path / "other"
    other.mkdir()
    with Index(other, db) as third:  # an index of another directory is rebuilt, not mixed in
        third.refresh()
        assert third.sessions() == []
    assert db.exists()


def test_the_temporary_index_is_removed_on_close(tmp_path):
    made = Index(tmp_path)
    made.refresh()
    assert made.db_path.exists()
    made.close()
    assert not made.db_path.exists()


def test_a_missing_directory_raises(tmp_path):
    with Index(tmp_path / "absent") as made, pytest.raises(FileNotFoundError):
        made.refresh()


def test_buffer_flushes_and_debug_grants_are_the_sessions_events(index):
    expires = 1_796_000_900.0
    (index.directory / "a.jsonl").write_text(
        line(record("debug held, exported when the trace failed", at_ms=1, session="s-f", severity=5, level="DEBUG",
                    trace=TRACE_B, **{"otel_session.buffered": True}),
             record("failure", at_ms=2, session="s-f", severity=17, level="ERROR", trace=TRACE_B),
             record("2 buffered record(s) of this trace were evicted", at_ms=3, session="s-f", severity=13,
                    level="WARN", trace=TRACE_B, **{"otel_session.buffered": True, "otel_session.evicted": 2}),
             record("plain", at_ms=1, session="s-g", user="u-g"),
             record("later", at_ms=900, session="s-late", user="u-g"),
             service="runner")
        + line(record("Debug grant g-1 granted by ada: DEBUG for session s-g", at_ms=0, severity=13, level="WARN",
                      **{"otel_session.audit.event": "created", "otel_session.grant_id": "g-1",
                         "otel_session.grant.session_id": "s-g", "otel_session.grant.level": "DEBUG",
                         "otel_session.grant.expires_at": expires, "otel_session.audit.by": "ada",
                         "otel_session.service": "otel-session-cli"}),
               record("Debug grant g-2 granted: DEBUG for user u-g", at_ms=0, severity=13, level="WARN",
                      **{"otel_session.audit.event": "created", "otel_session.grant_id": "g-2",
                         "otel_session.grant.user_id": "u-g", "otel_session.grant.level": "DEBUG",
                         "otel_session.grant.expires_at": 1_796_000_000.5, "otel_session.service": "cli"}),
               service="otel-session-cli", logger="otel_session.audit"))
    index.refresh()
    by_id = {s["session_id"]: s for s in index.sessions()}
    assert (by_id["s-f"]["buffered"], by_id["s-f"]["granted"]) == (True, False)
    assert (by_id["s-g"]["buffered"], by_id["s-g"]["granted"]) == (False, True)
    assert by_id["s-late"]["granted"] is False  # its user's grant had expired before it logged
    flushes = index.session("s-f")["events"]
    notice = index.session("s-f")["records"][2]
    assert "evicted" in notice["message"]
    # placed at the flush (its eviction notice is made by it), not at the time the first held record was made
    assert flushes == [{"kind": "flush", "time": notice["time"], "time_ms": notice["time_ms"],
                        "service": "runner", "trace_id": TRACE_B, "records": 1, "evicted": 2,
                        "record_id": notice["id"], "first_held": "2026-11-30T00:53:20.001000Z"}]
    # without a notice: at the failure that set it off
    with (index.directory / "a.jsonl").open("a") as out:
        out.write(line(record("held", at_ms=10, session="s-h", severity=5, level="DEBUG", trace=TRACE_A,
                              **{"otel_session.buffered": True}),
                       record("unrelated failure", at_ms=11, session="s-h", severity=17, level="ERROR"),
                       record("the failure", at_ms=12, session="s-h", severity=17, level="ERROR", trace=TRACE_A),
                       service="runner"))
    index.refresh()
    [held] = index.session("s-h")["events"]
    assert (held["time"], held["records"]) == ("2026-11-30T00:53:20.012000Z", 1)
    grants = index.session("s-g")["events"]
    assert [(e["kind"], e["event"], e["grant_id"], e["target"], e["by"]) for e in grants] == [
        ("grant", "created", "g-1", "session s-g", "ada"), ("grant", "created", "g-2", "user u-g", None)]
    assert [e["grant_id"] for e in index.session("s-late")["events"]] == []


TRACE_PAGE = "5b8efff798038103d269b633813fc60c"
TRACE_ELSEWHERE = "6e0c63257de34c92bf9efcd03927272e"


def test_a_session_has_the_spans_of_its_traces_and_of_the_traces_linked_to_them(index):
    (index.directory / "gw.1.jsonl").write_text(
        line(record("join", at_ms=1, session="s-1", trace=TRACE_A, span="a000000000000001"), service="gateway")
        + line(record("other session", at_ms=1, session="s-2", trace=TRACE_ELSEWHERE), service="gateway"))
    (index.directory / "gw.1.spans.jsonl").write_text(
        span_line(span("POST /join", TRACE_A, "a000000000000001", start_ms=0, end_ms=10,
                       links=((TRACE_PAGE, "c000000000000001"),)),
                  span("enqueue", TRACE_A, "a000000000000002", parent="a000000000000001", start_ms=2, end_ms=3),
                  span("elsewhere", TRACE_ELSEWHERE, "e000000000000001"), service="gateway"))
    (index.directory / "page.spans.jsonl").write_text(
        span_line(span("fetch /join", TRACE_PAGE, "c000000000000001", start_ms=-1, end_ms=11), service="browser"))
    stats = index.refresh()
    assert (stats.records, stats.spans, stats.skipped_lines) == (2, 4, 0)
    answer = index.session("s-1")
    assert [(s["name"], s["service"], s["linked"]) for s in answer["spans"]] == [
        ("fetch /join", "browser", True), ("POST /join", "gateway", False), ("enqueue", "gateway", False)]
    enqueue = answer["spans"][2]
    assert (enqueue["parent_span_id"], enqueue["kind"], enqueue["status"]) == ("a000000000000001", "SERVER", "UNSET")
    assert enqueue["end_ms"] - enqueue["start_ms"] == pytest.approx(1.0, abs=0.001)
    assert answer["spans"][1]["links"] == [{"trace_id": TRACE_PAGE, "span_id": "c000000000000001", "attributes": {}}]
    traces = {t["trace_id"]: t for t in answer["traces"]}
    assert set(traces) == {TRACE_A, TRACE_PAGE}
    assert (traces[TRACE_A]["linked"], traces[TRACE_A]["spans"], traces[TRACE_A]["root"]) == (False, 2, "POST /join")
    assert (traces[TRACE_PAGE]["linked"], traces[TRACE_PAGE]["services"]) == (True, ["browser"])
    # the linked trace's own session (none here) is not this session: its spans show, its records do not
    assert [s["name"] for s in index.session("s-2")["spans"]] == ["elsewhere"]
    status = {f["path"]: f for f in index.status()["files"]}
    assert status["gw.1.spans.jsonl"]["spans"] == 3 and status["gw.1.spans.jsonl"]["records"] == 0


def test_spans_that_arrive_later_come_with_after_and_links_count_both_ways(index):
    (index.directory / "a.jsonl").write_text(line(record("r", session="s-1", trace=TRACE_A)))
    index.refresh()
    first = index.session("s-1")
    assert first["spans"] == [] and [t["trace_id"] for t in first["traces"]] == [TRACE_A]
    # a later trace that links back to the session's trace (a follow-up job, say) is a linked trace too
    (index.directory / "a.spans.jsonl").write_text(
        span_line(span("work", TRACE_A, "a000000000000009", start_ms=0, end_ms=5),
                  span("follow-up", TRACE_B, "b000000000000001", start_ms=6, end_ms=8,
                       links=((TRACE_A, "a000000000000009"),))))
    index.refresh()
    later = index.session("s-1", after=first["generation"])
    assert later["records"] == []
    assert [(s["name"], s["linked"]) for s in later["spans"]] == [("work", False), ("follow-up", True)]
    assert index.session("s-1", after=later["generation"])["spans"] == []


def test_a_span_that_carries_the_session_id_brings_its_trace(index):
    (index.directory / "a.jsonl").write_text(line(record("r", session="s-1")))
    (index.directory / "a.spans.jsonl").write_text(
        span_line(span("baggage on the span", TRACE_B, "b000000000000001", **{"session.id": "s-1"})))
    index.refresh()
    assert [s["name"] for s in index.session("s-1")["spans"]] == ["baggage on the span"]


def test_answers_come_from_what_is_committed_while_a_refresh_writes(index, monkeypatch):
    import otel_session.view.index as index_module

    path = index.directory / "a.jsonl"
    path.write_text(line(record("committed", session="s-1")))
    index.refresh()
    before = index.session("s-1")
    with path.open("a") as out:
        out.write(line(record("being written", at_ms=1, session="s-1")) + line(record("next", at_ms=2, session="s-2")))
    reading, release = threading.Event(), threading.Event()
    real = index_module.decode_line
    calls = []

    def slow(text):
        calls.append(text)
        if len(calls) == 2:  # the first new line is in the open transaction: hold the second
            reading.set()
            assert release.wait(10)
        return real(text)

    monkeypatch.setattr(index_module, "decode_line", slow)
    writer = threading.Thread(target=index.refresh)
    writer.start()
    try:
        assert reading.wait(10)
        started = time.monotonic()
        during = index.session("s-1")
        listed = index.sessions()
        assert time.monotonic() - started < 1.0  # did not wait for the refresh
        assert [r["message"] for r in during["records"]] == ["committed"]
        assert during["generation"] == before["generation"] == index.generation
        assert [s["session_id"] for s in listed] == ["s-1"]
    finally:
        release.set()
        writer.join()
    after = index.session("s-1", after=before["generation"])
    assert [r["message"] for r in after["records"]] == ["being written"]
    assert after["generation"] == index.generation == before["generation"] + 1


def test_close_stops_a_refresh_in_progress(tmp_path, monkeypatch):
    import otel_session.view.index as index_module

    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.jsonl").write_text("".join(line(record(f"r{n}", at_ms=n, session="s-1")) for n in range(50)))
    made = Index(logs)
    reading, release = threading.Event(), threading.Event()
    real = index_module.decode_line

    def slow(text):
        reading.set()
        assert release.wait(10)
        return real(text)

    monkeypatch.setattr(index_module, "decode_line", slow)
    results: list[object] = []
    writer = threading.Thread(target=lambda: results.append(made.refresh()))
    writer.start()
    assert reading.wait(10)
    closer = threading.Thread(target=made.close)
    closer.start()
    time.sleep(0.05)
    release.set()
    closer.join(10)
    writer.join(10)
    assert not closer.is_alive() and not writer.is_alive()
    assert len(results) == 1  # the refresh returned, rolled back, without raising
    assert not made.db_path.exists()
    assert made.refresh().records == 0  # a closed index reads nothing more


def test_identical_unreadable_lines_are_each_counted_as_skipped(index):
    (index.directory / "a.jsonl").write_text("garbage\n" * 3 + line(record("ok", session="s-1")) * 2)
    stats = index.refresh()
    assert (stats.skipped_lines, stats.duplicate_lines, stats.records) == (3, 1, 1)
    with (index.directory / "a.jsonl").open("a") as out:
        out.write("garbage\n")
    assert index.refresh().skipped_lines == 1
    ok = len(line(record("ok", session="s-1")))
    assert [s["offset"] for s in index.status()["files"][0]["skipped"]] == [0, 8, 16, 24 + 2 * ok]


def test_a_link_to_a_file_outside_the_directory_is_not_read(tmp_path, index):
    outside = tmp_path / "elsewhere.json"
    outside.write_text(line(record("from outside", session="s-out")))
    (index.directory / "link.json").symlink_to(outside)
    inside = index.directory / "real.jsonl"
    inside.write_text(line(record("inside", session="s-in")))
    (index.directory / "alias.json").symlink_to(inside)  # a link within the directory is read (once)
    stats = index.refresh()
    assert (stats.records, stats.duplicate_lines) == (1, 0)
    assert [s["session_id"] for s in index.sessions()] == ["s-in"]
    refused = next(f for f in index.status()["files"] if f["path"] == "link.json")
    assert "outside the directory" in refused["error"]
