"""gunicorn settings for comcenter: `gunicorn -c deploy/gunicorn.conf.py comcenter.wsgi`.

Used by `make run` (comcenter/run.py), the replay benchmark and production alike. Every value
can be overridden from the environment (names below) or the command line.

Why these choices:
- **sync workers**, WEB_CONCURRENCY of them (default 4 on the 2-core reference machine): the
  intake is short CPU-bound requests with one database transaction each; sync workers were
  measured steadier than gthread for it (lower P99 at the same throughput, see
  the README's Performance section). Put a buffering proxy (nginx, a cloud load balancer) in
  front, as gunicorn's documentation requires for sync workers.
- **metrics in multiprocess mode**: PROMETHEUS_MULTIPROC_DIR must be set before any worker
  imports prometheus_client. If the environment does not name a directory, a fresh private one
  is created here, in memory where it can be (comcenter/lib/runtime_dir.py), so it never
  holds values of an earlier run; if it does, whoever created it (the launcher, the service
  manager) must empty it before start. `child_exit` retires a
  dead worker's live-gauge files.
- **preload_app**: workers fork from a master that already imported the app.
- **JSON logs on stdout** for the server and the access log (comcenter/lib/gunicorn_logging.py).
- **no gunicorn-level proxy trust**: whether `X-Forwarded-Proto` makes a request HTTPS is
  decided by Django alone (TRUST_PROXY_HEADERS), not also by gunicorn's own list.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

# The project's root, for its modules: gunicorn reads this file before it puts the app's
# directory on the path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from comcenter.lib.runtime_dir import fresh_runtime_dir, shared_memory

if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = fresh_runtime_dir("comcenter-metrics-")

bind = os.environ.get("GUNICORN_BIND", f"127.0.0.1:{os.environ.get('PORT', '8000')}")
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
worker_class = "sync"
# Each worker's heartbeat file, touched on every loop: in memory, as gunicorn's documentation
# advises, so a disk's journal never stalls a worker (comcenter/lib/runtime_dir.py).
worker_tmp_dir = shared_memory()
# Import Django once in the master and fork ready workers: a worker (re)starts in
# milliseconds instead of re-importing everything, and the code pages are shared. Safe here:
# nothing opens a database, Redis or broker connection at import time (all are lazy and
# per process). The price: `kill -HUP` does not load new code; deploy by restarting.
preload_app = True
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 20
# Off by default: each recycled worker leaves its counter files behind (they must stay, or
# counters would drop), and thousands of them slow every scrape. Set it to contain a leak.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "0"))
max_requests_jitter = max_requests // 10
backlog = 2048

# Empty: no access log (it costs ~0.2 ms of CPU per request, measured on the ack path).
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-") or None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
logger_class = "comcenter.lib.gunicorn_logging.GunicornJsonLogger"

secure_scheme_headers: dict[str, str] = {}
forwarded_allow_ips = ""


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
