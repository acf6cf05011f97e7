"""A PostgreSQL cluster and a Redis server of the benchmark's own, started for one run.

Each run gets a cluster made by `initdb` in a temporary directory and a Redis server, both on
free loopback ports, and removes both at the end: nothing is carried from one run to the next
(no dead tuples, no table history, no queued tasks), and nothing another user of the machine
configured (the shared server here runs with autovacuum off) changes the figures.

The cluster keeps PostgreSQL's own defaults, which are what a production install starts from:
autovacuum on, fsync on, synchronous_commit on, shared_buffers 128 MB. Only where it listens is
set. Redis runs without persistence (no RDB snapshot, no AOF): comcenter keeps nothing in Redis
that must survive a restart (wake-ups, throttles, cached flags).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

# What `settings()` records: the knobs that change a write-heavy benchmark's figures.
POSTGRES_SETTINGS = (
    "server_version",
    "autovacuum",
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_level",
    "shared_buffers",
    "max_wal_size",
    "checkpoint_timeout",
    "max_connections",
    "shared_preload_libraries",
)

# BENCH_PG_STATEMENTS=1: the settings that make the cluster count its statements
# (pg_stat_statements, planning included: the parse and plan of statements that are not
# prepared is a share of the database's CPU that execution times alone do not show).
STATEMENT_SETTINGS = (
    "shared_preload_libraries=pg_stat_statements",
    "pg_stat_statements.track=all",
    "pg_stat_statements.track_planning=on",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _postgres_bin(name: str) -> str:
    """`initdb` and `postgres` of the newest installed major version (Debian keeps them out of
    PATH), else whatever PATH has."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    for directory in reversed(versions):
        if (directory / name).exists():
            return str(directory / name)
    found = shutil.which(name)
    if not found:
        raise SystemExit(f"{name} not found: install PostgreSQL's server package")
    return found


def _as_postgres_user() -> list[str]:
    """initdb and postgres refuse to run as root: as root, run them as the `postgres` user."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


@dataclass
class PostgresCluster:
    """`initdb` + `postgres` in a temporary directory, listening on 127.0.0.1:`port`."""

    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="cc-bench-pg-")))
    port: int = field(default_factory=free_port)
    # Extra `-c name=value` settings of the server (e.g. STATEMENT_SETTINGS).
    options: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        prefix = _as_postgres_user()
        if prefix:
            shutil.chown(self.directory, user="postgres")
        # --no-sync: only initdb's own flush of the new files is skipped; the server runs
        # with fsync on like any production server.
        subprocess.run(
            [
                *prefix,
                _postgres_bin("initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        log = (self.directory / "postgres.log").open("wb")
        self.process = subprocess.Popen(
            [
                *prefix,
                _postgres_bin("postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={self.directory}",
                *(arg for option in self.options for arg in ("-c", option)),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self._wait_ready()

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + 60
        while True:
            try:
                psycopg.connect(self.url("postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if self.process is not None and self.process.poll() is not None:
                    raise SystemExit(
                        f"PostgreSQL did not start; see {self.directory}/postgres.log"
                    ) from None
                if time.monotonic() > deadline:
                    raise SystemExit("PostgreSQL did not accept connections within 60 s") from None
                time.sleep(0.2)

    @property
    def pid(self) -> int:
        """The postmaster's pid (under runuser, its child: runuser execs nothing itself)."""
        assert self.process is not None
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def create_database(self, name: str) -> str:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            # SIGINT to the postmaster: PostgreSQL's "fast" shutdown.
            with contextlib.suppress(OSError, ValueError):
                os.kill(self.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError, ValueError):
                    os.kill(self.pid, signal.SIGQUIT)
                self.process.wait(timeout=30)
        shutil.rmtree(self.directory, ignore_errors=True)


def postgres_settings(url: str) -> dict[str, str]:
    """The settings of POSTGRES_SETTINGS as the server reports them (`SHOW`)."""
    import psycopg

    with psycopg.connect(url) as conn:
        return {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in POSTGRES_SETTINGS}


@dataclass
class RedisServer:
    """`redis-server` on 127.0.0.1:`port`, no persistence, its files in a temporary directory."""

    directory: Path = field(
        default_factory=lambda: Path(tempfile.mkdtemp(prefix="cc-bench-redis-"))
    )
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if not binary:
            raise SystemExit("redis-server not found: install Redis")
        self.process = subprocess.Popen(
            [
                binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=(self.directory / "redis.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        import redis

        deadline = time.monotonic() + 30
        while True:
            try:
                redis.Redis.from_url(self.url(), socket_timeout=1).ping()
                return
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"Redis did not start; see {self.directory}") from None
                time.sleep(0.1)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def settings(self) -> dict[str, str]:
        import redis

        client = redis.Redis.from_url(self.url(), decode_responses=True)
        info = client.info("server")
        config = client.config_get("save") | client.config_get("appendonly")
        return {"redis_version": info["redis_version"], **config}

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


@dataclass
class Stack:
    """Where a run's data lives: its database, the floor's database and its Redis database,
    the root pids of the servers whose CPU is the run's alone (empty for shared servers), the
    servers' settings, and what stops them."""

    kind: str
    database_url: str
    floor_database_url: str
    redis_url: str
    pids: dict[str, int]
    settings: dict[str, object]
    cluster: PostgresCluster | None = None
    redis: RedisServer | None = None
    # The cluster counts statements (private_stack(statements=True)).
    statements: bool = False

    def close(self) -> None:
        for server in (self.cluster, self.redis):
            if server is not None:
                server.stop()


def private_stack(*, statements: bool = False) -> Stack:
    """A new PostgreSQL cluster and Redis server for this run alone (stopped by `close`);
    with `statements`, the cluster counts the statements of the run's database
    (statements_reset, statements_top)."""
    extra = tuple(o for o in os.environ.get("BENCH_PG_OPTIONS", "").split(";") if o)
    cluster = PostgresCluster(options=(STATEMENT_SETTINGS if statements else ()) + extra)
    redis_server = RedisServer()
    try:
        cluster.start()
        redis_server.start()
        database_url = cluster.create_database("comcenter_bench")
        floor_url = cluster.create_database("floor")
        if statements:
            import psycopg

            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION pg_stat_statements")
    except BaseException:
        cluster.stop()
        redis_server.stop()
        raise
    assert cluster.process is not None
    return Stack(
        kind="private",
        database_url=database_url,
        floor_database_url=floor_url,
        redis_url=redis_server.url(),
        pids={"database": cluster.process.pid, "redis": redis_server.pid},
        settings={
            "postgres": postgres_settings(database_url),
            "postgres_options": list(cluster.options),
            "redis": redis_server.settings(),
        },
        cluster=cluster,
        redis=redis_server,
        statements=statements,
    )


def shared_stack(database_url: str, redis_url: str) -> Stack:
    """The servers named by the URLs, shared with other work: the databases are created if
    missing (the run's service account scopes its checks), and their CPU is not attributed
    (it would count whatever else they serve)."""
    import psycopg
    from psycopg import sql

    if not database_url.startswith(("postgres://", "postgresql://")):
        raise SystemExit("the replay runs on PostgreSQL: set DATABASE_URL=postgres://…")
    base, _, name = database_url.rpartition("/")
    name = name.split("?")[0]
    floor_name = f"{name}_floor"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        for database in (name, floor_name):
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [database]
            ).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    return Stack(
        kind="shared",
        database_url=database_url,
        floor_database_url=f"{base}/{floor_name}",
        redis_url=redis_url,
        pids={},
        settings={"postgres": postgres_settings(database_url)},
    )


def statements_reset(database_url: str) -> None:
    """Forget the statements counted so far (the cluster's, all databases)."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")


# Of the run's database only: the floor's statements and the bench's own checks on other
# connections are in other databases or after the window.
_TOP_STATEMENTS = """
SELECT query, calls, rows, total_plan_time, total_exec_time, wal_records, wal_bytes
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
ORDER BY total_plan_time + total_exec_time DESC
LIMIT %s
"""


def statements_top(database_url: str, *, events: int, limit: int = 40) -> dict[str, object]:
    """The `limit` statements of the run's database that took the most time (planning plus
    execution) since statements_reset, with per-event figures over `events`, and the totals
    of all of them."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(_TOP_STATEMENTS, [limit]).fetchall()
        totals = conn.execute(
            "SELECT count(*), sum(calls), sum(total_plan_time), sum(total_exec_time), "
            "sum(wal_records) FROM pg_stat_statements WHERE dbid = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())"
        ).fetchone()
    per = max(events, 1)
    statements, calls, plan_ms, exec_ms, wal = totals or (0, 0, 0.0, 0.0, 0)
    return {
        "events": events,
        "statements": statements,
        "calls_per_event": round(float(calls or 0) / per, 2),
        "plan_ms_per_event": round(float(plan_ms or 0) / per, 4),
        "exec_ms_per_event": round(float(exec_ms or 0) / per, 4),
        "wal_records_per_event": round(float(wal or 0) / per, 2),
        "top": [
            {
                "query": query[:300],
                "calls_per_event": round(calls / per, 3),
                "rows_per_call": round(rows / calls, 2) if calls else None,
                "plan_ms_per_event": round(plan / per, 4),
                "exec_ms_per_event": round(execute / per, 4),
                "wal_records_per_event": round(float(wal_records) / per, 2),
                "wal_bytes_per_event": round(float(wal_bytes) / per),
            }
            for query, calls, rows, plan, execute, wal_records, wal_bytes in rows
        ],
    }
