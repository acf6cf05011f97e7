"""The benchmark's private servers (bench/stack.py): a PostgreSQL cluster with production
defaults and a Redis server, both on loopback, both gone after `close()`."""

from __future__ import annotations

import shutil

import psycopg
import pytest
import redis

from bench.stack import private_stack, statements_reset, statements_top

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


def test_with_statements_it_counts_the_run_databases_statements_and_their_planning() -> None:
    stack = private_stack(statements=True)
    try:
        assert stack.settings["postgres"]["shared_preload_libraries"] == "pg_stat_statements"
        with psycopg.connect(stack.database_url, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (n int)")
            statements_reset(stack.database_url)
            for n in range(6):
                conn.execute("INSERT INTO t VALUES (%s)", [n])
        with psycopg.connect(stack.floor_database_url, autocommit=True) as conn:
            conn.execute("SELECT 42")  # another database: not the run's
        profile = statements_top(stack.database_url, events=3)
    finally:
        stack.close()
    inserts = [s for s in profile["top"] if s["query"].startswith("INSERT INTO t")]
    assert len(inserts) == 1
    assert inserts[0]["calls_per_event"] == 2.0  # 6 calls over 3 events
    assert inserts[0]["plan_ms_per_event"] > 0  # planning is counted
    assert inserts[0]["wal_records_per_event"] >= 2.0
    assert not any("42" in s["query"] for s in profile["top"])
    assert profile["calls_per_event"] >= 2.0
