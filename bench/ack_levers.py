"""CPU per request of the intake's fast paths, each switched off in turn, in one process.

    .venv/bin/python -m bench.ack_levers [--reps 40] [--requests 100]

Like bench/handler_cost.py (the WSGI application called in process for `POST /api/v1/events`,
a private PostgreSQL cluster, Prometheus in multiprocess mode as in production), but every
variant runs in the same process and the variants alternate every `--requests` requests, so
the load of a shared machine falls on all of them alike (separate runs of handler_cost swing
by a third on a loaded machine). The levers, each replaced by what it stands in for:

- M: the API chain's ApiMetricsMiddleware → django_prometheus's Before/After middleware;
- V: the validation fast path (events/serializers.py `internal_value`) → DRF's serializer;
- S: skipping the storability walk (`text_is_storable`) → walking every body;
- R: the intake's own rendering of its 202/200 (events/intake.py `_answer`) → DRF's Response;
- N: the intake's content negotiation shortcut (events/apis.py) → DRF's negotiation.

Prints, per variant, the median and minimum CPU µs per request, the median's difference from
all levers off, and the Python function calls per request (deterministic, whatever the load).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from typing import Any

from bench.handler_cost import _round
from bench.inprocess import django_on_private_cluster, intake_token

VARIANTS = {
    "all_off": "MVSRN",
    "all_on": "",
    "no_M": "M",
    "no_V": "V",
    "no_S": "S",
    "no_R": "R",
    "no_N": "N",
}


def _calls_per_request(app: Any, token: str, prefix: str, requests: int) -> float:
    count = 0

    def hook(frame: Any, event: str, arg: Any) -> None:
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    sys.setprofile(hook)
    try:
        _round(app, token, prefix=prefix, requests=requests)
    finally:
        sys.setprofile(None)
    return count / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=40)
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    # Removed with this object, when the process ends however it ends (its finalizer).
    metrics = tempfile.TemporaryDirectory(prefix="ack-levers-metrics-")
    metrics_dir = metrics.name
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # before prometheus_client loads
    with django_on_private_cluster("ack_levers", THROTTLE_INTAKE="1000000/s"):
        from django.conf import settings
        from django.core.handlers.wsgi import WSGIHandler
        from rest_framework.views import APIView

        from comcenter.lib import wsgi_routing
        from events import apis, intake

        token = intake_token()

        class DjangoPrometheusChain(wsgi_routing._ApiHandler):
            """The API chain as it was: django_prometheus's pair instead of the replacement."""

            def load_middleware(self, is_async: bool = False) -> None:
                full = settings.MIDDLEWARE
                settings.MIDDLEWARE = [
                    m
                    for m in full
                    if m not in wsgi_routing.API_SKIPPED_MIDDLEWARE
                    or m.startswith("django_prometheus.")
                ]
                try:
                    WSGIHandler.load_middleware(self, is_async)
                finally:
                    settings.MIDDLEWARE = full

        apps = {"on": wsgi_routing._ApiHandler(), "off": DjangoPrometheusChain()}
        original = {
            "internal_value": intake.internal_value,
            "text_is_storable": intake.text_is_storable,
            "JSONRenderer": intake.JSONRenderer,
            "negotiation": apis.EventListCreateApi.perform_content_negotiation,
        }

        def serializer_only(serializer: Any, data: Any) -> dict[str, Any]:
            return dict(serializer.run_validation(data))

        def always_walk(text: str, *, overflowed: bool) -> bool:
            return False

        def switch(off: str) -> Any:
            intake.internal_value = serializer_only if "V" in off else original["internal_value"]  # type: ignore[assignment]
            intake.text_is_storable = always_walk if "S" in off else original["text_is_storable"]  # type: ignore[assignment]
            intake.JSONRenderer = (
                type("NotJSONRenderer", (), {}) if "R" in off else original["JSONRenderer"]
            )  # type: ignore[misc]
            apis.EventListCreateApi.perform_content_negotiation = (  # type: ignore[method-assign]
                APIView.perform_content_negotiation if "N" in off else original["negotiation"]
            )
            return apps["off" if "M" in off else "on"]

        for name, off in VARIANTS.items():  # warm-up
            _round(switch(off), token, prefix=f"w-{name}", requests=50)
        costs: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for rep in range(args.reps):
            for name, off in VARIANTS.items():
                app = switch(off)
                costs[name].append(
                    _round(app, token, prefix=f"{name}-{rep}", requests=args.requests)
                )
        calls = {
            name: _calls_per_request(switch(off), token, f"c-{name}", 50)
            for name, off in VARIANTS.items()
        }
        switch("")
    base = statistics.median(costs["all_off"])
    for name, values in costs.items():
        median = statistics.median(values)
        print(
            f"{name:8s} median {median:6.0f} µs  min {min(values):6.0f} µs  "
            f"vs all off {median - base:+5.0f} µs  calls/request {calls[name]:5.0f}"
        )


if __name__ == "__main__":
    main()
