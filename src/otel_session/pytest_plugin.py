"""Pytest plugin (entry point `pytest11`): the `otel_logs` fixture, for the tests that ask for it.

The library is imported only when a test asks, so installing the package changes no other project's
test run.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from otel_session.testing import LogCapture


@pytest.fixture
def otel_logs() -> Iterator[LogCapture]:
    """The records exported while the test ran (`otel_session.testing.LogCapture`)."""
    from otel_session.testing import log_capture

    with log_capture() as logs:
        yield logs
