"""CPU per request of Django's handler on the intake, full middleware chain against the API's.

    .venv/bin/python -m bench.handler_cost [--requests 300] [--rounds 5] [--multiprocess-metrics]

In process, no web server and no network: the WSGI application is called with a prepared
environ for `POST /api/v1/events` (a new event each time, a real bearer token), on a private
PostgreSQL cluster (bench/stack.py). `time.process_time()` of this process is what is counted
(Django, DRF, the intake, psycopg's client side); the rounds alternate the two handlers, so
drift and other work on the machine fall on both alike. Prints the median CPU µs per request
of each and their difference: the saving of comcenter/lib/wsgi_routing.py. With
`--multiprocess-metrics` the Prometheus metrics are kept in a PROMETHEUS_MULTIPROC_DIR, as under
gunicorn and granian in production (each increment writes a memory-mapped file).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

from bench.inprocess import django_on_private_cluster, intake_token


def wsgi_environ(
    *, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """A WSGI environ for a request to 127.0.0.1 with `headers` (as `X-Name: value`)."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_HOST": "127.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    return environ


def _round(app: Callable[..., Any], token: str, *, prefix: str, requests: int) -> float:
    """CPU µs per request over `requests` new events."""
    statuses: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        statuses.append(status)

    started = time.process_time()
    for n in range(requests):
        body = json.dumps(
            {
                "event_type": "deadline_soon",
                "idempotency_key": f"{prefix}-{n}",
                "recipient": {"id": f"r-{n % 50}", "email": f"r{n % 50}@example.org"},
                "data": {"n": n},
            }
        ).encode()
        environ = wsgi_environ(
            method="POST",
            path="/api/v1/events",
            body=body,
            headers={"Authorization": f"Bearer {token}"},
        )
        b"".join(app(environ, start_response))
    spent = time.process_time() - started
    if any(not s.startswith("202") for s in statuses):
        raise SystemExit(f"unexpected answers: {sorted(set(statuses))}")
    return spent * 1e6 / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--multiprocess-metrics", action="store_true")
    args = parser.parse_args()
    # Removed with this object, when the process ends however it ends (its finalizer).
    metrics = tempfile.TemporaryDirectory(prefix="handler-cost-metrics-")
    metrics_dir = metrics.name
    if args.multiprocess_metrics:  # before prometheus_client is imported
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    with django_on_private_cluster("handler_cost", THROTTLE_INTAKE="1000000/s"):
        from django.core.wsgi import get_wsgi_application

        from comcenter.lib.wsgi_routing import routed_application

        token = intake_token()
        handlers = {"full": get_wsgi_application(), "api": routed_application()}
        for name, app in handlers.items():  # warm-up: imports, connections, caches
            _round(app, token, prefix=f"w-{name}", requests=50)
        costs: dict[str, list[float]] = {name: [] for name in handlers}
        for n in range(args.rounds):
            for name, app in handlers.items():
                costs[name].append(_round(app, token, prefix=f"{name}-{n}", requests=args.requests))
    full, api = (statistics.median(costs[name]) for name in ("full", "api"))
    print(
        json.dumps(
            {
                "cpu_us_per_request_full_chain": round(full),
                "cpu_us_per_request_api_chain": round(api),
                "saving_us": round(full - api),
                "min_us": {name: round(min(values)) for name, values in costs.items()},
                "rounds": {name: [round(c) for c in values] for name, values in costs.items()},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
