"""Delivery throughput: messages per second from accepted event to SMTP acceptance, and
django-post-office's `send_queued_mail` beside it, to the same SMTP server in the same run.

    .venv/bin/python -m bench.delivery_throughput [--events 20000] [--workers 4] [--batch 200]
        [--smtp-processes 2] [--mode compare|both|dry|live|post-office] [--po-batch 100]

Everything runs on a PostgreSQL cluster started for the run (bench/stack.py: initdb in a
temporary directory, PostgreSQL's defaults) and removed after it; comcenter and post-office
each get a database of their own on it. The SMTP server is aiosmtpd on loopback, in server
processes of its own sharing one port, started once for the whole run.

comcenter (dry and live): N events are inserted through `events.services.event_accept` (the
intake service, not HTTP; one email route, so one message per event; five sequenced events
per ordering key), then K worker processes running `delivery.tasks.pump` are released; the
rate is measured from their release (database clock) to the last message recorded sent
(live) or dry_run (DISABLE_SEND on). The rate limit is off.

post-office (django-post-office 3.12.0): installed in a virtual environment of its own, never
in `.venv` (BENCH_POST_OFFICE_VENV, default ~/.cache/comcenter-bench/post-office-3.12.0,
created on first use), it runs bench/post_office_run.py: N mails queued, then
`send_queued_mail --processes K` timed until the queue is empty (its defaults otherwise:
BATCH_SIZE --po-batch, a log row per mail).

The SMTP servers count every message per Message-ID (post-office's carry
`<po-N@post-office.bench>`), so each side's `lost` and `smtp_duplicates` are checked, and
comcenter's per-key sequence order. `compare` (the default) runs live and post-office and
reports `live_to_post_office` (the ratio of the rates, target >= 2) and
`post_office_cpu_to_live` (post-office's CPU per message over comcenter's: on a machine shared
with other work the rates follow the load, CPU per message much less). It prints a table and
writes bench/results/delivery-<UTC timestamp>.json.
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

from bench import cpu
from bench.cpu import cpu_model
from bench.stack import PostgresCluster, free_port, postgres_settings

ROOT = Path(__file__).resolve().parent.parent
POST_OFFICE_PINS = ("django-post-office==3.12.0", "Django==5.2.19", "psycopg[binary]==3.3.9")
PO_DOMAIN = "@post-office.bench>"


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--per-key", type=int, default=5, help="sequenced events per key")
    parser.add_argument(
        "--mode", choices=["compare", "both", "dry", "live", "post-office"], default="compare"
    )
    parser.add_argument("--po-batch", type=int, default=100, help="post-office BATCH_SIZE")
    parser.add_argument("--smtp-processes", type=int, default=2)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--smtp-server", type=int, help=argparse.SUPPRESS)
    return parser.parse_args()


def _environment(args: argparse.Namespace) -> None:
    os.environ.setdefault("SECRET_KEY", "bench-" + secrets.token_urlsafe(40))
    os.environ.setdefault("AUDIT_KEY", "bench-" + secrets.token_urlsafe(40))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "comcenter.settings")
    os.environ["DISPATCH_BATCH_SIZE"] = str(args.batch)
    # JSON logs of every worker would cost more than the sends; warnings still show.
    os.environ.setdefault("LOG_LEVEL", "WARNING")


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
    port = free_port()
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


def _run(
    mode: str, args: argparse.Namespace, smtp_port: int, components: dict[str, int]
) -> dict[str, Any]:
    from django.db import connection
    from django.db.models import Count, Max

    from comcenter.lib.db import db_now
    from delivery.models import Message, MessageState
    from flags.services import flag_set

    intake_rate = _prepare(args.events, args.per_key)
    flag_set(name="DISABLE_SEND", value=mode == "dry", actor="bench", reason="bench", source="api")
    env = dict(os.environ)
    if mode == "live":
        env["EMAIL_URL"] = f"smtp://127.0.0.1:{smtp_port}"
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
        tree = {**components, **{f"worker{n}": w.pid for n, w in enumerate(workers)}}
        window = cpu.sample(tree)
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
        spent = cpu.per_event_ms(window, cpu.sample(tree), events=args.events)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=30)
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
        "cpu_ms_per_message": _by_side(spent),
    }
    return result


def _post_office_python() -> str:
    """The Python of post-office's own virtual environment, created with POST_OFFICE_PINS on
    first use (never comcenter's .venv: the comparison must not change what it compares)."""
    venv = Path(
        os.environ.get(
            "BENCH_POST_OFFICE_VENV",
            Path.home() / ".cache" / "comcenter-bench" / "post-office-3.12.0",
        )
    )
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} (django-post-office in a virtual environment of its own)")
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *POST_OFFICE_PINS], check=True
        )
    return str(python)


def _by_side(per_message: dict[str, float | None]) -> dict[str, float | None]:
    """CPU ms per message: the senders (every worker process together), the database, the
    SMTP server, and their total."""

    def summed(prefix: str) -> float:
        return round(sum(v or 0.0 for k, v in per_message.items() if k.startswith(prefix)), 3)

    return {
        "senders": summed("worker"),
        "database": per_message.get("database"),
        "smtp": summed("smtp"),
        "total": per_message["total"],
    }


def _post_office(
    args: argparse.Namespace, cluster: PostgresCluster, smtp_port: int, components: dict[str, int]
) -> dict:
    """post-office in its own environment: queue the mails (not measured), then send them
    (measured: the database and the SMTP server sampled around the sending process, whose
    own CPU and its pool's it reports itself, they being gone before it can be sampled)."""
    cluster.create_database("post_office")
    command = [
        _post_office_python(),
        str(ROOT / "bench" / "post_office_run.py"),
        f"--db-port={cluster.port}",
        "--db-name=post_office",
        f"--smtp-port={smtp_port}",
        f"--emails={args.events}",
        f"--processes={args.workers}",
        f"--batch={args.po_batch}",
    ]
    result: dict[str, Any] = {}
    for phase in ("queue", "send"):
        start = cpu.sample(components)
        done = subprocess.run(
            [*command, f"--phase={phase}"], capture_output=True, text=True, timeout=1200
        )
        if done.returncode != 0:
            sys.exit(f"post-office's {phase} phase failed:\n{done.stderr[-3000:]}")
        around = cpu.per_event_ms(start, cpu.sample(components), events=args.events)
        result.update(json.loads(done.stdout.strip().splitlines()[-1]))
    senders_ms = result.pop("sender_cpu_s") * 1000 / args.events
    total = (around["total"] or 0.0) + senders_ms
    result["cpu_ms_per_message"] = _by_side(
        {**around, "workers": round(senders_ms, 3), "total": round(total, 3)}
    )
    return {"mode": "post-office", "events": args.events, "workers": args.workers, **result}


def _smtp_verdicts(results: list[dict[str, Any]], counts: dict[str, int]) -> None:
    """Each side's SMTP acceptances: delivered, lost (expected, never accepted) and twice."""
    sides = {
        "live": {k: n for k, n in counts.items() if not k.endswith(PO_DOMAIN)},
        "post-office": {k: n for k, n in counts.items() if k.endswith(PO_DOMAIN)},
    }
    for result in results:
        side = sides.get(result["mode"])
        if side is None:
            continue
        result["smtp_accepted"] = sum(side.values())
        result["smtp_duplicates"] = sum(n - 1 for n in side.values() if n > 1)
        result["lost"] = result["events"] - len(side)


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
    load_at_start = os.getloadavg()[0]
    modes = {
        "compare": ["live", "post-office"],
        "both": ["dry", "live"],
    }.get(args.mode, [args.mode])
    cluster = PostgresCluster()
    cluster.start()
    servers: list[subprocess.Popen[str]] = []
    try:
        os.environ["DATABASE_URL"] = cluster.create_database("comcenter_delivery")
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        smtp_port = 0
        if "live" in modes or "post-office" in modes:
            smtp_port, servers = _smtp_start(args.smtp_processes)
        components = {"database": cluster.process.pid if cluster.process else 0}
        components |= {f"smtp{n}": server.pid for n, server in enumerate(servers)}
        results = [
            _post_office(args, cluster, smtp_port, components)
            if mode == "post-office"
            else _run(mode, args, smtp_port, components)
            for mode in modes
        ]
        settings_used = postgres_settings(os.environ["DATABASE_URL"])
    finally:
        counts = _smtp_stop(servers) if servers else {}
        cluster.stop()
    _smtp_verdicts(results, counts)
    rates = {r["mode"]: r["messages_per_s"] for r in results}
    ratio = (
        round(rates["live"] / rates["post-office"], 2)
        if rates.get("live") and rates.get("post-office")
        else None
    )
    # CPU per message compares on a loaded machine where rates do not (see bench/cpu.py).
    costs = {r["mode"]: (r.get("cpu_ms_per_message") or {}).get("total") for r in results}
    cpu_ratio = (
        round(costs["post-office"] / costs["live"], 2)
        if costs.get("live") and costs.get("post-office")
        else None
    )
    print()
    print(
        f"{'mode':<12}{'events':>8}{'workers':>9}{'seconds':>10}{'msg/s':>10}"
        f"{'order viol.':>13}{'dupes':>7}{'lost':>6}{'CPU ms/msg':>12}"
    )
    for r in results:
        print(
            f"{r['mode']:<12}{r['events']:>8}{r['workers']:>9}"
            f"{r['elapsed_s']:>10}{r['messages_per_s']:>10}{r.get('ordering_violations', '-'):>13}"
            f"{r.get('smtp_duplicates', '-'):>7}{r.get('lost', '-'):>6}"
            f"{(r.get('cpu_ms_per_message') or {}).get('total', '-'):>12}"
        )
    if ratio is not None:
        print(f"\ncomcenter live / post-office: {ratio}x the rate, {cpu_ratio}x less CPU")
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
                    "cpu": cpu_model(),
                    "python": platform.python_version(),
                    # Other work on the machine skews the figures; this says how much there was.
                    "load_average_1m_at_start": load_at_start,
                    "load_average_1m_at_end": os.getloadavg()[0],
                },
                "database": settings_used,
                "results": results,
                "live_to_post_office": ratio,
                "post_office_cpu_to_live": cpu_ratio,
            },
            indent=2,
            default=str,
        )
    )
    print(f"\nwrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
