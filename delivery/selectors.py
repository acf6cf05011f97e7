"""Reads of the delivery app that other apps reach by dotted path (the events API, /metrics
and /health), so they never import delivery's models."""

from __future__ import annotations

from typing import Any

from comcenter.lib.db import db_now
from delivery.models import (
    ACTIVE_STATES,
    FINAL_STATES,
    RECEIPT_STATES,
    WAITING_STATES,
    Message,
    MessageState,
)
from delivery.tally import message_tally
from events.models import Event


def messages_for_event(event: Event) -> list[dict[str, Any]]:
    """The messages of an event for GET /api/v1/events/{id}, in creation order."""
    rows = Message.objects.filter(event=event).order_by("id")
    return [
        {
            "id": m.uid,
            "channel": m.channel,
            "state": m.state,
            "template": m.template_key,
            "attempts": m.attempts,
            "updated_at": m.updated_at,
        }
        for m in rows.only("uid", "channel", "state", "template_key", "attempts", "updated_at")
    ]


def queue_stats() -> dict[str, Any]:
    """Queue depth, messages by state, the most overdue waiting message's age and the
    dead-letter ratio and the delivery rate, in three queries whatever the size of the
    message table.

    Counts come from the trigger-kept tally (exact as of the last committed change, see
    delivery/tally.py); the age from the first row of the due-work index. The ratio is dead
    entries over all entries into a final state within the DLQ retention window (dead
    messages older than that are purged, so a longer window would understate it). The
    delivery rate is delivered over delivered + undelivered receipts in the same window
    (None before the first receipt: no provider reports back, e.g. plain SMTP)."""
    now = db_now()
    by_state, entered = message_tally(now=now)
    due = (
        Message.objects.filter(state__in=WAITING_STATES)
        .order_by("next_attempt_at", "id")
        .values_list("next_attempt_at", flat=True)
        .first()
    )
    finished = sum(entered.get(state, 0) for state in FINAL_STATES if state not in RECEIPT_STATES)
    delivered = entered.get(MessageState.DELIVERED, 0)
    reported = delivered + entered.get(MessageState.UNDELIVERED, 0)
    return {
        "depth": sum(by_state.get(state, 0) for state in ACTIVE_STATES),
        "oldest_pending_age_seconds": (
            max(0.0, (now - due).total_seconds()) if due is not None else None
        ),
        "by_state": {state.value: by_state.get(state, 0) for state in MessageState},
        "dead": by_state.get(MessageState.DEAD, 0),
        "dlq_ratio": entered.get(MessageState.DEAD, 0) / finished if finished else 0.0,
        "delivered": delivered,
        "undelivered": reported - delivered,
        "delivery_rate": delivered / reported if reported else None,
    }
