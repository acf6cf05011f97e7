"""CPU of the intake statement per event, on the client and in the PostgreSQL backend.

    .venv/bin/python -m bench.intake_cost [--events 2000] [--rounds 6]

In process, on a private PostgreSQL cluster (bench/inprocess.py): `events.services.event_accept`
called for new events, with the statement sent either prepared through the driver's cursor
(`prepared`, the intake as it is) or through Django's cursor, whose client-side binding makes
PostgreSQL parse and plan it on every call (`django_cursor`, the intake before it was
prepared). Counted per variant: `time.process_time()` of this process (Django, the intake,
psycopg's client side) and the CPU of this connection's backend, read from
/proc/<pg_backend_pid()>/stat (utime + stime; the cluster runs on this machine). The outbox
wake-up is switched off, so that neither figure includes the broker. The rounds alternate the
variants, the order flipped every round, so drift and other work on the machine fall on both
alike. Prints the medians per event as JSON and writes nothing else.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.inprocess import EVENT_TYPE, django_on_private_cluster

_TICK = os.sysconf("SC_CLK_TCK")


def _backend_seconds(pid: int) -> float:
    # The command name (field 2) may hold spaces and parentheses: split after it.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime stime


def _payload(n: int) -> dict[str, Any]:
    """A validated body as the intake's validation hands it over (a datetime, a sequence)."""
    return {
        "event_type": EVENT_TYPE,
        "ordering_key": f"k-{n % 50}",
        "sequence": n + 1,
        "recipient": {"id": f"r-{n % 50}", "email": f"r{n % 50}@example.org", "locale": "en"},
        "data": {"scholarship": "STEM Futures", "deadline": "2026-12-01", "n": n},
        "occurred_at": datetime(2026, 11, 21, 20, 0, tzinfo=UTC),
    }


def _round(backend: int, *, prefix: str, events: int) -> tuple[float, float]:
    """(client µs, backend µs) per event over `events` new events."""
    from events.services import event_accept

    client, server = time.process_time(), _backend_seconds(backend)
    for n in range(events):
        result = event_accept(
            caller="sa:cost",
            payload=_payload(n),
            idempotency_key=f"{prefix}-{n}",
            request_id=f"req-{prefix}-{n}",
        )
        if result.duplicate:
            raise SystemExit(f"unexpected duplicate: {prefix}-{n}")
    client = time.process_time() - client
    server = _backend_seconds(backend) - server
    return client * 1e6 / events, server * 1e6 / events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    with django_on_private_cluster("intake_cost"):
        from django.db import connection

        from events import services

        services.event_type_ensure(name=EVENT_TYPE)
        services.outbox_wake = lambda: None
        prepared = services._insert_pg_row

        def django_cursor(params: list[Any]) -> tuple[Any, ...] | None:
            with connection.cursor() as cursor:
                cursor.execute(services._insert_pg_sql(), params)
                row: tuple[Any, ...] | None = cursor.fetchone()
            return row

        variants: dict[str, Callable[[list[Any]], tuple[Any, ...] | None]] = {
            "django_cursor": django_cursor,
            "prepared": prepared,
        }
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backend = int(cursor.fetchone()[0])
        costs: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        for name, run in variants.items():  # warm-up: imports, caches, the prepared plan
            services._insert_pg_row = run  # type: ignore[assignment]
            _round(backend, prefix=f"w-{name}", events=100)
        order = list(variants)
        for n in range(args.rounds):
            for name in order:
                services._insert_pg_row = variants[name]  # type: ignore[assignment]
                costs[name].append(_round(backend, prefix=f"{name}-{n}", events=args.events))
            order.reverse()
    print(
        json.dumps(
            {
                "events_per_round": args.events,
                **{
                    name: {
                        "client_us_per_event": round(statistics.median(c for c, _ in values)),
                        "backend_us_per_event": round(statistics.median(s for _, s in values)),
                        "rounds": [[round(c), round(s)] for c, s in values],
                    }
                    for name, values in costs.items()
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
