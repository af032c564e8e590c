"""A large refresh of the view's index decodes its lines in worker processes: the same index as decoding
them in the process, skipped and duplicate lines included."""

from __future__ import annotations

import otel_session.view.index as index_module
from otel_session.view.index import Index
from tests.helpers.view import line, record, span, span_line

TRACE = "0af7651916cd43dd8448eb211c80319c"


def _write(directory):
    directory.mkdir()
    with (directory / "a.jsonl").open("w") as out:
        for n in range(60):
            out.write(line(*(record(f"r{n}.{k}", at_ms=n, session=f"s-{n % 5}", user="u", trace=TRACE,
                                    severity=17 if k == 0 else 9) for k in range(20)), service=f"svc-{n % 3}"))
            if n % 17 == 0:
                out.write("garbage\n")
    (directory / "b.spans.jsonl").write_text(span_line(span("root", TRACE, "a000000000000001", end_ms=60)))
    (directory / "copy.jsonl").write_text((directory / "a.jsonl").read_text().split("\n", 1)[0] + "\n")


def test_worker_processes_build_the_same_index(tmp_path, monkeypatch):
    logs = tmp_path / "logs"
    _write(logs)
    with Index(logs) as serial:
        serial.parallel = False
        expected = serial.refresh()
        expected_sessions = serial.sessions()
        expected_one = serial.session("s-1")
    monkeypatch.setattr(index_module, "PARALLEL_BYTES", 0)
    with Index(logs) as parallel:
        used = []
        real = parallel._workers
        monkeypatch.setattr(parallel, "_workers", lambda paths: used.append(real(paths)) or used[-1])
        stats = parallel.refresh()
        assert used and used[0] is not None  # the workers did it
        assert (stats.records, stats.spans, stats.skipped_lines, stats.duplicate_lines) == (
            expected.records, expected.spans, expected.skipped_lines, expected.duplicate_lines) == (1200, 1, 4, 1)
        assert parallel.sessions() == expected_sessions
        one = parallel.session("s-1")
        assert [r["message"] for r in one["records"]] == [r["message"] for r in expected_one["records"]]
        assert one["spans"] == expected_one["spans"] and len(one["spans"]) == 1
