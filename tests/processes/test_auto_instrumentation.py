"""`opentelemetry-instrument python app.py` configures otel_session without a line of code in the app."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

from tests.helpers.support import ROOT, otlp_records

INSTRUMENT = Path(sys.executable).parent / "opentelemetry-instrument"
ENTRY_POINTS = {
    "opentelemetry_distro": "otel_session.distro:SessionDistro",
    "opentelemetry_configurator": "otel_session.distro:SessionConfigurator",
}

APP = textwrap.dedent(
    """
    import logging
    import otel_session

    # the application's own logging setup, after the configurator ran: it must still take effect
    logging.basicConfig(level=logging.INFO, format="console: %(name)s %(message)s")
    log = logging.getLogger(__name__)

    with otel_session.session(session_id="s-auto", user_id="u-auto"):
        log.info("hello from an uninstrumented app")
    log.debug("below the default level")
    """
)


def test_pyproject_declares_the_distro_and_the_configurator():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    for group, target in ENTRY_POINTS.items():
        assert declared[group] == {"otel_session": target}


def _registered(cwd: Path, env: dict[str, str]) -> bool:
    """Whether a process started like the app sees our entry points. Asked in a child, not here:
    the metadata found first wins, and this process has the repository root on sys.path."""
    probe = (
        "import json; from importlib.metadata import entry_points as eps; "
        f"print(json.dumps([[e.value for e in eps(group=g, name='otel_session')] for g in {list(ENTRY_POINTS)}]))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=cwd, env=env, capture_output=True, text=True, timeout=30)
    return out.returncode == 0 and json.loads(out.stdout) == [[t] for t in ENTRY_POINTS.values()]


def test_opentelemetry_instrument_configures_session_logging_once(tmp_path):
    script = tmp_path / "app.py"
    script.write_text(APP)
    logs = tmp_path / "logs"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_") and k != "PYTHONPATH"}
    assert _registered(tmp_path, env), (
        "the installed otel-session metadata predates its opentelemetry_distro/_configurator entry points: "
        "reinstall it (pip install -e .)")
    env.update(OTEL_SERVICE_NAME="auto-svc", OTEL_LOGS_EXPORTER="file", OTEL_SESSION_LOG_DIR=str(logs))
    proc = subprocess.Popen([str(INSTRUMENT), sys.executable, str(script)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Failed to auto initialize" not in err and "not loaded" not in err, err
    assert "console: __main__ hello from an uninstrumented app" in err  # basicConfig was not swallowed

    # opentelemetry-instrument exec()s the program: same pid, so the file is the app's own
    assert sorted(p.name for p in logs.glob("*.jsonl")) == [f"auto-svc.{proc.pid}.jsonl",
                                                            f"auto-svc.{proc.pid}.metrics.jsonl"]
    records = otlp_records(logs)
    assert [r["message"] for r in records] == ["hello from an uninstrumented app"]  # exactly once
    (record,) = records
    assert record["service"] == "auto-svc" and record["scope"] == "__main__"
    assert record["attrs"]["session.id"] == "s-auto" and record["attrs"]["user.id"] == "u-auto"
    assert record["level"] == "INFO"
