"""CPU per event of the delivery side in process: expansion and dry-run dispatch.

    .venv/bin/python -m bench.worker_cost [--events 3000] [--batch 500] [--profile]

On a private PostgreSQL cluster (bench/stack.py) with the demo routes (`load_demo`: two
event types, each routed to email and SMS), stores the replay's new events
(bench/workload.py) through the intake's validation and store, then times in this process
what the outbox consumer does with them: `outbox_expand` and `dispatch_due` until nothing is
left (dry run), and then the audit sealing of their lineage. `time.process_time()` counts
Django, the ORM, rendering and psycopg's client side; no django-q2 cluster, no web server.
Prints the CPU ms per event (this process, and its PostgreSQL backend read from /proc), the
lineage rows per event by kind, and with --profile the top of
a process-time cProfile.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import time
from collections.abc import Callable
from typing import Any

from bench.inprocess import django_on_private_cluster


def backend_cpu_seconds() -> float:
    """CPU time (user + system) of this connection's PostgreSQL backend so far: the private
    cluster runs on this machine, so /proc shows its process (fields 14 and 15 of stat)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _timed(work: Callable[[], Any], profiler: cProfile.Profile | None) -> tuple[float, float]:
    """CPU seconds of this process and of its database backend spent in `work`."""
    backend = backend_cpu_seconds()
    started = time.process_time()
    if profiler is not None:
        profiler.enable()
    work()
    if profiler is not None:
        profiler.disable()
    return time.process_time() - started, backend_cpu_seconds() - backend


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=3000)
    # Events per outbox_expand call: at 250 events/s the consumer's passes take ~125 each
    # (OUTBOX_GATHER_SECONDS, 0.5 s), so per-batch statements weigh more than in a 500-event
    # batch; --batch 50 is what the passes took with the earlier 0.2 s.
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    os.environ.pop("REDIS_URL", None)  # the embedded cache and broker: no Redis to count
    with django_on_private_cluster("worker_cost"):
        from django.core.management import call_command
        from django.db import connection

        from audit.services import audit_seal
        from bench.workload import generate
        from delivery.dispatcher import dispatch_due
        from delivery.outbox import outbox_expand
        from events.intake import validate_event
        from events.services import event_accept

        call_command("load_demo", stdout=io.StringIO())  # it prints a demo secret
        with connection.cursor() as cursor:
            cursor.execute("SELECT max(id) FROM audit_auditrecord")
            (before,) = cursor.fetchone()
        new = [r for r in generate(run="cost", total=args.events) if r.kind == "new"]
        for request in new:
            payload, key = validate_event(json.loads(request.body), None)
            event_accept(caller="svc:cost", payload=payload, idempotency_key=key, request_id="r")
        profiler = cProfile.Profile(time.process_time) if args.profile else None
        counts = {"events": 0, "messages": 0}

        def deliver() -> None:
            while True:
                events = outbox_expand(limit=args.batch)
                messages = dispatch_due(budget_seconds=5.0).claimed
                counts["events"] += events
                counts["messages"] += messages
                if not events and not messages:
                    return

        def seal() -> None:
            while audit_seal(batch=500, limit=500):
                pass

        deliver_cpu, deliver_db = _timed(deliver, profiler)
        seal_cpu, seal_db = _timed(seal, None)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT kind, count(*) FROM audit_auditrecord WHERE id > %s GROUP BY kind",
                [before or 0],
            )
            kinds = dict(cursor.fetchall())
            cursor.execute("SELECT state, count(*) FROM delivery_message GROUP BY state")
            states = dict(cursor.fetchall())
    events = len(new)
    print(
        json.dumps(
            {
                "events": events,
                "message_states": states,
                "cpu_ms_per_event": {
                    "deliver": round(deliver_cpu * 1000 / events, 3),
                    "seal": round(seal_cpu * 1000 / events, 3),
                },
                "database_cpu_ms_per_event": {
                    "deliver": round(deliver_db * 1000 / events, 3),
                    "seal": round(seal_db * 1000 / events, 3),
                },
                "lineage_rows_per_event": round(sum(kinds.values()) / events, 2),
                "lineage_rows_by_kind": kinds,
            },
            indent=2,
        )
    )
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(50)


if __name__ == "__main__":
    main()
