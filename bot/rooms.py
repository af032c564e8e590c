"""One room, one spelling: the canonical URL decides which lock a join takes.

`HTTPS://Rooms.Example:443/a#x` and `https://rooms.example/a` are the same room. A room URL may carry
secrets (userinfo, a token in the query), so key names hold a hash of it and logs hold `display()`.
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import urlsplit, urlunsplit

MAX_URL = 2048
_DEFAULT_PORTS = {"http": 80, "https": 443}
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f-\x9f]")  # control characters and whitespace


def canonical(value: str) -> str:
    """The canonical form, or ValueError saying why the URL is not a room URL (without echoing it)."""
    if not isinstance(value, str) or not value:
        raise ValueError("must be a non-empty http(s) URL")
    if len(value) > MAX_URL:
        raise ValueError(f"is {len(value)} characters long; at most {MAX_URL} are allowed")
    if _FORBIDDEN.search(value):
        raise ValueError("must not contain whitespace or control characters")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError("is not a valid URL (bad host or port)") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError("must be an http(s) URL with a host")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{host}" if userinfo else host
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


def room_hash(canonical_url: str) -> str:
    return hashlib.sha256(canonical_url.encode()).hexdigest()[:32]


def display(url: str) -> str:
    """What logs and errors may show: no userinfo, no query string."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid room URL>"
    query = "?…" if parts.query else ""
    return f"{parts.scheme}://{host}{port}{parts.path}{query}"
