"""The system under test: comcenter on PostgreSQL and Redis, served by the web server of
BENCH_SERVER with the django-q2 cluster running, in dry-run, on 127.0.0.1 only; and the floor
project (bench/floor) on the same server and database cluster. Started and stopped by the replay.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from comcenter.lib.runtime_dir import fresh_runtime_dir
from comcenter.run import cluster_stop, web_command

ROOT = Path(__file__).resolve().parent.parent


def bench_environment(
    *,
    database_url: str,
    redis_url: str,
    web_workers: int,
    q_workers: int,
    port: int,
    metrics_dir: str,
) -> dict:
    """The environment of every process of the run (server, cluster, management commands)."""
    env = dict(os.environ)
    env.setdefault("SECRET_KEY", "bench-" + secrets.token_urlsafe(40))
    env.setdefault("AUDIT_KEY", "bench-" + secrets.token_urlsafe(40))
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        DJANGO_SETTINGS_MODULE="comcenter.settings",
        DEBUG="false",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        # Dry run: everything is rendered and recorded, nothing leaves the machine.
        DISABLE_SEND="true",
        DISPATCH_PAUSED="false",
        # One caller sends the whole replay: the per-caller intake throttle (a production
        # guard against one runaway client) must not be what the benchmark measures. A
        # one-second window also keeps DRF's throttle history (one timestamp per request in
        # the window, read and rewritten on every request) at about BENCH_RATE entries.
        THROTTLE_INTAKE=os.environ.get("BENCH_THROTTLE", "1000000/s"),
        ACCESS_TOKEN_TTL="3600",
        WEB_CONCURRENCY=str(web_workers),
        Q_WORKERS=str(q_workers or 1),  # 0 (ack path alone) starts no cluster at all
        GUNICORN_BIND=f"127.0.0.1:{port}",
        PROMETHEUS_MULTIPROC_DIR=metrics_dir,
        PYTHONUNBUFFERED="1",
    )
    return env


def floor_environment(env: dict, *, database_url: str, port: int) -> dict:
    """The floor project's environment: the run's, with its own settings, database and token."""
    return {
        **env,
        "DJANGO_SETTINGS_MODULE": "bench.floor.settings",
        "FLOOR_DATABASE_URL": database_url,
        "FLOOR_TOKEN": secrets.token_urlsafe(32),
        "GUNICORN_BIND": f"127.0.0.1:{port}",
    }


def manage(env: dict, *args: str) -> str:
    """Run a management command of the app; its stdout, or SystemExit with its stderr."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


@dataclass
class Credentials:
    client_id: str
    client_secret: str

    @property
    def caller(self) -> str:
        return f"sa:{self.client_id}"


def purge_stale_wakeups(redis_url: str) -> None:
    """Drop django-q2 tasks an aborted earlier run left in the benchmark's Redis queue.

    Each run signs its tasks with its own SECRET_KEY, so a leftover task cannot be read by
    this run's cluster (it would only log errors). Nothing is lost: tasks are wake-ups, and
    the database rows they point at are found again by the outbox sweeper and the dispatcher."""
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    for key in client.scan_iter(match="django_q:*:q"):
        client.delete(key)


def prepare(env: dict, *, run: str) -> Credentials:
    """Migrate, load the demo routes and templates, and create this run's service account."""
    purge_stale_wakeups(env["REDIS_URL"])
    manage(env, "migrate", "--noinput")
    manage(env, "load_demo")
    out = manage(
        env,
        "create_service_account",
        f"bench-{run}",
        "--scopes",
        "events:write,events:read",
        "--json",
    )
    account = json.loads(out.strip().splitlines()[-1])
    return Credentials(account["client_id"], account["client_secret"])


@dataclass
class Server:
    """The web server of `web_server` serving `target` (comcenter or the floor), and for
    comcenter `manage.py qcluster` unless `workers` is False; logging to `log_dir`."""

    env: dict
    log_dir: Path
    web_server: str = "gunicorn"
    target: str = "comcenter"
    workers: bool = True
    processes: list[subprocess.Popen] = field(default_factory=list)
    groups: list[subprocess.Popen] = field(default_factory=list)  # stopped as a whole group
    logs: list[IO[bytes]] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://{self.env['GUNICORN_BIND']}"

    def _spawn(self, name: str, args: list[str], *, group: bool = False) -> None:
        log = (self.log_dir / f"{name}.log").open("wb")
        self.logs.append(log)
        process = subprocess.Popen(
            args,
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=group,
        )
        self.processes.append(process)
        if group:
            self.groups.append(process)

    def start(self) -> None:
        python = sys.executable
        name = "web" if self.target == "comcenter" else "floor"
        self._spawn(
            name,
            web_command(
                server=self.web_server,
                target=self.target,
                bind=self.env["GUNICORN_BIND"],
                workers=int(self.env["WEB_CONCURRENCY"]),
            ),
        )
        # Workers run at a lower CPU priority than the web tier, as `make run` does: on one
        # small machine the acknowledgement is the latency-critical path, and delivery is
        # asynchronous by design (it catches up when intake slows).
        if self.workers:
            self._spawn(
                "workers", ["nice", "-n", "10", python, "manage.py", "qcluster"], group=True
            )
        deadline = time.monotonic() + 90
        while True:
            try:
                # Ready: every dependency answers (/health is 503 until then).
                urllib.request.urlopen(f"{self.base_url}/health", timeout=5).read()
                return
            except OSError:
                if any(p.poll() is not None for p in self.processes):
                    self.stop()
                    raise SystemExit(f"the server did not start; see {self.log_dir}") from None
                if time.monotonic() > deadline:
                    self.stop()
                    raise SystemExit("the server did not answer within 90 s") from None
                time.sleep(0.3)

    def pids(self) -> dict[str, int]:
        """The root pid of each component: "web", and "workers" when the cluster runs."""
        pids = {"web": self.processes[0].pid}
        if self.workers:
            pids["workers"] = self.processes[1].pid
        return pids

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.processes)

    def stop(self) -> None:
        for process in self.groups:
            cluster_stop(process, grace=20)
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in self.logs:
            log.close()
        shutil.rmtree(self.env["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def fetch_token(base_url: str, credentials: Credentials) -> str:
    body = json.dumps(
        {
            "grant_type": "client_credentials",
            "client_id": credentials.client_id,
            "client_secret": credentials.client_secret,
        }
    ).encode()
    request = urllib.request.Request(
        f"{base_url}/api/v1/auth/token",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["access_token"]


def new_metrics_dir() -> str:
    return fresh_runtime_dir("comcenter-bench-metrics-")
