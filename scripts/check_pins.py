"""Fail unless every pin in a constraints file is installed at exactly that version."""

import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

bad = []
for raw in Path(sys.argv[1]).read_text().splitlines():
    line = raw.split("#", 1)[0].strip()
    if not line:
        continue
    name, pinned = line.split("==")
    try:
        installed = version(name)
    except PackageNotFoundError:
        continue  # a pin for a package this project does not install (yet)
    if installed != pinned:
        bad.append(f"{name}: pinned {pinned}, installed {installed}")
if bad:
    sys.exit("pins moved:\n  " + "\n  ".join(bad))
print(f"all installed pins from {sys.argv[1]} hold")
