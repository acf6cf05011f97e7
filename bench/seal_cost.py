"""Cost of sealing lineage rows into the audit chain, per sealed row.

    .venv/bin/python -m bench.seal_cost [--rows 20000] [--repeat 3]

Against PostgreSQL on this machine (DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/comcenter_seal_bench, a database of its own: created if
missing, migrated, its audit tables emptied first). Each round inserts N lineage rows shaped
like the pipeline's (six kinds, a request id, event and message ids, a small data object),
then runs `audit.services.audit_seal()` until nothing is left, and reports per sealed row:
the CPU time of this Python process (`time.process_time`) and the CPU time of the
PostgreSQL backend serving it (utime + stime of `pg_backend_pid()` from /proc, so the server
must run on this machine). The insert is measured the same way, for the write-side cost of
the audit table's indexes. Prints medians over the rounds and writes
bench/results/seal-<UTC timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/comcenter_seal_bench"
KINDS = (
    "event.received",
    "outbox.handed_off",
    "message.created",
    "message.dispatching",
    "message.dry_run",
    "attempt.recorded",
)


def _backend_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of /proc/PID/stat (1-based, counting pid and comm).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure(fn: Any, backend: int) -> tuple[float, float, Any]:
    cpu, db = time.process_time(), _backend_cpu_seconds(backend)
    result = fn()
    return time.process_time() - cpu, _backend_cpu_seconds(backend) - db, result


def _rows(n: int) -> list[Any]:
    from audit.services import audit_build

    records = []
    for i in range(n):
        event, message = uuid.uuid4(), uuid.uuid4()
        records.append(
            audit_build(
                kind=KINDS[i % len(KINDS)],
                request_id=f"req-{i // 6:08d}",
                event_uid=event,
                message_uid=message,
                recipient_id=f"student-{i % 997}",
                actor="worker",
                data={"from": "pending", "to": "dispatching", "template": "deadline_email"},
            )
        )
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--batch", type=int, default=2000, help="rows per seal (the ticker's: a pass's new rows)"
    )
    args = parser.parse_args()
    os.environ.setdefault("DATABASE_URL", DEFAULT_DB)
    os.environ.setdefault("SECRET_KEY", "bench-" + secrets.token_urlsafe(40))
    os.environ.setdefault("AUDIT_KEY", "bench-" + secrets.token_urlsafe(40))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "comcenter.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    name = os.environ["DATABASE_URL"].rsplit("/", 1)[1]
    subprocess.run(
        ["psql", "-q", "-h", "127.0.0.1", "-U", "postgres", "-c", f"CREATE DATABASE {name}"],
        capture_output=True,
        check=False,
    )
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, check=True
    )
    import django

    django.setup()
    from django.db import connection

    from audit.models import AuditRecord
    from audit.services import audit_append_many, audit_seal

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    rounds = []
    for _ in range(args.repeat):
        with connection.cursor() as cursor:
            tables = ", ".join(
                connection.ops.quote_name(model._meta.db_table)
                for model in django.apps.apps.get_app_config("audit").get_models()
            )
            cursor.execute(f"TRUNCATE {tables}")
        records = _rows(args.rows)
        py_insert, db_insert, _ = _measure(lambda rs=records: audit_append_many(rs), backend)

        def seal_all() -> int:
            total = 0
            while sealed := audit_seal(batch=args.batch):
                total += sealed
            return total

        py_seal, db_seal, sealed = _measure(seal_all, backend)
        assert sealed == args.rows == AuditRecord.objects.count(), sealed
        rounds.append(
            {
                "insert_python_us": py_insert / args.rows * 1e6,
                "insert_postgres_us": db_insert / args.rows * 1e6,
                "seal_python_us": py_seal / sealed * 1e6,
                "seal_postgres_us": db_seal / sealed * 1e6,
            }
        )
    medians = {key: round(statistics.median(r[key] for r in rounds), 1) for key in rounds[0]}
    result = {
        "rows": args.rows,
        "repeat": args.repeat,
        "batch": args.batch,
        "medians": medians,
        "rounds": rounds,
        "at": datetime.now(UTC).isoformat(),
    }
    for key, value in medians.items():
        print(f"{key:22s} {value:8.1f} µs per row")
    out = ROOT / "bench" / "results" / f"seal-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
