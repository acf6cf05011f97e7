"""The benchmark's private servers (bench/stack.py): a PostgreSQL cluster with production
defaults and a Redis server, both on loopback, both gone after `close()`."""

from __future__ import annotations

import shutil

import psycopg
import pytest
import redis

from bench.stack import private_stack

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not shutil.which("redis-server"), reason="the private stack needs redis-server"
    ),
]


def test_it_runs_a_fresh_cluster_with_production_defaults_and_removes_it() -> None:
    stack = private_stack()
    try:
        postgres = stack.settings["postgres"]
        assert isinstance(postgres, dict)
        assert postgres["autovacuum"] == "on"
        assert postgres["fsync"] == "on"
        assert postgres["synchronous_commit"] == "on"
        with psycopg.connect(stack.database_url) as conn:
            tables = conn.execute(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
            ).fetchone()
        assert tables == (0,)  # nothing carried from any earlier run
        client = redis.Redis.from_url(stack.redis_url)
        assert client.dbsize() == 0
        assert set(stack.pids) == {"database", "redis"}
    finally:
        stack.close()
    assert stack.cluster is not None
    assert not stack.cluster.directory.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(stack.database_url, connect_timeout=2)
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(stack.redis_url, socket_connect_timeout=1).ping()
