"""`make run`: the web server (WEB_SERVER, default granian) and the django-q2 cluster as one
foreground unit.

Ctrl-C or SIGTERM stops both; if either dies, the other is stopped too, so the unit never
half-runs (a web server accepting events that no worker will ever deliver).

Both children share one fresh PROMETHEUS_MULTIPROC_DIR, created here before either starts
and removed on exit, so /metrics (served by any web worker) also counts what the cluster's
workers did (delivery outcomes, end-to-end latency), and never values of an earlier run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from comcenter.lib.runtime_dir import fresh_runtime_dir

BASE_DIR = Path(__file__).resolve().parent.parent
GUNICORN_CONFIG = BASE_DIR / "deploy" / "gunicorn.conf.py"
GRANIAN_LOGGING = BASE_DIR / "deploy" / "granian-logging.json"
DEFAULT_WEB_SERVER = "granian"
# granian: RSGI with bodies buffered on the event loop (comcenter/lib/rsgi.py); granian-wsgi:
# granian's WSGI interface (bodies streamed into the worker thread); gunicorn: sync workers.
WEB_SERVERS = ("granian", "granian-wsgi", "gunicorn")


def child_environment(*, metrics_dir: str, port: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    env["PORT"] = port
    # Python must not buffer JSON log lines of either child: they interleave on one stdout.
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("WEB_CONCURRENCY", "2")
    return env


def web_command(
    *, server: str, target: str, bind: str, workers: int, python: str = sys.executable
) -> list[str]:
    """The command line serving `target` (a project package with `wsgi`/`asgi` modules) on
    `bind` ("host:port") with `workers` processes, by `server`: see WEB_SERVERS."""
    host, _, port = bind.rpartition(":")
    if server == "gunicorn":
        return [
            python,
            "-m",
            "gunicorn",
            "-c",
            str(GUNICORN_CONFIG),
            "--bind",
            bind,
            "--workers",
            str(workers),
            f"{target}.wsgi:application",
        ]
    interface = {"granian": "rsgi", "granian-wsgi": "wsgi"}.get(server)
    if interface is None:
        raise SystemExit(f"unknown web server {server!r}: one of {', '.join(WEB_SERVERS)}")
    return [
        python,
        "-m",
        "granian",
        "--interface",
        interface,
        # Its own lines as JSON, like every other process (no access log: see deploy/).
        "--log-config",
        str(GRANIAN_LOGGING),
        "--host",
        host,
        "--port",
        port,
        "--workers",
        str(workers),
        "--blocking-threads",
        "1",
        "--no-ws",
        # Supervision: a worker that dies is started again; `kill -HUP` replaces the workers
        # one by one (each new one started before its old one is stopped), loading new code.
        "--respawn-failed-workers",
        "--workers-kill-timeout",
        "20",
        f"{target}.{interface}:application",
    ]


def cluster_stop(cluster: subprocess.Popen, *, grace: float, patience: float = 2.0) -> None:
    """Stop a `qcluster` started in its own process group, leaving no process behind.

    First the graceful way: SIGTERM to django-q2's main process, which stops the cluster and
    waits for each worker to finish its task. A task may loop for a minute (the delivery
    ticker), so after `patience` seconds the cluster's worker processes get SIGTERM too and
    end at once. (Never the main process and its sentinel at the same time as the workers:
    a sentinel killed while it waits on the stop event leaves the main process blocked
    forever in Event.set().) A worker ended mid-send is the crash the dispatcher is built for:
    its lease runs out; at most one duplicate, which Message-ID / Idempotency-Key let the
    receiver drop. Whatever is left after `grace` seconds is killed, group and all: a killed
    main process must not leave orphaned workers dispatching on their own."""
    with contextlib.suppress(ProcessLookupError):
        cluster.send_signal(signal.SIGTERM)
    try:
        cluster.wait(timeout=patience)
    except subprocess.TimeoutExpired:
        for pid in _grandchildren(cluster.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            cluster.wait(timeout=max(0.0, grace - patience))
    with contextlib.suppress(ProcessLookupError):
        os.killpg(cluster.pid, signal.SIGKILL)
    cluster.wait()


def _grandchildren(pid: int) -> list[int]:
    """The processes of `pid`'s group two or more levels below it (django-q2's workers,
    monitor and pusher under its sentinel), read from /proc; none where there is no /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pid:  # its process group
            parents[int(entry.name)] = int(fields[1])
    return [p for p, parent in parents.items() if p != pid and parent != pid]


def main() -> int:
    port = os.environ.get("PORT", "8000")
    python = sys.executable
    metrics_dir = fresh_runtime_dir("comcenter-metrics-")
    env = child_environment(metrics_dir=metrics_dir, port=port)
    web = subprocess.Popen(
        web_command(
            server=os.environ.get("WEB_SERVER", DEFAULT_WEB_SERVER),
            target="comcenter",
            bind=os.environ.get("WEB_BIND") or f"127.0.0.1:{port}",
            workers=int(env["WEB_CONCURRENCY"]),
        ),
        cwd=BASE_DIR,
        env=env,
    )
    # Workers at a lower CPU priority than the web server: on one machine the acknowledgement
    # is the latency-critical path; delivery is asynchronous and catches up. In a process
    # group of their own, so that stopping reaches every process of the cluster.
    workers = subprocess.Popen(
        ["nice", "-n", "10", python, "manage.py", "qcluster"],
        cwd=BASE_DIR,
        env=env,
        start_new_session=True,
    )
    children = [web, workers]
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print(
        f"comcenter: serving http://127.0.0.1:{port}/ "
        "(admin at /admin/, docs at /api/docs/, canary at /canary)",
        flush=True,
    )
    while not stopping and all(child.poll() is None for child in children):
        time.sleep(0.2)
    if web.poll() is None:
        web.send_signal(signal.SIGTERM)
    cluster_stop(workers, grace=15)
    try:
        web.wait(timeout=15)
    except subprocess.TimeoutExpired:
        web.kill()
        web.wait()
    shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0 if stopping else 1


if __name__ == "__main__":
    sys.exit(main())
