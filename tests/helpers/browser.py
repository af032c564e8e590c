"""The browser tests' parts: the page in web/ served from its own origin, and Debian's Chromium driven by
Playwright (the Python package's driver; no browser download: `scripts/ensure-chromium.sh`)."""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from tests.helpers.support import ROOT

WEB = ROOT / "web"
BUNDLE = WEB / "dist" / "app.js"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# As the machine notes say: without the background-networking flags Chromium keeps calling out.
CHROMIUM_ARGS = ["--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


class PageServer:
    """web/ over HTTP on loopback: the page's own origin (`origin`), never the gateway's."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        if not BUNDLE.is_file():
            raise RuntimeError(f"{BUNDLE.relative_to(ROOT)} is missing: build it with `make web`")

        class Quiet(SimpleHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), functools.partial(Quiet, directory=str(WEB)))
        self.origin = f"http://{host}:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, **params: str) -> str:
        return f"{self.origin}/index.html?{urlencode(params)}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (Debian's, at CHROMIUM) under Playwright."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"no Chromium at {CHROMIUM}: run scripts/ensure-chromium.sh (or make chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
