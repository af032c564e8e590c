"""Redis URLs for every topology, in one place: the bot services and the live wing's grants and flushes
read `REDIS_URL` / `OTEL_SESSION_REDIS_URL` through it, so one URL means the same Redis everywhere.

- `redis://`, `rediss://`, `unix://`: one Redis (redis-py's own forms, unchanged).
- `redis+sentinel://[user:password@]host:port[,host:port...]/<master name>[/<db>]`: the master that the
  Sentinels name; the client asks them again after a failover (port default 26379). The user and password
  are the master's; the Sentinels are asked without them.
- `redis+cluster://[user:password@]host:port[,host:port...]/`: a Redis Cluster from its startup nodes
  (port default 6379); a cluster serves db 0 only.

Parsing needs no Redis and imports no client, so a bad URL is refused at start, before anything changes,
with one line (`RedisURLError`) that never holds the password.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

SINGLE = ("redis", "rediss", "unix")
SENTINEL = "redis+sentinel"
CLUSTER = "redis+cluster"
DEFAULT_PORTS = {SENTINEL: 26379, CLUSTER: 6379}
FORMS = ("redis://, rediss://, unix://, redis+sentinel://host:port[,host:port...]/<master>[/<db>] or "
         "redis+cluster://host:port[,host:port...]/")
_HOST = re.compile(r"\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9._-]+)")


class RedisURLError(ValueError):
    """A Redis URL that cannot be used; its message shows the URL without the password."""


@dataclass(frozen=True)
class RedisTarget:
    """What a URL names. `kind` is "single", "sentinel" or "cluster"; `nodes` are the Sentinels or the
    startup nodes (empty for "single": redis-py reads `url` itself)."""

    kind: str
    url: str = field(repr=False)
    nodes: tuple[tuple[str, int], ...] = ()
    master: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def safe(self) -> str:
        return safe_url(self.url)


def safe_url(url: str) -> str:
    """A Redis URL without its password (in the user part or as `?password=`)."""

    def user_only(match: re.Match[str]) -> str:
        user = match.group(1).split(":", 1)[0]
        return f"{user}@" if user else ""

    url = re.sub(r"(?<=://)([^@/?#]*)@", user_only, url, count=1)
    return re.sub(r"(?i)([?&]password=)[^&#]*", r"\1***", url)


def parse(url: str) -> RedisTarget:
    """The target `url` names; `RedisURLError` (one line, password hidden) when it names none."""
    if not isinstance(url, str) or not url.strip():
        raise RedisURLError(f"empty Redis URL: use {FORMS}")
    url = url.strip()
    try:
        return _parse(url)
    except RedisURLError:
        raise
    except ValueError as exc:  # redis-py's or urllib's own complaint: keep its words, never the password
        raise _bad(url, str(exc)) from None


def _bad(url: str, why: str) -> RedisURLError:
    secrets = [s for s in _secrets(url) if s]
    for secret in secrets:
        why = why.replace(secret, "***")
    line = f"invalid Redis URL {safe_url(url)!r}: {why}".replace("\n", " ")
    return RedisURLError(line)


def _secrets(url: str) -> list[str]:
    netloc = url.split("://", 1)[-1].split("/", 1)[0]
    userinfo = netloc.rpartition("@")[0]
    found = []
    if ":" in userinfo:
        password = userinfo.split(":", 1)[1]
        found += [password, unquote(password)]
    found += [unquote(m) for m in re.findall(r"(?i)[?&]password=([^&#]*)", url)]
    return found


def _parse(url: str) -> RedisTarget:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in SINGLE:
        from redis.connection import parse_url  # redis-py's rules for its own forms

        options = parse_url(url)  # type: ignore[no-untyped-call]
        db_text = urlsplit(url).path.strip("/") if scheme != "unix" else ""
        if db_text and not db_text.isdigit():  # redis-py would quietly use db 0
            raise _bad(url, f"the path must be a db number, not {db_text[:40]!r}")
        return RedisTarget("single", url, db=int(options.get("db") or 0), username=options.get("username"),
                           password=options.get("password"))
    if scheme not in (SENTINEL, CLUSTER):
        raise _bad(url, f"unknown scheme {scheme + '://' if scheme else '(none)'}; use {FORMS}")
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise _bad(url, f"{scheme}:// takes no ?options or #fragment")
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username = password = None
    if userinfo:
        user, colon, secret = userinfo.partition(":")
        username, password = unquote(user) or None, unquote(secret) if colon else None
    nodes = tuple(_node(url, entry, DEFAULT_PORTS[scheme]) for entry in hosts.split(","))
    path = [unquote(p) for p in parts.path.split("/")[1:]]
    if scheme == CLUSTER:
        if path not in ([], [""], ["0"], ["0", ""]):
            raise _bad(url, "a Redis Cluster serves db 0 only: end the URL with / (or /0)")
        return RedisTarget("cluster", url, nodes, username=username, password=password)
    if path and path[-1] == "":
        path.pop()
    if not path or not path[0] or len(path) > 2:
        raise _bad(url, "name the master: redis+sentinel://host:port[,host:port...]/<master>[/<db>]")
    db = 0
    if len(path) == 2:
        if not path[1].isdigit():
            raise _bad(url, f"the db after the master name must be a number, not {path[1][:40]!r}")
        db = int(path[1])
    return RedisTarget("sentinel", url, nodes, master=path[0], db=db, username=username, password=password)


def _node(url: str, entry: str, default_port: int) -> tuple[str, int]:
    host, port = entry, ""
    if entry.startswith("["):
        host, _, rest = entry.partition("]")
        host += "]"
        if rest:
            if not rest.startswith(":"):
                raise _bad(url, f"bad host {entry[:80]!r}")
            port = rest[1:]
    elif ":" in entry:
        host, _, port = entry.rpartition(":")
    match = _HOST.fullmatch(host)
    if not match:
        raise _bad(url, f"bad host {entry[:80]!r}: list host:port pairs separated by commas")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise _bad(url, f"bad port in {entry[:80]!r}")
    return match.group("v6") or match.group("name"), int(port) if port else default_port


# --- clients ---------------------------------------------------------------------------------------------

# Options of a plain client that a cluster client refuses or means otherwise.
_NOT_FOR_CLUSTER = ("db", "health_check_interval", "retry_on_timeout", "connection_pool")


def client(url: str | RedisTarget, **options: Any) -> Any:
    """A sync client for `url`: `redis.Redis` (one Redis, or the master a Sentinel names) or
    `redis.cluster.RedisCluster`. `options` are connection options (timeouts, decode_responses, retry...)."""
    target = url if isinstance(url, RedisTarget) else parse(url)
    if target.kind == "single":
        import redis

        return redis.Redis.from_url(target.url, **options)
    if target.kind == "sentinel":
        from redis.sentinel import Sentinel

        return _sentinel(Sentinel, target, options)
    from redis.cluster import ClusterNode, RedisCluster

    return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in target.nodes],  # type: ignore[no-untyped-call]
                        **_auth(target), **_cluster_options(options))


def async_client(url: str | RedisTarget, **options: Any) -> Any:
    """Like `client`, for asyncio: `redis.asyncio.Redis` or `redis.asyncio.cluster.RedisCluster`."""
    target = url if isinstance(url, RedisTarget) else parse(url)
    if target.kind == "single":
        import redis.asyncio

        return redis.asyncio.Redis.from_url(target.url, **options)
    if target.kind == "sentinel":
        from redis.asyncio.sentinel import Sentinel

        return _sentinel(Sentinel, target, options)
    from redis.asyncio.cluster import ClusterNode, RedisCluster

    return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in target.nodes],  # type: ignore[no-untyped-call]
                        **_auth(target), **_cluster_options(options))


def is_cluster(client_: Any) -> bool:
    """Whether `client_` is a cluster client (sync or asyncio)."""
    from redis.asyncio.cluster import RedisCluster as AsyncCluster
    from redis.cluster import RedisCluster

    return isinstance(client_, RedisCluster | AsyncCluster)


def outages() -> tuple[type[Exception], ...]:
    """The errors that mean "Redis is away": `RedisError`, `OSError`, and `RedisClusterException`, which is not a
    `RedisError` and is what a cluster client raises when no node answers or the slots are not all served."""
    from redis.exceptions import RedisClusterException, RedisError

    return (RedisError, OSError, RedisClusterException)


def _auth(target: RedisTarget) -> dict[str, Any]:
    return {k: v for k, v in (("username", target.username), ("password", target.password)) if v is not None}


def _sentinel(kind: Any, target: RedisTarget, options: dict[str, Any]) -> Any:
    asking = {k: v for k, v in options.items() if k.startswith("socket_")}
    sentinel = kind(list(target.nodes), sentinel_kwargs=asking, db=target.db, **_auth(target), **options)
    return sentinel.master_for(target.master)


def _cluster_options(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k not in _NOT_FOR_CLUSTER}
