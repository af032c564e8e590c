"""`otel_session.live.urls` clients on real topologies: a three-master Redis Cluster and a Sentinel-watched
master, both `redis-server` processes of this module (tests.helpers.redis_topologies)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import pytest

from otel_session.live import urls
from tests.helpers.redis_topologies import Cluster, Sentinel
from tests.helpers.support import wait_for

PASSWORD = "cluster-pa55"
log = logging.getLogger("tests.topologies")


@pytest.fixture(scope="module")
def cluster():
    with Cluster(masters=3, password=PASSWORD) as running:
        yield running


@pytest.fixture(scope="module")
def sentinel():
    with Sentinel() as running:
        yield running


def test_a_cluster_url_reaches_every_master(cluster):
    client = urls.client(cluster.url, decode_responses=True, socket_timeout=2)
    try:
        assert urls.is_cluster(client)
        keys = [f"k{i}" for i in range(30)]
        owners = {cluster.owner(key) for key in keys}
        assert owners == set(cluster.ports)  # the keys really are spread over the three masters
        for key in keys:
            client.set(key, key.upper())
        assert [client.get(key) for key in keys] == [key.upper() for key in keys]
    finally:
        client.close()


def test_an_asyncio_cluster_client_runs_scripts_across_masters(cluster):
    async def main() -> list[str]:
        client = urls.async_client(cluster.url, decode_responses=True, socket_timeout=2)
        try:
            assert urls.is_cluster(client)
            script = client.register_script("redis.call('SET', KEYS[1], ARGV[1]) return redis.call('GET', KEYS[1])")
            return [await script(keys=[f"{{t{i}}}:x"], args=[str(i)]) for i in range(6)]
        finally:
            await client.aclose()

    assert asyncio.run(main()) == [str(i) for i in range(6)]


def test_the_cluster_password_goes_to_the_nodes(cluster):
    from redis.exceptions import AuthenticationError, RedisClusterException

    assert f":{PASSWORD}@" in cluster.url
    with pytest.raises((AuthenticationError, RedisClusterException), match="password"):
        urls.client(cluster.url.replace(PASSWORD, "wrong"), socket_timeout=2).ping()


def test_a_sentinel_url_writes_to_the_master(sentinel):
    client = urls.client(sentinel.url, decode_responses=True, socket_timeout=2)
    try:
        assert not urls.is_cluster(client)
        client.set("where", "master")
        info = client.info("replication")
        assert info["role"] == "master"
        assert sentinel.master_port == int(client.connection_pool.get_master_address()[1])
    finally:
        client.close()


def test_an_asyncio_sentinel_client_and_its_db(sentinel):
    async def main() -> tuple[str | None, str | None]:
        on_db = urls.async_client(sentinel.url + "/2", decode_responses=True, socket_timeout=2)
        on_zero = urls.async_client(sentinel.url, decode_responses=True, socket_timeout=2)
        try:
            await on_db.set("db-probe", "two")
            return await on_db.get("db-probe"), await on_zero.get("db-probe")
        finally:
            await on_db.aclose()
            await on_zero.aclose()

    assert asyncio.run(main()) == ("two", None)


def test_an_unknown_master_name_fails_on_use(sentinel):
    from redis.sentinel import MasterNotFoundError

    client = urls.client(sentinel.url.rsplit("/", 1)[0] + "/nosuchmaster", socket_timeout=2)
    with pytest.raises(MasterNotFoundError):
        client.ping()


@pytest.mark.parametrize("topology", ["cluster", "sentinel"])
def test_this_process_honours_grants_held_on_the_topology(request, otel_logs, monkeypatch, topology):
    """The library end to end: `configure(redis_url=)` watches the grants that `otel_session.grants` makes."""
    from otel_session import grants, session

    url = request.getfixturevalue(topology).url
    prefix = f"test-{uuid.uuid4().hex[:10]}:"
    monkeypatch.setenv("OTEL_SESSION_REDIS_PREFIX", prefix)
    otel_logs.configure(redis_url=url)

    def debug_seen(text: str) -> bool:
        with session(session_id="s-topology"):
            log.debug(text)
        return text in otel_logs.messages()

    assert not debug_seen("before the grant")
    made = grants.grant(session_id="s-topology", ttl_s=60, reason="topology", by="tests", redis_url=url)
    wait_for(lambda: debug_seen(f"granted {time.monotonic()}"), 5, interval=0.1, what="the grant here")
    assert [g.id for g in grants.active(redis_url=url)] == [made.id]
    grants.revoke(made.id, by="tests", redis_url=url)
    wait_for(lambda: not debug_seen(f"revoked {time.monotonic()}"), 5, interval=0.1, what="the revoke here")
    events = wait_for(lambda: (e := grants.audit(redis_url=url)) and len(e) >= 3 and e, 5, what="the use audited")
    assert sorted(e["event"] for e in events) == ["created", "revoked", "used"]
    assert {e["grant_id"] for e in events} == {made.id}
