"""WAL and PostgreSQL backend CPU per event, with the schema before and after the index
changes of events 0005, audit 0004 and delivery 0009, alternated in one process.

    .venv/bin/python -m bench.wal_cost [--events 3000] [--rounds 3]

On a private PostgreSQL cluster (bench/stack.py) with the demo routes (`load_demo`), each
round empties the event, message and lineage tables, migrates to one schema, checkpoints (so
every round starts with the same full-page writes to make), then stores the replay's new
events through `event_accept` (the intake) and runs `outbox_expand` + `dispatch_due` until
nothing is left (dry run), as bench/worker_cost.py does. For each phase it reads the WAL
written (`pg_current_wal_lsn()` and `pg_stat_wal`, the cluster serving only this script) and
the CPU of this connection's backend (/proc/<pg_backend_pid()>/stat). Prints the median per
event of each figure and schema as JSON.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
from collections.abc import Callable
from typing import Any

from bench.inprocess import django_on_private_cluster

SCHEMAS = {
    "before": [
        ("events", "0004_auth_pending_holds_no_key"),
        ("audit", "0003_append_only"),
        ("delivery", "0008_feedback"),
    ],
    "after": [
        ("events", "0005_no_request_recipient_index"),
        ("audit", "0004_audit_message_partial"),
        ("delivery", "0009_message_fewer_indexes"),
    ],
}
# The rows of a round; TRUNCATE skips the lineage's append-only row trigger, and CASCADE
# takes the attempts, receipts and tickets with them.
TABLES = (
    "events_event, delivery_message, delivery_lane, delivery_messagetally,"
    " audit_auditrecord, audit_auditseal"
)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _backend_cpu(pid: int) -> float:
    """User + system seconds of a PostgreSQL backend of this host."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _wal(cursor: Any) -> tuple[int, int, int]:
    """(bytes since 0/0, records, full-page images) of the cluster so far."""
    cursor.execute("SELECT pg_stat_force_next_flush()")
    cursor.execute(
        "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn, wal_records, wal_fpi FROM pg_stat_wal"
    )
    lsn, records, fpi = cursor.fetchone()
    return int(lsn), int(records), int(fpi)


def _measured(cursor: Any, pid: int, work: Callable[[], None]) -> dict[str, float]:
    wal_before, cpu_before = _wal(cursor), _backend_cpu(pid)
    work()
    cpu_after, wal_after = _backend_cpu(pid), _wal(cursor)
    return {
        "wal_bytes": wal_after[0] - wal_before[0],
        "wal_records": wal_after[1] - wal_before[1],
        "wal_fpi": wal_after[2] - wal_before[2],
        "backend_cpu_ms": (cpu_after - cpu_before) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each schema")
    args = parser.parse_args()
    os.environ.pop("REDIS_URL", None)  # the embedded cache and broker: no Redis to count
    with django_on_private_cluster("wal_cost"):
        from django.core.management import call_command
        from django.db import connection

        from bench.workload import generate
        from delivery.dispatcher import dispatch_due
        from delivery.outbox import outbox_expand
        from events.intake import validate_event
        from events.services import event_accept

        call_command("load_demo", stdout=io.StringIO())  # it prints a demo secret
        new = [r for r in generate(run="wal", total=args.events) if r.kind == "new"]
        payloads = [validate_event(json.loads(r.body), None) for r in new]

        def intake() -> None:
            for payload, key in payloads:
                event_accept(caller="svc:wal", payload=payload, idempotency_key=key, request_id="r")

        def deliver() -> None:
            while outbox_expand() + dispatch_due(budget_seconds=5.0).claimed:
                pass

        results: dict[str, list[dict[str, dict[str, float]]]] = {name: [] for name in SCHEMAS}
        for _ in range(args.rounds):
            for name, targets in SCHEMAS.items():
                with connection.cursor() as cursor:
                    cursor.execute(f"TRUNCATE {TABLES} CASCADE")
                for app, migration in targets:
                    call_command("migrate", app, migration, verbosity=0)
                with connection.cursor() as cursor:
                    cursor.execute("CHECKPOINT")
                    cursor.execute("SELECT pg_backend_pid()")
                    (pid,) = cursor.fetchone()
                    phases = {
                        "intake": _measured(cursor, pid, intake),
                        "deliver": _measured(cursor, pid, deliver),
                    }
                    cursor.execute("SELECT count(*) FROM delivery_message")
                    (messages,) = cursor.fetchone()
                    assert messages == 2 * len(payloads), messages
                results[name].append(phases)
    events = len(payloads)
    print(
        json.dumps(
            {
                "events": events,
                "rounds": args.rounds,
                "per_event_median": {
                    name: {
                        phase: {
                            figure: round(
                                statistics.median(r[phase][figure] for r in rounds) / events, 3
                            )
                            for figure in rounds[0][phase]
                        }
                        for phase in ("intake", "deliver")
                    }
                    for name, rounds in results.items()
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
