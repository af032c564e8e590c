"""The one place that leans on SDK internals, for speed on the log-emit path.

`BoundedAttributes.__setitem__` takes a lock and re-cleans every value; ours are short strings
that were validated when they entered baggage, so writing them into the mapping's `_dict` is
safe and measurably cheaper (see benchmarks/). `tests/test_sdk_internals.py` fails loudly if the
SDK changes shape; anything unexpected here falls back to the public mapping API.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry._logs import SeverityNumber
from opentelemetry.attributes import BoundedAttributes

# Enum members hash and read `.value` through Python code; their ids are stable.
_SEVERITY_BY_ID = {id(s): s.value for s in SeverityNumber}


def severity_value(severity: object) -> int:
    return _SEVERITY_BY_ID.get(id(severity), 0)


def raw_dict(attributes: object, adding: int = 0, longest: int = 0) -> dict[str, Any] | None:
    """The dict behind a record's attributes, when writing `adding` values of at most `longest`
    characters straight into it can break none of the SDK's limits; else None."""
    if type(attributes) is not BoundedAttributes:
        return None
    raw = getattr(attributes, "_dict", None)
    if type(raw) is not dict or getattr(attributes, "_immutable", True):
        return None
    maxlen, max_value_len = attributes.maxlen, attributes.max_value_len
    if (maxlen is not None and len(raw) + adding > maxlen) or (
        max_value_len is not None and longest > max_value_len
    ):
        return None
    return raw


def add_attributes(log_record: Any, items: Sequence[tuple[str, str]], longest: int) -> None:
    """Add attributes the caller did not set itself; never overwrite one it did."""
    attributes = log_record.attributes
    if type(attributes) is BoundedAttributes and not attributes._immutable:
        raw = attributes._dict
        maxlen, max_value_len = attributes.maxlen, attributes.max_value_len
        if (
            type(raw) is dict
            and (maxlen is None or len(raw) + len(items) <= maxlen)
            and (max_value_len is None or longest <= max_value_len)
        ):
            for key, value in items:
                if key not in raw:
                    raw[key] = value
            return
    if attributes is None:
        log_record.attributes = dict(items)
        return
    for key, value in items:  # the public path applies the SDK's own limits
        if key not in attributes:
            attributes[key] = value


def attributes_copy(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    """A plain dict copy of a record's attributes (without the mapping's lock and iterator copy)."""
    if attributes is None:
        return {}
    raw = raw_dict(attributes)
    return raw.copy() if raw is not None else dict(attributes)
