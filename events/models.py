"""The event store: known event types, and events.

The `Event` row is also the transactional outbox: it is inserted with
`outbox_state=pending` in the same transaction that answers 202, and the consumer (the
delivery pipeline) marks it `done` once it has turned the event into messages. The queue is
only a wake-up; a sweeper re-finds pending rows that a crash left behind."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models.functions import Now


class EventType(models.Model):
    """An event type the intake accepts; anything else is answered 422."""

    name = models.CharField(max_length=100, unique=True)
    description = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class EventStatus(models.TextChoices):
    ACCEPTED = "accepted"
    AUTH_PENDING = "auth_pending"
    REJECTED = "rejected"


class OutboxState(models.TextChoices):
    PENDING = "pending"  # committed, not yet consumed by the delivery pipeline
    DONE = "done"  # consumed: its messages exist (or the event needed none)
    # Not to be consumed (yet): auth_pending until verified, rejected for good, or accepted
    # behind an earlier auth_pending event of its ordering key (released after it).
    HELD = "held"


class Event(models.Model):
    id = models.BigAutoField(primary_key=True)
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # Who sent it: "sa:<client_id>", "idp:<issuer>|<sub>" or "webhook:<source>".
    # Idempotency keys are scoped to the caller.
    caller = models.CharField(max_length=300)
    event_type = models.CharField(max_length=100)
    idempotency_key = models.CharField(max_length=255)
    payload_hash = models.CharField(max_length=64)
    ordering_key = models.CharField(max_length=255)
    sequence = models.PositiveBigIntegerField(null=True, blank=True)
    recipient_id = models.CharField(max_length=255)
    recipient = models.JSONField()
    data = models.JSONField(default=dict)
    occurred_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    request_id = models.CharField(max_length=128)
    status = models.CharField(
        max_length=20, choices=EventStatus.choices, default=EventStatus.ACCEPTED
    )
    status_reason = models.CharField(max_length=255, blank=True)
    # Raw bearer token of an auth_pending event, kept only until it is verified or rejected.
    pending_token = models.TextField(blank=True)
    outbox_state = models.CharField(
        max_length=10, choices=OutboxState.choices, default=OutboxState.PENDING
    )
    received_at = models.DateTimeField(db_default=Now())
    handed_off_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            # The database decides idempotency: concurrent duplicates race on this index.
            # Only accepted events hold a key: an auth_pending one (its token not verified
            # yet) must neither block nor answer for a verified event of the same key, and
            # a rejected one releases it (events.services.event_release_verified).
            models.UniqueConstraint(
                fields=["caller", "idempotency_key"],
                condition=models.Q(status="accepted"),
                name="event_idem_key_accepted",
            ),
        ]
        # No index on `request_id` or `recipient_id`: every event row and its hand-off update
        # would pay for them, and no query filters on either column alone (the admin's search
        # ORs them with the unindexed `idempotency_key`, a sequential scan anyway). Look-ups
        # by request or recipient go to the lineage (audit_request, audit_recipient).
        indexes = [
            models.Index(fields=["received_at"], name="event_received"),
            models.Index(
                fields=["id"],
                name="event_outbox_pending",
                condition=models.Q(outbox_state="pending"),
            ),
            models.Index(
                fields=["status", "id"],
                name="event_auth_pending",
                condition=models.Q(status="auth_pending"),
            ),
            # The intake's question "is an event of this ordering key still auth_pending?"
            models.Index(
                fields=["ordering_key"],
                name="event_pending_ordering",
                condition=models.Q(status="auth_pending"),
            ),
            # Accepted events held behind an auth_pending one (events.pending releases them).
            models.Index(
                fields=["id"],
                name="event_held_behind_pending",
                condition=models.Q(status="accepted", outbox_state="held"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.uid}"
