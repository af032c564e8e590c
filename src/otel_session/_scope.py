"""One base for the package's context managers, so each works with `with` and `async with`.

OTel's context lives in contextvars, which asyncio tasks copy; attaching in `__aenter__` is the
same as in `__enter__`, so the async form only delegates.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from otel_session import _sdk
from otel_session._diagnostics import internal

T = TypeVar("T")


class Scope(Generic[T]):
    def __enter__(self) -> T:
        raise NotImplementedError

    def __exit__(self, *exc_info: object) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> T:
        return self.__enter__()

    async def __aexit__(self, *exc_info: object) -> None:
        self.__exit__(*exc_info)


def detach(token: object, what: str) -> None:
    """Detach, and say so on stderr when it failed: the context then stays attached where it was
    (typically an async generator left open by a client and closed later from another task)."""
    if not _sdk.detach(token):
        internal.warning("otel_session: could not detach the %s context: it was attached in another "
                         "task or thread and stays attached there; run the work in its own task", what)
