"""The audit retention purge: whole seals older than AUDIT_RETENTION_DAYS, oldest first, so
that what remains verifies from the first kept seal (its prev_hash is named by the purge's
own lineage row, see audit_verify). On PostgreSQL through `comcenter_audit_purge` (migration
0003), the only path by which audit rows can be deleted; on SQLite the same steps here."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction

from audit.models import AuditRecord, AuditSeal
from audit.services import audit_append, audit_clock
from comcenter.lib.metrics import RETENTION_PURGED

log = logging.getLogger(__name__)

MINIMUM_DAYS = 30  # the database function's own floor (migration 0003)
SEALS_PER_BATCH = 50  # at most ~100,000 rows a transaction (2,000 rows a seal at most)


def audit_purge(*, days: int | None = None, max_batches: int = 100) -> dict[str, int]:
    """Periodic task: purge seals (and their rows) sealed more than `days` (default
    AUDIT_RETENTION_DAYS) ago, a batch of seals per transaction; returns the counts."""
    days = settings.AUDIT_RETENTION_DAYS if days is None else days
    if days < MINIMUM_DAYS:
        raise ValueError(f"audit rows are kept at least {MINIMUM_DAYS} days (asked: {days})")
    cutoff = audit_clock() - timedelta(days=days)
    totals = {"seals": 0, "records": 0}
    for _ in range(max_batches):
        seals, records = _purge_batch(cutoff)
        if not seals:
            break
        totals["seals"] += seals
        totals["records"] += records
        RETENTION_PURGED.labels("audit_seal").inc(seals)
        RETENTION_PURGED.labels("audit_record").inc(records)
    if totals["seals"]:
        log.info("purged audit seals past retention", extra=totals)
    return totals


def _purge_batch(cutoff: datetime) -> tuple[int, int]:
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT seals, records FROM comcenter_audit_purge(%s, %s)",
                    [cutoff, SEALS_PER_BATCH],
                )
                seals, records = cursor.fetchone()
            return seals, records
        return _purge_batch_sqlite(cutoff)


def _purge_batch_sqlite(cutoff: datetime) -> tuple[int, int]:
    """What comcenter_audit_purge does, for the embedded database."""
    if cutoff > audit_clock() - timedelta(days=MINIMUM_DAYS):
        raise ValueError("audit purge refused: the cutoff is less than 30 days ago")
    seqs = list(
        AuditSeal.objects.order_by("seq").values_list("seq", "sealed_at")[: SEALS_PER_BATCH + 1]
    )
    newest = AuditSeal.objects.order_by("-seq").values_list("seq", flat=True).first()
    doomed = []
    for seq, sealed_at in seqs[:SEALS_PER_BATCH]:
        if sealed_at >= cutoff or seq == newest:
            break
        doomed.append(seq)
    if not doomed:
        return 0, 0
    through = doomed[-1]
    through_id = AuditSeal.objects.get(seq=through).last_id
    kept = AuditSeal.objects.get(seq=through + 1)
    records, _ = AuditRecord.objects.filter(id__lte=through_id).delete()
    seals, _ = AuditSeal.objects.filter(seq__lte=through).delete()
    audit_append(
        kind="audit.purged",
        actor="retention",
        data={
            "seals": seals,
            "records": records,
            "through_seq": through,
            "through_id": through_id,
            "first_kept_seq": kept.seq,
            "anchor": kept.prev_hash,
            "cutoff": cutoff.isoformat(),
        },
    )
    return seals, records
