"""Final messages put back in line by an operator, each with its lineage row: the dead-letter
queue (requeue, discard, and purge after DLQ_RETENTION_HOURS), and messages blocked by their
template's state, requeued once the template is fixed.

Ordering: a requeued message keeps its lane position (lane_order, event id, id), so it is
older than the later messages of its key and goes first: those still waiting wait for it
(`delivery.claims` counts every active message before a head), those already sent stay sent.
`done_sequence` is not lowered, so the requeued message itself is in order at once."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Now

from audit.models import AuditRecord
from audit.services import audit_build
from comcenter.lib.db import rows_insert
from delivery.gates import TEMPLATE_BLOCKS
from delivery.models import Message, MessageState
from delivery.transitions import Change, message_transition
from templates.selectors import template_for

# Why a blocked message was not requeued (the admin shows these with their counts).
NOT_BLOCKED = "not blocked"
NOT_BY_TEMPLATE = "blocked by a flag, promotional or tier gate, not by its template's state"
EXPIRED = "expired: its expires_at has passed, it must not be sent"
STILL_DISABLED = "its template is still disabled"
STILL_NOT_WHITELISTED = "its template is still not whitelisted"
NO_TEMPLATE = "its template no longer exists"


@dataclass
class Requeued:
    """What a requeue of blocked messages did: how many moved, and the uids refused, by
    reason."""

    moved: int = 0
    refused: dict[str, list[str]] = field(default_factory=dict)

    def refuse(self, reason: str, message: Message) -> None:
        self.refused.setdefault(reason, []).append(str(message.uid))


def _requeue(messages: list[Message], *, reason: str, actor: str) -> int:
    """Back to pending with a fresh attempt budget, due now (see the module docstring)."""
    return len(
        message_transition(
            changes=[Change(message=m) for m in messages],
            state=MessageState.PENDING,
            reason=reason,
            common={"attempts": 0, "next_attempt_at": Now(), "last_error": ""},
            actor=actor,
        )
    )


def message_requeue_dead(*, message_ids: Iterable[int], actor: str) -> int:
    """Put dead messages back in line with a fresh attempt budget; returns how many moved."""
    dead = list(
        Message.objects.filter(pk__in=list(message_ids), state=MessageState.DEAD).select_related(
            "event"
        )
    )
    return _requeue(dead, reason="requeued from the dead-letter queue", actor=actor)


def message_requeue_blocked(*, message_ids: Iterable[int], actor: str) -> Requeued:
    """Put messages blocked by their template's state (disabled, not whitelisted) back in
    line, once that template (the one the gate would load now) is enabled and whitelisted.

    Refused, and left as they are: messages not blocked, blocked by another gate (a flag,
    promotional or tier: lift the flag, the message was still never meant to go), expired
    ones (a requeue must not resend what is out of date), and those whose template is still
    switched off. A template switched off again after the requeue blocks the message again
    at its gate."""
    result = Requeued()
    wanted = list(message_ids)
    rows = Message.objects.filter(pk__in=wanted).select_related("event", "template")
    # Expiry by the database clock, as the gates' ticker reads it.
    live = set(
        rows.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=Now())).values_list(
            "pk", flat=True
        )
    )
    ready = []
    for message in rows.order_by("id"):
        if message.state != MessageState.BLOCKED:
            result.refuse(NOT_BLOCKED, message)
            continue
        if message.last_error not in TEMPLATE_BLOCKS:
            result.refuse(NOT_BY_TEMPLATE, message)
            continue
        if message.pk not in live:
            result.refuse(EXPIRED, message)
            continue
        template = message.template or template_for(
            key=message.template_key, locale=message.locale or None
        )
        if template is None:
            result.refuse(NO_TEMPLATE, message)
        elif not template.enabled:
            result.refuse(STILL_DISABLED, message)
        elif not template.whitelisted:
            result.refuse(STILL_NOT_WHITELISTED, message)
        else:
            ready.append(message)
    # A message that left `blocked` meanwhile (another operator) does not move: the
    # transition moves only from the state read here.
    result.moved = _requeue(ready, reason="requeued after its template was fixed", actor=actor)
    return result


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
