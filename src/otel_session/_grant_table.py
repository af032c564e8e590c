"""`GrantTable`: the live debug grants as the emit path reads them; the live wing builds it."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class GrantTable:
    """Who is granted what, now: session id or user id -> (stdlib level, grant id); lowest level wins."""

    by_session: Mapping[str, tuple[int, str]] = field(default_factory=dict)
    by_user: Mapping[str, tuple[int, str]] = field(default_factory=dict)
    next_expiry: float = math.inf

    def __bool__(self) -> bool:
        return bool(self.by_session or self.by_user)

    def level(self, session_id: object, user_id: object) -> tuple[int, str] | None:
        found = [g for g in (self.by_session.get(session_id) if isinstance(session_id, str) else None,
                             self.by_user.get(user_id) if isinstance(user_id, str) else None) if g]
        return min(found) if found else None


NO_GRANTS = GrantTable()
