"""The package's metadata: what pip sees when it installs it."""

import tomllib
from importlib.metadata import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_license_is_an_spdx_expression_not_the_deprecated_table():
    """A `project.license` table makes `pip install` warn that it is deprecated (setuptools 77+)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
    assert metadata("otel-session")["License-Expression"] == "Apache-2.0"
