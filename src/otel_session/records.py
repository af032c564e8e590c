"""Temporary: the old home of `Record`; everything now lives in `otel_session._record`."""

from __future__ import annotations

from otel_session._record import Record, snapshot
from otel_session._record import record_size as approx_size

__all__ = ["Record", "approx_size", "snapshot"]
