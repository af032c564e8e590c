"""One base for the package's context managers, so each works with `with` and `async with`.

OTel's context lives in contextvars, which asyncio tasks copy; attaching in `__aenter__` is the
same as in `__enter__`, so the async form only delegates.
"""

from __future__ import annotations

from typing import Generic, TypeVar

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
