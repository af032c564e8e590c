from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers.browser import PageServer, chromium


@pytest.fixture(scope="session")
def page_server() -> Iterator[PageServer]:
    server = PageServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def chromium_browser() -> Iterator[Any]:
    """Module scope, not session: Playwright's sync API runs an event loop in this thread until it stops, and
    any other module's test on this worker (`asyncio.run`) must find none running."""
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(chromium_browser: Any) -> Iterator[Any]:
    """A fresh browser context (no shared cache, no preflight cache) and its page."""
    context = chromium_browser.new_context()
    page = context.new_page()
    page.console_lines = []  # what the page printed, for failure messages
    page.on("console", lambda message: page.console_lines.append(message.text))
    yield page
    context.close()


@pytest.fixture
def otlp() -> Iterator[Any]:
    """A loopback OTLP/HTTP receiver: what the platform's services export (logs and spans)."""
    from tests.helpers.otlp import OtlpReceiver

    receiver = OtlpReceiver()
    yield receiver
    receiver.close()
