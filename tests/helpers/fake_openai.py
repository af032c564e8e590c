"""The `fake_openai` fixture: the project's Responses API stand-in (manifold/standin.py) on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from manifold.standin import FakeResponsesAPI, last_user_text

__all__ = ["FakeResponsesAPI", "fake_openai", "last_user_text"]


@pytest.fixture
def fake_openai() -> Iterator[FakeResponsesAPI]:
    """A started stand-in, stopped after the test."""
    api = FakeResponsesAPI().start()
    try:
        yield api
    finally:
        api.stop()
