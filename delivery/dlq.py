"""The dead-letter queue: requeue, discard, and purge after DLQ_RETENTION_HOURS, each with
its lineage row."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models.functions import Now

from audit.models import AuditRecord
from audit.services import audit_build
from comcenter.lib.db import rows_insert
from delivery.models import Message, MessageState
from delivery.transitions import Change, message_transition


def message_requeue_dead(*, message_ids: Iterable[int], actor: str) -> int:
    """Put dead messages back in line with a fresh attempt budget; returns how many moved.
    A requeued message is older than its key's later messages, so it goes first."""
    dead = list(
        Message.objects.filter(pk__in=list(message_ids), state=MessageState.DEAD).select_related(
            "event"
        )
    )
    return len(
        message_transition(
            changes=[Change(message=m) for m in dead],
            state=MessageState.PENDING,
            reason="requeued from the dead-letter queue",
            common={"attempts": 0, "next_attempt_at": Now(), "last_error": ""},
            actor=actor,
        )
    )


def message_discard_dead(*, message_ids: Iterable[int], actor: str) -> int:
    """Delete dead messages before their retention ends (an operator decided), with lineage."""
    return _delete_dead(
        Message.objects.filter(pk__in=list(message_ids), state=MessageState.DEAD),
        kind="message.discarded",
        actor=actor,
    )


def messages_purge_dead(*, limit: int = 1000) -> int:
    """Delete dead messages older than DLQ_RETENTION_HOURS; returns how many."""
    cutoff = Now() - timedelta(hours=settings.DLQ_RETENTION_HOURS)
    total = 0
    while True:
        batch = list(
            Message.objects.filter(state=MessageState.DEAD, updated_at__lt=cutoff).values_list(
                "pk", flat=True
            )[:limit]
        )
        if not batch:
            return total
        total += _delete_dead(
            Message.objects.filter(pk__in=batch, state=MessageState.DEAD, updated_at__lt=cutoff),
            kind="message.purged",
            actor="delivery",
        )


def _delete_dead(rows: Any, *, kind: str, actor: str) -> int:
    with transaction.atomic():
        doomed = list(rows.select_for_update().select_related("event").order_by("id"))
        if not doomed:
            return 0
        rows_insert(
            AuditRecord,
            [
                audit_build(
                    kind=kind,
                    request_id=m.event.request_id,
                    event_uid=m.event.uid,
                    message_uid=m.uid,
                    recipient_id=m.recipient_id,
                    actor=actor,
                    data={"channel": m.channel, "attempts": m.attempts, "last_error": m.last_error},
                )
                for m in doomed
            ],
        )
        Message.objects.filter(pk__in=[m.pk for m in doomed]).delete()
    return len(doomed)
