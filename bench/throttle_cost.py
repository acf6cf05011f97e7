"""CPU of the intake throttle per request on the ack path, by the quota chunk a process reserves.

    REDIS_URL=redis://127.0.0.1:6379/<db> .venv/bin/python -m bench.throttle_cost [--rounds 5]

In process, as bench/handler_cost.py: `POST /api/v1/events` through the API's handler on a
private PostgreSQL cluster, with the throttle counting in the Redis of REDIS_URL.
`IntakeThrottle.allow_request` is wrapped to add up its `time.process_time()`; the rounds
alternate the chunk caps, so drift and other work on the machine fall on all alike. Chunk 1 is
one INCRBY + EXPIRE pipeline per request, the throttle before quota reservation. Prints the
median CPU µs of the throttle per request for each cap, and of the whole request.

A tight loop of `LocalQuota.take` alone put the round trip at ~60 µs, a third of the figure here:
inside a request the Redis client's code and data are no longer in the CPU's caches.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any

from bench.handler_cost import _round
from bench.inprocess import django_on_private_cluster, intake_token

CAPS = [1, 8, 16, 32]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if not os.environ.get("REDIS_URL"):
        raise SystemExit("set REDIS_URL: the figure is the round trip to a real Redis")
    with django_on_private_cluster("throttle_cost", THROTTLE_INTAKE="1000000/s"):
        from comcenter.lib.wsgi_routing import routed_application
        from identity import throttles

        token = intake_token()
        spent = [0.0, 0]
        allow_request = throttles.IntakeThrottle.allow_request

        def timed(self: Any, request: Any, view: Any) -> bool:
            started = time.process_time()
            allowed = allow_request(self, request, view)
            spent[0] += time.process_time() - started
            spent[1] += 1
            return allowed

        throttles.IntakeThrottle.allow_request = timed  # type: ignore[method-assign]
        app = routed_application()
        _round(app, token, prefix="warm-up", requests=50)
        throttle: dict[int, list[float]] = {cap: [] for cap in CAPS}
        request: dict[int, list[float]] = {cap: [] for cap in CAPS}
        for n in range(args.rounds):
            for cap in CAPS:
                throttles.CHUNK_MAX = cap
                spent[:] = [0.0, 0]
                request[cap].append(_round(app, token, prefix=f"{cap}-{n}", requests=args.requests))
                throttle[cap].append(spent[0] * 1e6 / spent[1])
    print(
        json.dumps(
            {
                "throttle_cpu_us_per_request_by_chunk": {
                    cap: round(statistics.median(values), 1) for cap, values in throttle.items()
                },
                "request_cpu_us_by_chunk": {
                    cap: round(statistics.median(values)) for cap, values in request.items()
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
