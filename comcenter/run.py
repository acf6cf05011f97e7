"""`make run`: gunicorn and the django-q2 cluster as one foreground unit.

Ctrl-C or SIGTERM stops both; if either dies, the other is stopped too, so the unit never
half-runs (a web server accepting events that no worker will ever deliver).

Both children share one fresh PROMETHEUS_MULTIPROC_DIR, created here before either starts
and removed on exit, so /metrics (served by any web worker) also counts what the cluster's
workers did (delivery outcomes, end-to-end latency), and never values of an earlier run.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
GUNICORN_CONFIG = BASE_DIR / "deploy" / "gunicorn.conf.py"


def child_environment(*, metrics_dir: str, port: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    env["PORT"] = port
    # Python must not buffer JSON log lines of either child: they interleave on one stdout.
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("WEB_CONCURRENCY", "2")
    return env


def main() -> int:
    port = os.environ.get("PORT", "8000")
    python = sys.executable
    metrics_dir = tempfile.mkdtemp(prefix="comcenter-metrics-")
    env = child_environment(metrics_dir=metrics_dir, port=port)
    web = subprocess.Popen(
        [python, "-m", "gunicorn", "-c", str(GUNICORN_CONFIG), "comcenter.wsgi:application"],
        cwd=BASE_DIR,
        env=env,
    )
    # Workers at a lower CPU priority than the web server: on one machine the acknowledgement
    # is the latency-critical path; delivery is asynchronous and catches up.
    workers = subprocess.Popen(
        ["nice", "-n", "10", python, "manage.py", "qcluster"], cwd=BASE_DIR, env=env
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
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0 if stopping else 1


if __name__ == "__main__":
    sys.exit(main())
