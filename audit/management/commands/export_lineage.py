"""`manage.py export_lineage [--since --until --event --recipient --request-id]
--format csv|json --out DIR`: the auditor's export, with a SHA-256 manifest."""

from __future__ import annotations

import csv
import hashlib
import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_datetime

from audit.models import AuditRecord, AuditSeal
from audit.services import CHAINED_FIELDS, audit_json_value, audit_row_hash

# The chained fields, then the row's own hash and the seal that holds it (empty while
# unsealed): with the seal's row hashes and AUDIT_KEY an auditor can check every row.
COLUMNS = (*CHAINED_FIELDS, "row_hash", "seal_seq", "seal_hash")


class _Seals:
    """The seal of each exported row, looked up once per seal (rows come in id order)."""

    def __init__(self) -> None:
        self.current: Mapping[str, Any] | None = None

    def of(self, row_id: int) -> Mapping[str, Any] | None:
        seal = self.current
        if seal is None or not seal["first_id"] <= row_id <= seal["last_id"]:
            seal = (
                AuditSeal.objects.filter(last_id__gte=row_id, first_id__lte=row_id)
                .values("seq", "first_id", "last_id", "hash")
                .first()
            )
            self.current = seal
        return seal


def _when(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    parsed = parse_datetime(value)
    if parsed is None or parsed.tzinfo is None:
        raise CommandError(f"{name}: give an ISO 8601 time with a zone, e.g. 2026-11-21T00:00:00Z")
    return parsed


def _row(record: dict[str, Any], seals: _Seals) -> dict[str, Any]:
    row = {name: audit_json_value(record[name]) for name in CHAINED_FIELDS}
    # A CSV cell cannot say null: an absent event or message id is exported as "".
    row["event_uid"] = row["event_uid"] or ""
    row["message_uid"] = row["message_uid"] or ""
    row["row_hash"] = audit_row_hash(record).hex()
    seal = seals.of(record["id"])
    row["seal_seq"] = seal["seq"] if seal else ""
    row["seal_hash"] = seal["hash"] if seal else ""
    return row


class Command(BaseCommand):
    help = "Export audit lineage as CSV or JSON with a MANIFEST.sha256."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since")
        parser.add_argument("--until")
        parser.add_argument("--event", help="event id (uuid)")
        parser.add_argument("--recipient", help="recipient id")
        parser.add_argument("--request-id")
        parser.add_argument("--format", choices=["csv", "json"], required=True)
        parser.add_argument("--out", required=True, help="output directory (created)")

    def handle(self, *args: Any, **options: Any) -> None:
        records = AuditRecord.objects.order_by("id").values(*CHAINED_FIELDS)
        since = _when(options["since"], "--since")
        until = _when(options["until"], "--until")
        if since:
            records = records.filter(at__gte=since)
        if until:
            records = records.filter(at__lt=until)
        if options["event"]:
            try:
                event_uid = uuid.UUID(options["event"])
            except ValueError as exc:
                raise CommandError("--event: give the event's id (a UUID)") from exc
            records = records.filter(event_uid=event_uid)
        if options["recipient"]:
            records = records.filter(recipient_id=options["recipient"])
        if options["request_id"]:
            records = records.filter(request_id=options["request_id"])

        out = Path(options["out"])
        out.mkdir(parents=True, exist_ok=True)
        name = f"lineage.{options['format']}"
        path = out / name
        count = 0
        seals = _Seals()
        with path.open("w", encoding="utf-8", newline="") as handle:
            if options["format"] == "csv":
                writer = csv.DictWriter(handle, fieldnames=COLUMNS)
                writer.writeheader()
                for record in records.iterator(chunk_size=2000):
                    row = _row(record, seals)
                    row["data"] = json.dumps(row["data"], sort_keys=True, ensure_ascii=False)
                    writer.writerow(row)
                    count += 1
            else:
                handle.write("[")
                for record in records.iterator(chunk_size=2000):
                    handle.write(("," if count else "") + "\n")
                    handle.write(
                        json.dumps(_row(record, seals), sort_keys=True, ensure_ascii=False)
                    )
                    count += 1
                handle.write("\n]\n")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        # sha256sum's format, so `sha256sum -c MANIFEST.sha256` verifies the export.
        (out / "MANIFEST.sha256").write_text(f"{digest}  {name}\n", encoding="utf-8")
        self.stdout.write(f"exported {count} lineage rows to {path} (sha256 {digest})")
