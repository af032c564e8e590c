"""The layers contract (`make lint`, import-linter) holds, and fails on a cycle, lazy imports included."""

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).parent / "lint-imports"


def lint(src: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports with the project's own otel_session contracts, on the package under `src`."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    contracts = [c for c in config["contracts"] if any(m.startswith("otel_session") for m in
                                                       c.get("containers", c.get("source_modules", [])))]
    lines = ["[tool.importlinter]", 'root_packages = ["otel_session"]', "include_external_packages = true"]
    for contract in contracts:
        lines.append("[[tool.importlinter.contracts]]")
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in contract.items())
    (tmp / "layers.toml").write_text("\n".join(lines) + "\n")
    return subprocess.run([str(LINT), "--config", str(tmp / "layers.toml"), "--no-cache"], cwd=src,
                          capture_output=True, text=True, env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"},
                          timeout=300)


def test_the_package_keeps_its_layers(tmp_path):
    out = lint(ROOT / "src", tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


def test_a_lazy_import_upwards_breaks_the_contract(tmp_path):
    copy = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "otel_session", copy / "otel_session",
                    ignore=shutil.ignore_patterns("__pycache__"))
    levels = copy / "otel_session" / "_levels.py"
    levels.write_text(levels.read_text() + "\n\ndef _cycle() -> object:\n"
                      "    from otel_session._configure import configured  # a lazy import, upwards\n\n"
                      "    return configured()\n")
    out = lint(copy, tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "otel_session._levels -> otel_session._configure" in out.stdout
