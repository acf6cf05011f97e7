"""CPU of one idle pass of the delivery ticker, in process.

    .venv/bin/python -m bench.tick_cost [--passes 100] [--profile]

The ticker (delivery/tasks.py `tick`) makes a pass every TICK_IDLE_SLEEP (0.25 s) while
there is nothing to do, so what an idle pass costs is paid four times a second by every
installation, busy or not (at 250 events/s, 10 ms a pass is 0.16 ms per event). On a private
PostgreSQL cluster and Redis server (bench/stack.py) with the demo routes and no events,
this times `tick_pass` and the TICKER_HOOKS after it with `time.process_time()` and prints
the CPU ms per pass, its PostgreSQL backend's too (and with --profile the top of a
process-time cProfile).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import time

from bench.inprocess import django_on_private_cluster
from bench.stack import RedisServer
from bench.worker_cost import backend_cpu_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--passes", type=int, default=100)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    redis_server = RedisServer()
    redis_server.start()
    try:
        with django_on_private_cluster("tick_cost", REDIS_URL=redis_server.url()):
            from django.conf import settings
            from django.core.management import call_command
            from django.utils.module_loading import import_string

            from delivery.tasks import TICK_PASS_BUDGET, tick_pass

            call_command("load_demo", stdout=io.StringIO())  # it prints a demo secret
            hooks = [import_string(path) for path in settings.TICKER_HOOKS]

            def one_pass() -> None:
                tick_pass(budget_seconds=TICK_PASS_BUDGET)
                for hook in hooks:
                    hook()

            for _ in range(20):  # warm-up: imports, connections, compiled statements
                one_pass()
            backend = backend_cpu_seconds()
            started = time.process_time()
            for _ in range(args.passes):
                one_pass()
            per_pass = (time.process_time() - started) * 1000 / args.passes
            per_pass_db = (backend_cpu_seconds() - backend) * 1000 / args.passes
            profiler = cProfile.Profile(time.process_time) if args.profile else None
            if profiler is not None:
                profiler.enable()
                for _ in range(args.passes):
                    one_pass()
                profiler.disable()
    finally:
        redis_server.stop()
    print(
        json.dumps(
            {
                "passes": args.passes,
                "cpu_ms_per_idle_pass": round(per_pass, 2),
                "database_cpu_ms_per_idle_pass": round(per_pass_db, 2),
            }
        )
    )
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)


if __name__ == "__main__":
    main()
