"""django-q2 entry points of the delivery pipeline."""

from __future__ import annotations

from django.db import transaction

from events.handoff import outbox_wake_consumed
from events.models import Event, OutboxState
from events.services import event_mark_handed_off


def pump(reason: str = "") -> int:
    """Consume the outbox. Until the dispatcher lands it only marks events received."""
    outbox_wake_consumed()
    handled = 0
    while True:
        with transaction.atomic():
            ids = list(
                Event.objects.filter(outbox_state=OutboxState.PENDING)
                .order_by("id")
                .values_list("id", flat=True)[:500]
            )
            if not ids:
                return handled
            handled += event_mark_handed_off(event_ids=ids)
