"""Reads of the delivery app that other apps reach by dotted path (the events API, /metrics
and /health), so they never import delivery's models."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Min

from comcenter.lib.db import db_now
from delivery.models import ACTIVE_STATES, FINAL_STATES, WAITING_STATES, Message, MessageState
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
    """Queue depth, the oldest waiting message's age and the dead-letter ratio.

    The ratio is dead over all messages that finished within the DLQ retention window (dead
    messages older than that are purged, so a longer window would understate it)."""
    by_state = {
        row["state"]: row["n"]
        for row in Message.objects.values("state").annotate(n=Count("id")).order_by()
    }
    now = db_now()
    oldest = Message.objects.filter(state__in=WAITING_STATES).aggregate(at=Min("created_at"))["at"]
    window = now - timedelta(hours=settings.DLQ_RETENTION_HOURS)
    finished = dict(
        Message.objects.filter(state__in=FINAL_STATES, updated_at__gte=window)
        .values("state")
        .annotate(n=Count("id"))
        .order_by()
        .values_list("state", "n")
    )
    total_finished = sum(finished.values())
    dead = by_state.get(MessageState.DEAD, 0)
    return {
        "depth": sum(by_state.get(state, 0) for state in ACTIVE_STATES),
        "oldest_pending_age_seconds": (
            max(0.0, (now - oldest).total_seconds()) if oldest is not None else None
        ),
        "by_state": {state.value: by_state.get(state, 0) for state in MessageState},
        "dead": dead,
        "dlq_ratio": (
            finished.get(MessageState.DEAD, 0) / total_finished if total_finished else 0.0
        ),
    }
