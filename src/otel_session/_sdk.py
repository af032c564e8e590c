"""The one place that leans on SDK internals, for speed on the log-emit path.

`BoundedAttributes.__setitem__` takes a lock and re-cleans every value; ours are short strings
that were validated when they entered baggage, so writing them into the mapping's `_dict` is
safe and measurably cheaper (see benchmarks/). `tests/test_sdk_internals.py` fails loudly if the
SDK changes shape; anything unexpected here falls back to the public mapping API.
"""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk._logs import ReadWriteLogRecord



def fast_path_available(attributes: object) -> bool:
    return (
        type(attributes) is BoundedAttributes
        and type(getattr(attributes, "_dict", None)) is dict
        and not getattr(attributes, "_immutable", True)
    )


def add_attributes(log_record: object, items: Iterable[tuple[str, str]]) -> None:
    """Add attributes the caller did not set itself; never overwrite one it did."""
    attributes = log_record.attributes  # type: ignore[attr-defined]
    if attributes is None:
        log_record.attributes = dict(items)  # type: ignore[attr-defined]
        return
    if fast_path_available(attributes):
        raw = attributes._dict  # noqa: SLF001
        maxlen = attributes.maxlen
        max_value_len = attributes.max_value_len
        for key, value in items:
            if key in raw:
                continue
            if (maxlen is not None and len(raw) >= maxlen) or (
                max_value_len is not None and len(value) > max_value_len
            ):
                attributes[key] = value  # the SDK's own eviction and truncation rules
            else:
                raw[key] = value
        return
    for key, value in items:
        if key not in attributes:
            attributes[key] = value
