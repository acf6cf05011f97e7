"""`make run`: gunicorn and the django-q2 cluster as one foreground unit.

Ctrl-C or SIGTERM stops both; if either dies, the other is stopped too, so the unit never
half-runs (a web server accepting events that no worker will ever deliver)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


def main() -> int:
    port = os.environ.get("PORT", "8000")
    python = sys.executable
    web = subprocess.Popen(
        [
            python,
            "-m",
            "gunicorn",
            "comcenter.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            os.environ.get("WEB_CONCURRENCY", "2"),
            "--access-logfile",
            "-",
            "--access-logformat",
            '{"ts":"%(t)s","logger":"access","method":"%(m)s","path":"%(U)s",'
            '"status":%(s)s,"ms":%(M)s,"request_id":"%({x-request-id}o)s"}',
        ]
    )
    workers = subprocess.Popen([python, "manage.py", "qcluster"])
    children = [web, workers]
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print(f"comcenter: serving http://127.0.0.1:{port}/ (admin at /admin/, docs at /api/docs/)")
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
    return 0 if stopping else 1


if __name__ == "__main__":
    sys.exit(main())
