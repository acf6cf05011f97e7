"""Delivery throughput: messages per second from accepted event to SMTP acceptance.

    .venv/bin/python -m bench.delivery_throughput [--events 20000] [--workers 4] [--batch 200]
                                                  [--smtp-processes 2] [--mode both|dry|live]

Against PostgreSQL (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/comcenter_bench,
a database of its own: every run empties its event, delivery and audit tables; it is created
if missing and migrated). For each mode it inserts N events through
`events.services.event_accept` (the intake service, not HTTP; one email route, so one message
per event; five sequenced events per ordering key), then releases K worker processes running
`delivery.tasks.pump` and measures from their release (database clock) to the last message
recorded sent (live: to aiosmtpd on loopback, in server processes of its own sharing one port)
or dry_run (DISABLE_SEND on). The rate limit is off. It checks that the SMTP servers accepted
every message exactly once and that each key was dispatched in sequence order, prints a table
and writes bench/results/delivery-<UTC timestamp>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/comcenter_bench"


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--per-key", type=int, default=5, help="sequenced events per key")
    parser.add_argument("--mode", choices=["both", "dry", "live"], default="both")
    parser.add_argument("--smtp-processes", type=int, default=2)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--smtp-server", type=int, help=argparse.SUPPRESS)
    return parser.parse_args()


def _environment(args: argparse.Namespace) -> None:
    os.environ.setdefault("DATABASE_URL", DEFAULT_DB)
    os.environ.setdefault("SECRET_KEY", "bench-" + secrets.token_urlsafe(40))
    os.environ.setdefault("AUDIT_KEY", "bench-" + secrets.token_urlsafe(40))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "comcenter.settings")
    os.environ["DISPATCH_BATCH_SIZE"] = str(args.batch)
    # JSON logs of every worker would cost more than the sends; warnings still show.
    os.environ.setdefault("LOG_LEVEL", "WARNING")


def _create_database() -> None:
    import psycopg
    from psycopg import sql

    url = os.environ["DATABASE_URL"]
    if not url.startswith("postgres"):
        sys.exit("the delivery benchmark runs against PostgreSQL: set DATABASE_URL=postgres://…")
    base, _, name = url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            print(f"created database {name}")


# --- the worker processes --------------------------------------------------------------------


def worker_main() -> None:
    """A worker: waits for "go" on stdin, then runs `delivery.tasks.pump` (the outbox
    consumer and the dispatcher, what a django-q2 worker runs when the outbox wakes it) in a
    loop until its parent terminates it."""
    import django

    django.setup()
    from delivery.tasks import pump

    print("ready", flush=True)
    sys.stdin.readline()
    while True:
        done = pump("bench")
        if not done["events"] and not done["messages"]:
            time.sleep(0.05)


# --- the SMTP server -------------------------------------------------------------------------


class _Sink:
    """An aiosmtpd handler that counts accepted messages per Message-ID."""

    def __init__(self) -> None:
        self.by_message_id: dict[str, int] = {}

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw: bytes = envelope.original_content or b""
        message_id = ""
        for line in raw.split(b"\r\n"):
            if not line:
                break
            if line.lower().startswith(b"message-id:"):
                message_id = line.split(b":", 1)[1].strip().decode()
        self.by_message_id[message_id] = self.by_message_id.get(message_id, 0) + 1
        return "250 OK"


def smtp_server_main(port: int) -> None:
    """One SMTP server process on 127.0.0.1:port (SO_REUSEPORT, so several share the port
    and the kernel spreads the connections): serves until its stdin closes, then prints the
    counts it accepted as JSON. Separate processes, so the server is not capped by the GIL
    of this script."""
    from aiosmtpd.smtp import SMTP

    async def serve() -> None:
        sink = _Sink()
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(sink, hostname="bench.invalid"), "127.0.0.1", port, reuse_port=True
        )
        print("ready", flush=True)
        await loop.run_in_executor(None, sys.stdin.readline)
        server.close()
        print(json.dumps(sink.by_message_id), flush=True)

    asyncio.run(serve())


def _smtp_start(processes: int) -> tuple[int, list[subprocess.Popen[str]]]:
    port = _free_port()
    servers = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.delivery_throughput", "--smtp-server", str(port)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    for server in servers:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":
            sys.exit("an SMTP server failed to start")
    return port, servers


def _smtp_stop(servers: list[subprocess.Popen[str]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for server in servers:
        out, _ = server.communicate("stop\n", timeout=30)
        for message_id, n in json.loads(out.strip().splitlines()[-1]).items():
            counts[message_id] = counts.get(message_id, 0) + n
    return counts


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- one run ---------------------------------------------------------------------------------


def _prepare(events: int, per_key: int) -> float:
    """Empty the tables, set up one email route, accept `events` events; returns events/s."""
    from django.db import connection

    from delivery.routes import route_ensure
    from events import services as event_services
    from events.services import event_accept, event_type_ensure
    from flags.services import flag_set
    from templates.models import Template
    from templates.services import template_create

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE delivery_attempt, delivery_message, delivery_lane, events_event, "
            "audit_auditrecord, django_q_ormq, django_q_task RESTART IDENTITY CASCADE"
        )
    event_type_ensure(name="bench_event")
    if not Template.objects.filter(key="bench_email").exists():
        template_create(
            key="bench_email",
            channel="email",
            subject="Reminder {{ n }} for {{ student }}",
            body="Hello {{ student }},\n\nThis is reminder number {{ n }}.\n",
            whitelisted=True,
            actor="bench",
        )
    route_ensure(event_type="bench_event", template_key="bench_email", channel="email")
    flag_set(name="RATE_LIMIT_ENABLED", value=False, actor="bench", reason="bench", source="api")
    # The workers are released explicitly below; a wake-up task per event would only fill
    # the broker's table.
    event_services.outbox_wake = lambda **kwargs: None
    keys = max(1, events // per_key)
    started = time.perf_counter()
    for i in range(events):
        key, seq = i % keys, i // keys + 1
        event_accept(
            caller="sa:bench",
            payload={
                "event_type": "bench_event",
                "ordering_key": f"student-{key}",
                "sequence": seq,
                "recipient": {"id": f"student-{key}", "email": f"student-{key}@example.org"},
                "data": {"student": f"student-{key}", "n": seq},
            },
            idempotency_key=f"bench-{i}",
            request_id=f"bench-{i}",
        )
    return events / (time.perf_counter() - started)


def _run(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    from django.db import connection
    from django.db.models import Count, Max

    from comcenter.lib.db import db_now
    from delivery.models import Message, MessageState
    from flags.services import flag_set

    intake_rate = _prepare(args.events, args.per_key)
    flag_set(name="DISABLE_SEND", value=mode == "dry", actor="bench", reason="bench", source="api")
    port, servers = (0, []) if mode == "dry" else _smtp_start(args.smtp_processes)
    env = dict(os.environ)
    if servers:
        env["EMAIL_URL"] = f"smtp://127.0.0.1:{port}"
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.delivery_throughput", "--worker"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(args.workers)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None
            if worker.stdout.readline().strip() != "ready":
                sys.exit("a worker failed to start")
        started_at = db_now()
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        final = [MessageState.SENT, MessageState.DRY_RUN, MessageState.DEAD]
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            done = Message.objects.filter(state__in=final).count()
            if done >= args.events:
                break
            time.sleep(0.2)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=30)
        counts = _smtp_stop(servers) if servers else None
    by_state = dict(Message.objects.values_list("state").annotate(n=Count("id")).order_by())
    finished_at = Message.objects.aggregate(last=Max("dispatched_at"))["last"]
    elapsed = (finished_at - started_at).total_seconds()
    delivered = by_state.get("sent", 0) + by_state.get("dry_run", 0)
    with connection.cursor() as cursor:
        # A later sequence of a key dispatched before an earlier one is an ordering violation.
        cursor.execute(
            "SELECT count(*) FROM (SELECT sequence, dispatched_at, lag(dispatched_at) OVER "
            "(PARTITION BY lane_id ORDER BY sequence) AS prev FROM delivery_message) t "
            "WHERE prev IS NOT NULL AND dispatched_at < prev"
        )
        order_violations = cursor.fetchone()[0]
    result: dict[str, Any] = {
        "mode": mode,
        "events": args.events,
        "workers": args.workers,
        "batch": args.batch,
        "keys": max(1, args.events // args.per_key),
        "intake_events_per_s": round(intake_rate, 1),
        "elapsed_s": round(elapsed, 3),
        "messages_per_s": round(delivered / elapsed, 1) if elapsed > 0 else None,
        "by_state": by_state,
        "ordering_violations": order_violations,
    }
    if counts is not None:
        result["smtp_processes"] = args.smtp_processes
        result["smtp_accepted"] = sum(counts.values())
        result["smtp_duplicates"] = sum(c - 1 for c in counts.values() if c > 1)
        result["lost"] = args.events - len(counts)
    return result


def main() -> None:
    args = _parse()
    _environment(args)
    sys.path.insert(0, str(ROOT))
    if args.worker:
        worker_main()
        return
    if args.smtp_server:
        smtp_server_main(args.smtp_server)
        return
    _create_database()
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    modes = ["dry", "live"] if args.mode == "both" else [args.mode]
    results = [_run(mode, args) for mode in modes]
    print()
    print(
        f"{'mode':<6}{'events':>8}{'workers':>9}{'batch':>7}{'seconds':>10}{'msg/s':>10}"
        f"{'order viol.':>13}{'dupes':>7}{'lost':>6}"
    )
    for r in results:
        print(
            f"{r['mode']:<6}{r['events']:>8}{r['workers']:>9}{r['batch']:>7}"
            f"{r['elapsed_s']:>10}{r['messages_per_s']:>10}{r['ordering_violations']:>13}"
            f"{r.get('smtp_duplicates', '-'):>7}{r.get('lost', '-'):>6}"
        )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = ROOT / "bench" / "results" / f"delivery-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "benchmark": "delivery_throughput",
                "at": stamp,
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    # Other work on the machine skews the figures; this says how much there was.
                    "load_average_1m_at_end": os.getloadavg()[0],
                },
                "results": results,
            },
            indent=2,
            default=str,
        )
    )
    print(f"\nwrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
