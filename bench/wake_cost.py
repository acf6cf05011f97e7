"""CPU per request of the intake with the outbox wake-up inline against coalesced per process.

    REDIS_URL=redis://127.0.0.1:6379/<db> .venv/bin/python -m bench.wake_cost [--requests 300]
        [--rounds 5] [--window 0.05]

As bench/handler_cost.py (in process, the API chain's WSGI application, a private PostgreSQL
cluster, `time.process_time()` of this process, which includes the flusher thread), but the
rounds alternate OUTBOX_WAKE_COALESCE_SECONDS between 0 (a wake per commit on the request
thread: the marker's SET NX, an enqueue when it was absent) and `--window`, so that drift and
other work on the machine fall on both alike. Without REDIS_URL the wake is an enqueue on the
ORM broker per commit (no shared marker). Prints the median CPU µs per request of each, their
difference and the median of the differences round by round; and the CPU the wake-up itself
took per request in those rounds, on the request thread and on the flusher thread (by their
own CPU clocks).

Then the wake alone, which the request's noise hides: `outbox_wake()` called at a fixed pace
(one commit per 2.5 ms, a web process near saturation, and per 16 ms, 250 events/s over four
processes) with the marker set (a consumer run queued, as under load), its CPU measured on the
calling thread and on the flusher thread by their own CPU clocks."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time

from bench.handler_cost import _round
from bench.inprocess import django_on_private_cluster, intake_token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--window", type=float, default=0.05)
    args = parser.parse_args()
    with django_on_private_cluster("wake_cost", THROTTLE_INTAKE="1000000/s"):
        from django.conf import settings

        from comcenter.lib.wsgi_routing import routed_application
        from events import services as event_services
        from events.handoff import outbox_wake_consumed, outbox_wake_stop

        token = intake_token()
        app = routed_application()
        windows = {"inline": 0.0, "coalesced": args.window}
        for name, window in windows.items():  # warm-up: imports, connections, caches
            settings.OUTBOX_WAKE_COALESCE_SECONDS = window
            _round(app, token, prefix=f"w-{name}", requests=50)
        costs: dict[str, list[float]] = {name: [] for name in windows}
        in_requests = {name: [0.0, 0.0] for name in windows}  # CPU s: request thread, flusher
        spent = [0.0]
        real_wake = event_services.outbox_wake

        def timed_wake() -> None:
            started = time.thread_time()
            real_wake()
            spent[0] += time.thread_time() - started

        event_services.outbox_wake = timed_wake  # what the intake registers on commit
        for n in range(args.rounds):
            for name, window in windows.items():
                settings.OUTBOX_WAKE_COALESCE_SECONDS = window
                spent[0], flusher_start = 0.0, _flusher_cpu()
                costs[name].append(_round(app, token, prefix=f"{name}-{n}", requests=args.requests))
                time.sleep(0.1)  # the round's last flush
                in_requests[name][0] += spent[0]
                in_requests[name][1] += _flusher_cpu() - flusher_start
        event_services.outbox_wake = real_wake
        alone = {
            f"{name}_every_{pace * 1e3:g}_ms": _wake_alone(window, pace=pace, commits=commits)
            for pace, commits in ((0.0025, 800), (0.016, 200))
            for name, window in windows.items()
        }
        outbox_wake_stop()
        # A marker left in a Redis that a cluster also uses would hold its wake-ups back.
        outbox_wake_consumed()
    inline, coalesced = (statistics.median(costs[name]) for name in windows)
    print(
        json.dumps(
            {
                "broker": "redis" if os.environ.get("REDIS_URL") else "orm",
                "window_seconds": args.window,
                "cpu_us_per_request_inline": round(inline),
                "cpu_us_per_request_coalesced": round(coalesced),
                "saving_us": round(inline - coalesced),
                # Of each round against the inline round just before it: less of the drift.
                "saving_us_paired_median": round(
                    statistics.median(a - b for a, b in zip(*costs.values(), strict=True))
                ),
                "rounds": {name: [round(c) for c in values] for name, values in costs.items()},
                "wake_in_requests_cpu_us_per_request": {
                    name: {
                        "request_thread": round(cpu[0] * 1e6 / (args.rounds * args.requests)),
                        "flusher_thread": round(cpu[1] * 1e6 / (args.rounds * args.requests)),
                    }
                    for name, cpu in in_requests.items()
                },
                "wake_alone_cpu_us_per_commit": alone,
            },
            indent=2,
        )
    )


def _flusher_cpu() -> float:
    """CPU seconds of this process's flusher thread so far (0 before it exists)."""
    flusher = next((t for t in threading.enumerate() if t.name == "outbox-wake"), None)
    if flusher is None or flusher.ident is None:
        return 0.0
    return time.clock_gettime(time.pthread_getcpuclockid(flusher.ident))


def _wake_alone(window: float, *, pace: float, commits: int) -> dict[str, int]:
    """CPU µs per commit of `outbox_wake()` alone: on the calling thread, in the flusher."""
    from django.conf import settings
    from django.core.cache import cache

    from events.handoff import WAKE_KEY, outbox_wake

    settings.OUTBOX_WAKE_COALESCE_SECONDS = window
    cache.set(WAKE_KEY, 1, timeout=30)  # the lifetime the wake gives it
    outbox_wake()  # starts the flusher when coalescing
    time.sleep(0.2)
    flusher_start = _flusher_cpu()
    calling = 0.0
    for _ in range(commits):
        time.sleep(pace)
        started = time.thread_time()
        outbox_wake()
        calling += time.thread_time() - started
    time.sleep(0.2)  # the last flush
    flusher_cpu = _flusher_cpu() - flusher_start
    return {
        "calling_thread": round(calling * 1e6 / commits),
        "flusher_thread": round(flusher_cpu * 1e6 / commits),
    }


if __name__ == "__main__":
    main()
