"""The one mapping between stdlib levels, OTel severity numbers and their names.

The stdlib bridge maps a level to a severity number with `std_to_otel`; everything here agrees
with it, so a level given to `session()`, a record's severity and a `--level` flag compare alike.
"""

from __future__ import annotations

import logging
import re

from opentelemetry._logs import SeverityNumber

UNSPECIFIED = 0
TRACE, DEBUG, INFO, WARN, ERROR, FATAL = 1, 5, 9, 13, 17, 21
BANDS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
# protobuf's JSON mapping spells severities by enum name: SEVERITY_NUMBER_INFO2 and so on
ENUM_NAMES = {f"SEVERITY_NUMBER_{name}{'' if i == 0 else i + 1}": band * 4 + i + 1
              for band, name in enumerate(BANDS) for i in range(4)}
ENUM_NAMES["SEVERITY_NUMBER_UNSPECIFIED"] = UNSPECIFIED

# Enum members hash and read `.value` through Python code; their ids are stable and cheap to look up.
_BY_ID = {id(s): s.value for s in SeverityNumber}
_DIGITS = re.compile(r"\d+")


def severity_of(level: int) -> int:
    """The OTel severity number the stdlib bridge gives a record of this stdlib level."""
    if level < logging.DEBUG:
        return UNSPECIFIED
    if level > 53:
        return 24
    band, step = divmod(level, 10)
    return band * 4 + 1 + min(step, 3)


def level_of(severity: int) -> int:
    """The lowest stdlib level whose records get this severity number (the inverse of `severity_of`)."""
    if severity <= UNSPECIFIED:
        return logging.NOTSET
    if severity < DEBUG:
        return 1
    band, step = divmod(severity - 1, 4)
    return band * 10 + step


def severity_value(severity: object) -> int:
    """A record's severity as a number: a `SeverityNumber`, a plain int, or None (UNSPECIFIED)."""
    found = _BY_ID.get(id(severity))
    if found is not None:
        return found
    if isinstance(severity, SeverityNumber):
        return int(severity.value)
    if isinstance(severity, int) and not isinstance(severity, bool) and 0 <= severity <= 24:
        return severity
    return UNSPECIFIED


def severity_text(number: int) -> str:
    """OTel's short name for a severity number: TRACE, DEBUG, INFO, WARN, ERROR, FATAL."""
    if 1 <= number <= 24:
        return BANDS[(number - 1) // 4]
    return "UNSPECIFIED"


def parse_severity(value: object) -> int:
    """A severity number from a JSON field: a number, digits, or a protobuf enum name; 0 if unknown."""
    if isinstance(value, bool):
        return UNSPECIFIED
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        if _DIGITS.fullmatch(value):
            return int(value)
        return ENUM_NAMES.get(value, UNSPECIFIED)
    return UNSPECIFIED
