"""The retention purge of delivery data: events, their messages and attempts, and idle lanes,
after RETENTION_DAYS (they hold addresses and message data). What the purge never touches: an
event inside the idempotency window (RETENTION_DAYS is at least 72 h, checked at start-up),
an event still in the outbox or awaiting identity verification, a message not yet final, a
dead message inside DLQ_RETENTION_HOURS (nor its event). Lineage rows stay: they are purged
by the audit retention, AUDIT_RETENTION_DAYS, so the chain keeps verifying."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q

from audit.services import audit_append
from comcenter.lib.db import db_now
from comcenter.lib.metrics import RETENTION_PURGED
from delivery.models import (
    ACTIVE_STATES,
    Attempt,
    Lane,
    Message,
    MessageState,
    ProviderReceipt,
    WorkerLease,
)
from delivery.outbox import EXPAND_LOCK
from events.models import Event, EventStatus, OutboxState

log = logging.getLogger(__name__)

PURGE_BATCH = 500  # events per transaction: short locks, bounded statements


def retention_purge(*, batch: int = PURGE_BATCH, max_batches: int = 200) -> dict[str, int]:
    """Periodic task: delete what is past retention, a batch per transaction, each batch
    audited; returns the counts by table (also the comcenter_retention_purged_total metric)."""
    now = db_now()
    cutoff = now - timedelta(days=settings.RETENTION_DAYS)
    dlq_cutoff = now - timedelta(hours=settings.DLQ_RETENTION_HOURS)
    totals = {"events": 0, "messages": 0, "attempts": 0, "lanes": 0}
    for _ in range(max_batches):
        counts = _purge_events(cutoff=cutoff, dlq_cutoff=dlq_cutoff, batch=batch)
        _add(totals, counts)
        if counts["events"] < batch:
            break
    for _ in range(max_batches):
        lanes = _purge_lanes(cutoff=cutoff, batch=batch)
        _add(totals, {"lanes": lanes})
        if lanes < batch:
            break
    # Receipts that never matched a message (unmatched, or their message purged first).
    ProviderReceipt.objects.filter(message__isnull=True, received_at__lt=cutoff).delete()
    if any(totals.values()):
        log.info("purged delivery data past retention", extra=totals)
    return totals


def _add(totals: dict[str, int], counts: dict[str, int]) -> None:
    for table, count in counts.items():
        totals[table] += count
        if count:
            RETENTION_PURGED.labels(table).inc(count)


def _purgeable(*, cutoff: datetime, dlq_cutoff: datetime) -> Q:
    kept_messages = Message.objects.filter(event=OuterRef("pk")).filter(
        Q(state__in=ACTIVE_STATES) | Q(state=MessageState.DEAD, updated_at__gte=dlq_cutoff)
    )
    return Q(
        Q(received_at__lt=cutoff),
        ~Q(outbox_state=OutboxState.PENDING),
        ~Q(status=EventStatus.AUTH_PENDING),
        ~Exists(kept_messages),
    )


def _purge_events(*, cutoff: datetime, dlq_cutoff: datetime, batch: int) -> dict[str, int]:
    purgeable = _purgeable(cutoff=cutoff, dlq_cutoff=dlq_cutoff)
    candidates = list(
        Event.objects.filter(purgeable).order_by("id").values_list("pk", flat=True)[:batch]
    )
    if not candidates:
        return {"events": 0, "messages": 0, "attempts": 0}
    with transaction.atomic():
        # Lock the messages, then decide again: a requeue from the DLQ between the first look
        # and now waits for this transaction, or has already made its event ineligible.
        list(Message.objects.filter(event_id__in=candidates).select_for_update().values("pk"))
        ids = list(
            Event.objects.filter(purgeable, pk__in=candidates)
            .select_for_update()
            .values_list("pk", flat=True)
        )
        if not ids:
            return {"events": 0, "messages": 0, "attempts": 0}
        # Receipts go with their message (the lineage keeps what they moved).
        ProviderReceipt.objects.filter(message__event_id__in=ids).delete()
        attempts = Attempt.objects.filter(message__event_id__in=ids).delete()[1]
        messages = Message.objects.filter(event_id__in=ids).delete()[1]
        events = Event.objects.filter(pk__in=ids).delete()[1]
        counts = {
            "events": events.get("events.Event", 0),
            "messages": messages.get("delivery.Message", 0),
            "attempts": attempts.get("delivery.Attempt", 0),
        }
        audit_append(
            kind="retention.purged",
            actor="retention",
            data={
                **counts,
                "first_event": min(ids),
                "last_event": max(ids),
                "cutoff": cutoff.isoformat(),
            },
        )
    return counts


def _purge_lanes(*, cutoff: datetime, batch: int) -> int:
    """Lanes with no message left, created before the cutoff. A purged lane's key starts
    afresh: a later event with a sequence above 1 waits at most ORDERING_GAP_WAIT for
    predecessors that were purged long ago."""
    with transaction.atomic():
        # Expansion creates lanes and their messages under this lock: holding it, no message
        # can be inserted into a lane that this deletes. Busy: try at the next run.
        WorkerLease.objects.get_or_create(name=EXPAND_LOCK)
        if (
            not WorkerLease.objects.select_for_update(skip_locked=True)
            .filter(name=EXPAND_LOCK)
            .exists()
        ):
            return 0
        ids = list(
            Lane.objects.filter(created_at__lt=cutoff)
            .exclude(Exists(Message.objects.filter(lane=OuterRef("pk"))))
            .order_by("id")
            .values_list("pk", flat=True)[:batch]
        )
        if not ids:
            return 0
        lanes, _ = Lane.objects.filter(pk__in=ids).delete()
        audit_append(
            kind="retention.purged",
            actor="retention",
            data={"lanes": lanes, "cutoff": cutoff.isoformat()},
        )
    return lanes
