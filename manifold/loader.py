"""Load a function file the way Open WebUI 0.12 does, without Open WebUI: its frontmatter rule and
a fresh module per load (`utils/plugin.py`: `extract_frontmatter`, `load_function_module_by_id`).
Used by `manifold.serve` to host the pipe, and by the tests."""

from __future__ import annotations

import re
import sys
import types
import uuid
from pathlib import Path
from typing import Any

_FRONTMATTER_LINE = re.compile(r"^\s*([a-z_]+):\s*(.*)\s*$")


def extract_frontmatter(source: str) -> dict[str, str]:
    lines = source.splitlines()
    if not lines or lines[0].strip() != '"""':
        return {}
    found = {}
    for line in lines[1:]:
        if '"""' in line:
            break
        match = _FRONTMATTER_LINE.match(line)
        if match:
            found[match.group(1).lower()] = match.group(2).strip()
    return found


def load_function(path: Path, function_id: str) -> tuple[Any, dict[str, str]]:
    """Exec the file in a new module, as Open WebUI does on every (re)load; return (Pipe(), frontmatter)."""
    source = path.read_text()
    module = types.ModuleType(f"function_{function_id}_{uuid.uuid4().hex}")
    module.__file__ = str(path)
    sys.modules[module.__name__] = module
    try:
        exec(compile(source, str(path), "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    return module.Pipe(), extract_frontmatter(source)
