"""`make collector` and collector-config.yaml against the real Collector they build: the components, the
validation, the ports it binds, a record through it read back by `otel-session logs`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

from tests.helpers.collector import CONFIG, ROOT, Collector, collector_binary
from tests.helpers.support import wait_for

MANIFEST = ROOT / "collector-builder.yaml"


def test_make_collector_prints_a_cached_binary_outside_the_repository_on_its_last_line() -> None:
    # --no-print-directory: under `make test` this make is a sub-make, which prints "Leaving directory" last
    done = subprocess.run(["make", "-s", "--no-print-directory", "collector"], cwd=ROOT, capture_output=True,
                          text=True, timeout=1200)
    assert done.returncode == 0, done.stderr
    binary = Path(done.stdout.strip().splitlines()[-1])
    assert binary.is_absolute() and os.access(binary, os.X_OK)
    assert not binary.is_relative_to(ROOT)
    assert binary == collector_binary()


def test_the_build_holds_exactly_the_manifests_components_at_its_pinned_release() -> None:
    manifest = yaml.safe_load(MANIFEST.read_text())
    listed = yaml.safe_load(subprocess.run([str(collector_binary()), "components"], capture_output=True,
                                           text=True, check=True).stdout)
    assert listed["buildinfo"]["version"] == manifest["dist"]["version"]
    for kind in ("receivers", "processors", "exporters", "extensions"):
        built = {c["module"] for c in listed[kind]}
        assert built == {entry["gomod"] for entry in manifest[kind]}, kind
    versions = {entry["gomod"].split()[1] for kind in ("receivers", "processors", "exporters", "extensions")
                for entry in manifest[kind]}
    assert versions == {"v" + manifest["dist"]["version"]}, "every component at one release"


def test_the_config_uses_every_built_component_and_nothing_else() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    listed = yaml.safe_load(subprocess.run([str(collector_binary()), "components"], capture_output=True,
                                           text=True, check=True).stdout)
    for kind in ("receivers", "processors", "exporters", "extensions"):
        used = {name.split("/")[0] for name in config[kind]}
        assert used == {c["name"] for c in listed[kind]}, kind
    assert set(config["service"]["pipelines"]) == {"logs", "traces", "metrics"}
    assert "localhost" not in CONFIG.read_text().split("\nextensions:")[1], "defaults say 127.0.0.1"


def _copy_of_the_repository_parts(tmp_path: Path) -> Path:
    for name in ("collector-builder.yaml", "collector-config.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "build-collector.sh", tmp_path / "scripts" / "build-collector.sh")
    return tmp_path


def test_a_config_the_collector_refuses_fails_make_collector_with_the_reason(tmp_path: Path) -> None:
    copy = _copy_of_the_repository_parts(tmp_path)
    config = copy / "collector-config.yaml"
    config.write_text(config.read_text().replace("exporters: [file/logs, debug]", "exporters: [file/logz, debug]"))
    done = subprocess.run(["bash", "scripts/build-collector.sh"], cwd=copy, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 1
    assert "file/logz" in done.stderr and "not valid" in done.stderr
    assert done.stdout == ""


def test_without_go_make_collector_says_so_in_one_line_and_exits_2(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "grep", "sha256sum", "cut", "dirname"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    done = subprocess.run(["bash", str(ROOT / "scripts" / "build-collector.sh")], capture_output=True, text=True,
                          env={"PATH": str(bin_dir), "HOME": str(tmp_path)}, timeout=60)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "Go is not installed" in done.stderr


def _listening_ports(pid: int) -> set[int]:
    """TCP ports in LISTEN held by `pid`'s sockets (from /proc: no tool needed)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_the_collector_starts_clean_on_its_own_ports_and_binds_nothing_else(tmp_path: Path) -> None:
    with Collector(tmp_path / "out") as collector:
        assert collector.proc is not None
        assert _listening_ports(collector.proc.pid) == {collector.http_port, collector.grpc_port,
                                                         collector.health_port}
        with Collector(tmp_path / "second") as second:  # two at once: no fixed internal-telemetry port
            assert second.healthy()
    log = collector.log_text()
    assert collector.proc.returncode == 0
    assert "Everything is ready" in log
    assert "deprecat" not in log.lower() and "warn" not in log.lower(), log


SERVICE = textwrap.dedent(
    """
    import logging
    from opentelemetry import trace
    import otel_session

    telemetry = otel_session.configure("collector-check")
    with trace.get_tracer("check").start_as_current_span("work"), otel_session.session(session_id="s-col"):
        for n in range(5):
            logging.getLogger("app.check").info("step %d", n)
    logging.getLogger("app.check").warning("outside")
    telemetry.shutdown()
    print(telemetry.exporter_name)
    """
)


def test_a_service_exports_to_the_collector_and_otel_session_logs_reads_its_files(tmp_path: Path) -> None:
    collector = Collector(tmp_path / "collector").start()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env.update(OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint, OTEL_BLRP_SCHEDULE_DELAY="100")
        done = subprocess.run([sys.executable, "-c", SERVICE], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "otlp"
        wait_for(lambda: collector.file("logs").exists() and collector.file("traces").exists(), timeout=15,
                 what="the Collector's files")
    finally:
        assert collector.stop() == 0
    read = subprocess.run([sys.executable, "-m", "otel_session", "logs", "--dir", str(collector.directory),
                           "--session", "s-col", "--json"], capture_output=True, text=True, timeout=60)
    assert read.returncode == 0, read.stderr
    records = [json.loads(line) for line in read.stdout.splitlines()]
    assert [r["message"] for r in records] == [f"step {n}" for n in range(5)]
    assert {r["service"] for r in records} == {"collector-check"}
    from otel_session.log_reader import read_spans

    spans = read_spans(collector.file("traces"))
    assert [s.name for s in spans] == ["work"]
    assert {r["trace_id"] for r in records} == {spans[0].trace_id}
